/**
 * recall's SFT follows PyTorch's trajectory over many steps, not only one (test/sft.test.ts checks one step against a
 * fixture): the demo's tiny model and data (calc tool traces, ~200 tokens each), 20 steps of batch 8 at the demo's
 * lr, recall's accumulateBatchGradient + ActorOptimizer beside scripts/sft_trajectory.py (the independent PyTorch
 * model of scripts/golden.py, clip_grad_norm_, torch.optim.AdamW). Skipped when no python3 has torch.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { openPretrained } from "../src/model/pretrained.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";
import { loadSftFiles } from "../src/sft/dataset.ts";
import { accumulateBatchGradient, microBatches } from "../src/sft/step.ts";
import { ActorOptimizer } from "../src/train/optimizer.ts";
import { PROJECT_ROOT, runRecall, torchPython } from "./harness.ts";

const python = torchPython();

test.skipIf(!python)("20 SFT steps on the demo's data: every weight and every loss agree with PyTorch's", async () => {
  const dir = mkdtempSync(join(tmpdir(), "recall-sft-trajectory-"));
  const synth = runRecall(["synth", "--mix", "calc", "--n", "200", "--calc_min", "32", "--calc_max", "99", "--calc_ops", "mul", "--style", "compact", "--system_prompt", "Use calc.", "--seed", "0", "--out", join(dir, "data")]);
  expect(synth.code).toBe(0);
  const model = (await initModel({ arch: "qwen2", preset: "tiny", outDir: join(dir, "init"), seed: 0 })).dir;

  const gpu = await getGpu();
  const { model: m, tokenizer } = await openPretrained(gpu, model);
  const { examples } = await loadSftFiles([join(dir, "data", "sft.jsonl")], tokenizer, {
    messagesKey: "messages", toolsKey: "tools", promptKey: "prompt", responseKey: "response", template: "model", trainOnPrompt: false, maxLength: 2048, truncation: "error",
  });
  const steps = 20, batch = 8;
  const batches = Array.from({ length: steps }, (_, k) => examples.slice(k * batch, (k + 1) * batch));
  expect(batches.at(-1)!.length).toBe(batch);
  const optim = { lr: 3e-3, betas: [0.9, 0.95], eps: 1e-8, weight_decay: 0.01, max_norm: 1.0 };
  const grads = m.newGradients();
  const opt = new ActorOptimizer(gpu, m.params, grads, { beta1: 0.9, beta2: 0.95, eps: optim.eps, weightDecay: optim.weight_decay, gradClip: optim.max_norm });
  const losses: number[] = [];
  for (const seqs of batches) {
    losses.push((await accumulateBatchGradient(m, grads, seqs, microBatches(seqs, { maxTokens: 4096 }), { checkpoint: false })).loss);
    expect((await opt.apply(optim.lr)).skipped).toBe(false);
  }
  await writeSafetensors(join(dir, "final.safetensors"), m.params.specs.map((s) => ({ name: s.name, shape: s.shape, data: () => gpu.readF32(m.params.get(s.name)) })));
  writeFileSync(join(dir, "case.json"), JSON.stringify({ model, optim, batches: batches.map((b) => b.map((x) => ({ ids: x.ids, mask: x.mask }))) }));
  opt.release();
  grads.release();
  m.params.release();

  const run = Bun.spawnSync([python!, join(PROJECT_ROOT, "scripts/sft_trajectory.py"), dir], { stdout: "pipe", stderr: "pipe" });
  if (run.exitCode !== 0) throw new Error(run.stderr.toString());
  const out = JSON.parse(run.stdout.toString()) as { tensors: Record<string, number>; losses: number[] };
  // The loss falls from ~5.8 to the format plateau; recall saw the same losses at every step.
  expect(losses[0]! - losses.at(-1)!).toBeGreaterThan(2);
  out.losses.forEach((l, i) => expect(Math.abs(l - losses[i]!)).toBeLessThan(1e-4 * Math.abs(l)));
  // Weights after 20 steps: float32 noise, compounded (≲1e-5; k_proj.bias, whose gradient is ~0 by softmax's shift
  // invariance, drifts most). A wrong gradient, clip or AdamW term is 1e-2 and up.
  for (const [name, err] of Object.entries(out.tensors)) expect({ name, err: err < 2e-3 }).toEqual({ name, err: true });
  const sorted = Object.values(out.tensors).sort((a, b) => a - b);
  expect(sorted[Math.floor(sorted.length / 2)]!).toBeLessThan(1e-4);
}, 300_000);
