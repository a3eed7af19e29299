/**
 * LoRA through the trainers and the CLI: `recall train --lora_rank` (the reference log-probs are the base model's,
 * the adapter switched off; checkpoints are PEFT adapter folders; exact resume), `--lora_dropout` (in the update's
 * forward only: old and reference log-probs without it; exact resume; saved in adapter_config.json), `recall sft
 * --lora_rank` (learns with the base frozen), then `recall merge`, `recall score --adapter` and `recall generate
 * --adapter` on its checkpoint.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { Transformer } from "../src/model/transformer.ts";
import { loadAdapter } from "../src/model/peft_adapter.ts";
import { parseSftCommandLine } from "../src/config/sft.ts";
import { runSft } from "../src/sft/train.ts";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { parseTrainCommandLine } from "../src/config/train.ts";
import { writeVerlParquet } from "../src/data/verl_parquet.ts";
import { runGrpo } from "../src/train/grpo.ts";
import { scoreResponses } from "../src/train/actor.ts";
import { readMetrics } from "../src/train/metrics.ts";
import { PROJECT_ROOT, expectClose, runRecall } from "./harness.ts";

setDefaultTimeout(300_000);

let dir: string;
let model: string;
let data: string;
let reward: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "recall-lora-train-"));
  model = join(dir, "model");
  await initModel({ arch: "qwen2", preset: "tiny", outDir: model, seed: 3 });
  data = join(dir, "toy.parquet");
  writeVerlParquet(data, Array.from({ length: 8 }, (_, i) => ({ data_source: "toy", question: `Say some letters ${i}`, ability: "toy", ground_truth: "abc", index: i, split: "train", env: "", func_schemas: "" })));
  reward = join(dir, "ascii.ts");
  writeFileSync(reward, `export default ({ text }) => { const t = [...text.replace("<|im_end|>", "")]; return t.length === 0 ? 0 : t.filter((c) => /[A-Za-z]/.test(c)).length / t.length; };\n`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const grpoArgs = (out: string, steps: number) => [
  "--train_files", data, "--actor_model_path", model, "--train_batch_size", "2", "--ppo_mini_batch_size", "2", "--rollout_n", "4",
  "--use_re_call", "false", "--max_response_length", "8", "--save_path", out, `custom_reward_function.path=${reward}`, "--lr", "5e-3",
  "--lora_rank", "4", "--lora_alpha", "8", "--target_modules", "q_proj,v_proj,down_proj", "actor_rollout_ref.actor.use_kl_loss=true",
  "actor_rollout_ref.actor.kl_loss_coef=0.01", "--save_freq", "1", "--save_batches", "true", `trainer.total_training_steps=${steps}`, "trainer.val_before_train=false",
];

test("recall train --lora_rank: reference = base model with the adapter off, PEFT checkpoints, base untouched, exact resume", async () => {
  // verl's constant schedule runs step 1 at lr 0, so the adapter first moves in step 2 and the policy differs from the
  // base model from step 3 on.
  const out = join(dir, "grpo");
  const { settings } = parseTrainCommandLine(grpoArgs(out, 3));
  const lines: string[] = [];
  const r = await runGrpo(settings, { log: (l) => lines.push(l), warn: () => {} });
  expect(lines.some((l) => l.startsWith("LoRA: r=4, alpha=8 on q_proj, v_proj, down_proj"))).toBe(true);
  expect(lines.some((l) => /full fine-tuning .* LoRA saves/.test(l))).toBe(true);
  const ckpt = join(r.runDir, "global_step_3");
  for (const f of ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json", "tokenizer.json"]) expect(existsSync(join(ckpt, f))).toBe(true);
  for (const f of ["config.json", "model.safetensors"]) expect(existsSync(join(ckpt, f))).toBe(false);
  const cfg = JSON.parse(readFileSync(join(ckpt, "adapter_config.json"), "utf8"));
  expect(cfg).toMatchObject({ peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "down_proj"], base_model_name_or_path: model });
  const adapter = SafetensorsModel.open(join(ckpt, "adapter_model.safetensors"));
  expect(adapter.names.length).toBe(2 * 3 * 2); // layers × modules × {A, B}
  const B = adapter.readF32("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  expect(B.some((x) => x !== 0)).toBe(true);
  const optimizer = SafetensorsModel.open(join(ckpt, "optimizer.safetensors"));
  expect(optimizer.names.every((n) => n.includes(".lora_"))).toBe(true);

  // Steps 1-2: the policy is still the base model (B = 0), so the KL term is zero.
  const m = readMetrics(join(r.runDir, "metrics.jsonl"));
  expect(Math.abs(m[0]!.metrics["actor/kl_loss"]!)).toBeLessThan(1e-6);
  expect(Math.abs(m[1]!.metrics["actor/kl_loss"]!)).toBeLessThan(1e-6);
  expect(Math.abs(m[2]!.metrics["actor/kl_loss"]!)).toBeGreaterThan(0);
  // Step 3: the reference log-probs are the base model's (scored here by a separate copy of it), not the policy's.
  const batch = JSON.parse(readFileSync(join(r.runDir, "batches", "step_3.json"), "utf8")) as { sequences: { prompt_ids: number[]; response_ids: number[] }[] };
  const saved = SafetensorsModel.open(join(r.runDir, "batches", "step_3.safetensors"));
  const gpu = await getGpu();
  // The run kept the frozen projections in f16 where the adapter has shader-f16: the same base here.
  const halfBase = gpu.device.features.has("shader-f16");
  expect(lines.some((l) => l.includes("(projections in f16)"))).toBe(halfBase);
  const base = await Transformer.load(gpu, model, { projectionDtype: halfBase ? "f16" : "f32" });
  const seqs = batch.sequences.map((s) => ({ ids: [...s.prompt_ids, ...s.response_ids], responseStart: s.prompt_ids.length }));
  const want = await scoreResponses(base, seqs, { temperature: 1, maxTokens: 4096 });
  const width = saved.info("ref_log_prob").shape[1]!;
  const ref = saved.readF32("ref_log_prob"), old = saved.readF32("old_log_probs");
  let moved = 0;
  batch.sequences.forEach((s, i) => {
    const n = s.response_ids.length;
    expectClose(ref.slice(i * width, i * width + n), want.logprob[i]!, { atol: 2e-5, rtol: 1e-5 }, `ref row ${i}`);
    for (let t = 0; t < n; t++) moved = Math.max(moved, Math.abs(old[i * width + t]! - ref[i * width + t]!));
  });
  expect(moved).toBeGreaterThan(1e-4);
  base.params.release();
  // The base model folder is never written.
  expect(existsSync(join(model, "adapter_config.json"))).toBe(false);

  // Stopped after step 2 and resumed, a run ends with the straight run's adapter and moments, byte for byte.
  const other = join(dir, "grpo-resumed");
  await runGrpo(parseTrainCommandLine(grpoArgs(other, 2)).settings, { log: () => {}, warn: () => {} });
  const resumed = await runGrpo(parseTrainCommandLine(grpoArgs(other, 3)).settings, { log: () => {}, warn: () => {} });
  for (const f of ["adapter_model.safetensors", "optimizer.safetensors"]) {
    expect(Bun.hash(readFileSync(join(resumed.runDir, "global_step_3", f)))).toBe(Bun.hash(readFileSync(join(r.runDir, "global_step_3", f))));
  }
  // A full fine-tuning run cannot resume from a LoRA checkpoint (nor the reverse).
  const full = grpoArgs(out, 4).filter((a, i, all) => a !== "--lora_rank" && all[i - 1] !== "--lora_rank");
  await expect(runGrpo(parseTrainCommandLine(full).settings, { log: () => {}, warn: () => {} })).rejects.toThrow("is a LoRA checkpoint, but this run has lora_rank 0");
});

test("recall train --lora_dropout: dropout in the update's forward only (old log-probs without it), saved, exact resume", async () => {
  const args = (out: string, steps: number, p = "0.2") => [...grpoArgs(out, steps), "--lora_dropout", p];
  const out = join(dir, "grpo-dropout");
  const lines: string[] = [];
  const r = await runGrpo(parseTrainCommandLine(args(out, 3)).settings, { log: (l) => lines.push(l), warn: () => {} });
  expect(lines.some((l) => l.startsWith("LoRA: r=4, alpha=8, dropout 0.2 on q_proj, v_proj, down_proj"))).toBe(true);
  const ckpt = (run: string, step: number) => join(run, `global_step_${step}`);
  expect(JSON.parse(readFileSync(join(ckpt(r.runDir, 3), "adapter_config.json"), "utf8")).lora_dropout).toBe(0.2);
  const m = readMetrics(join(r.runDir, "metrics.jsonl"));
  // The old log-probs come from their own pass without dropout (verl's compute_log_prob in eval mode), not from the
  // update's forward as in an on-policy run without dropout.
  for (const row of m) expect(row.metrics["timing_s/old_log_prob"]).toBeGreaterThan(0);
  // Steps 1-2: B = 0, so dropout on the adapter's input changes nothing and the update's forward equals the old pass.
  expect(m[0]!.metrics["actor/ppo_kl"]).toBe(0);
  expect(m[1]!.metrics["actor/ppo_kl"]).toBe(0);
  // Step 3: B ≠ 0, one mini-batch on the old weights, and yet the update's log-probs differ from the old ones: dropout.
  expect(Math.abs(m[2]!.metrics["actor/ppo_kl"]!)).toBeGreaterThan(0);

  // The old log-probs of step 3 are the step-2 policy's without dropout (scored here from its checkpoint).
  const gpu = await getGpu();
  const halfBase = gpu.device.features.has("shader-f16");
  const policy = await Transformer.load(gpu, model, { projectionDtype: halfBase ? "f16" : "f32" });
  policy.adapter = await loadAdapter(gpu, policy.config, ckpt(r.runDir, 2));
  expect(policy.adapter.settings.dropout).toBe(0.2);
  const batch = JSON.parse(readFileSync(join(r.runDir, "batches", "step_3.json"), "utf8")) as { sequences: { prompt_ids: number[]; response_ids: number[] }[] };
  const saved = SafetensorsModel.open(join(r.runDir, "batches", "step_3.safetensors"));
  const seqs = batch.sequences.map((s) => ({ ids: [...s.prompt_ids, ...s.response_ids], responseStart: s.prompt_ids.length }));
  const want = await scoreResponses(policy, seqs, { temperature: 1, maxTokens: 4096 });
  const width = saved.info("old_log_probs").shape[1]!;
  const old = saved.readF32("old_log_probs");
  batch.sequences.forEach((s, i) => expectClose(old.slice(i * width, i * width + s.response_ids.length), want.logprob[i]!, { atol: 2e-5, rtol: 1e-5 }, `old row ${i}`));
  policy.adapter.release();
  policy.params.release();

  // Stopped after step 2 and resumed, the run draws the same masks: the same adapter and moments, byte for byte.
  const other = join(dir, "grpo-dropout-resumed");
  await runGrpo(parseTrainCommandLine(args(other, 2)).settings, { log: () => {}, warn: () => {} });
  const resumed = await runGrpo(parseTrainCommandLine(args(other, 3)).settings, { log: () => {}, warn: () => {} });
  for (const f of ["adapter_model.safetensors", "optimizer.safetensors"]) {
    expect(Bun.hash(readFileSync(join(ckpt(resumed.runDir, 3), f)))).toBe(Bun.hash(readFileSync(join(ckpt(r.runDir, 3), f))));
  }
  // The dropout changed the training: the run without it (the test above, same seed and data) ends elsewhere.
  const plain = join(dir, "grpo", "recall", "grpo");
  if (existsSync(ckpt(plain, 3))) {
    expect(Bun.hash(readFileSync(join(ckpt(plain, 3), "adapter_model.safetensors")))).not.toBe(Bun.hash(readFileSync(join(ckpt(r.runDir, 3), "adapter_model.safetensors"))));
  }
  // Resuming with another lora_dropout would not repeat the run: refused, naming the flag.
  await expect(runGrpo(parseTrainCommandLine(args(other, 4, "0.3")).settings, { log: () => {}, warn: () => {} })).rejects.toThrow(
    "was trained with lora_dropout 0.2; this run asks for 0.3",
  );
});

test("recall sft --lora_dropout: saved in the checkpoint, and a run resumed mid-way draws the same masks (byte-identical adapter)", async () => {
  const file = join(dir, "conv-dropout.jsonl");
  writeFileSync(file, ["ada", "bob", "cy", "dee"].map((n, i) => JSON.stringify({ messages: [{ role: "user", content: `${n}: ${11 + i}*3?` }, { role: "assistant", content: `${(11 + i) * 3} ok` }] })).join("\n") + "\n");
  const args = (out: string, steps: number) => ["--train_files", file, "--model", model, "--save_path", out, "--batch_size", "2", "--micro_batch_size", "1", "--lr", "2e-2",
    "--lr_scheduler", "constant", "--warmup_ratio", "0", "--max_steps", String(steps), "--val_split", "0", "--lora_rank", "4", "--lora_alpha", "8", "--lora_dropout", "0.3", "--save_freq", "1"];
  const quiet = { log: () => {}, warn: () => {} };
  const straight = await runSft(parseSftCommandLine(args(join(dir, "sft-dropout"), 3)).settings, quiet);
  const cut = join(dir, "sft-dropout-resumed");
  await runSft(parseSftCommandLine(args(cut, 1)).settings, quiet);
  const resumed = await runSft(parseSftCommandLine(args(cut, 3)).settings, quiet);
  expect(resumed.steps).toBe(3);
  const final = (run: string) => join(run, "global_step_3");
  expect(JSON.parse(readFileSync(join(final(straight.runDir), "adapter_config.json"), "utf8")).lora_dropout).toBe(0.3);
  for (const f of ["adapter_model.safetensors", "optimizer.safetensors"]) {
    expect(Bun.hash(readFileSync(join(final(resumed.runDir), f)))).toBe(Bun.hash(readFileSync(join(final(straight.runDir), f))));
  }
});

test("recall sft --lora_rank learns with the base frozen; merge, score --adapter and generate --adapter use its checkpoint", () => {
  const file = join(dir, "conv.jsonl");
  const names = ["ada", "bob", "cy", "dee"];
  writeFileSync(file, names.map((n, i) => JSON.stringify({ messages: [{ role: "user", content: `${n}: ${11 + i}*3?` }, { role: "assistant", content: `${(11 + i) * 3} ok` }] })).join("\n") + "\n");
  const out = join(dir, "sft");
  const run = runRecall(["sft", "--train_files", file, "--model", model, "--save_path", out, "--batch_size", "4", "--lr", "2e-2", "--lr_scheduler", "constant",
    "--warmup_ratio", "0", "--max_steps", "40", "--val_split", "0", "--lora_rank", "8", "--lora_alpha", "16", "--target_modules", "all-linear"]);
  expect(run.stderr).not.toContain("Error");
  expect(run.code).toBe(0);
  const runDir = join(out, "recall", "sft");
  const m = readMetrics(join(runDir, "metrics.jsonl"));
  // A random tiny model with a frozen (tiny, tied) LM head and final norm cannot reach a low loss through its layers
  // alone (its logits stay within about ±1.3): the adapter takes it from ln(V) ≈ 5.76 to about 4.9 in 40 steps.
  const first = m.find((r) => r.step === 1)!.metrics["train/loss"]!, last = m.find((r) => r.step === 40)!.metrics["train/loss"]!;
  expect(last).toBeLessThan(first - 0.5);
  const ckpt = join(runDir, "global_step_40");
  expect(existsSync(join(ckpt, "adapter_model.safetensors"))).toBe(true);

  // Folding the adapter in gives the same log-probs as applying it.
  const merged = join(dir, "merged");
  const mr = runRecall(["merge", "--base", model, "--adapter", ckpt, "--out", merged, "--json"]);
  expect(mr.code).toBe(0);
  expect(JSON.parse(mr.stdout).merged_tensors).toBe(2 * 7);
  const ids = "1,40,77,12,9,100,3";
  const withAdapter = JSON.parse(runRecall(["score", "--model", model, "--adapter", ckpt, "--ids", ids, "--json"]).stdout).logprobs as (number | null)[];
  const fromMerged = JSON.parse(runRecall(["score", "--model", merged, "--ids", ids, "--json"]).stdout).logprobs as (number | null)[];
  const plain = JSON.parse(runRecall(["score", "--model", model, "--ids", ids, "--json"]).stdout).logprobs as (number | null)[];
  expectClose(withAdapter.slice(1) as number[], fromMerged.slice(1) as number[], { atol: 2e-5, rtol: 1e-5 }, "merged vs adapter");
  expect(Math.max(...withAdapter.slice(1).map((v, i) => Math.abs(v! - plain[i + 1]!)))).toBeGreaterThan(1e-3);

  const gen = runRecall(["generate", "--model", model, "--adapter", ckpt, "--prompt", "ada: 11*3?", "--chat", "--max_new_tokens", "6", "--json"]);
  expect(gen.code).toBe(0);
  expect(JSON.parse(gen.stdout).ids.length).toBeGreaterThan(0);
  // A LoRA checkpoint alone is not a model: the message says what to pass.
  const bad = runRecall(["score", "--model", ckpt, "--ids", ids]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain("is a LoRA adapter, not a whole model");
});

test("recall eval --adapter: the local engine runs the model with the adapter; next to a served model it is refused", async () => {
  const { resolveConfig } = await import("../src/eval/config.ts");
  const { openGenerator, httpOptions } = await import("../src/eval/backends.ts");
  const adapter = join(dir, "sft", "recall", "sft", "global_step_40");
  const cfg = resolveConfig({}, { generator_model: model, adapter });
  const gen = await openGenerator(cfg, httpOptions(cfg));
  expect(gen.description).toContain(`+ adapter ${adapter}`);
  if (gen.kind !== "tokens") throw new Error("expected the local token generator");
  const prompt = [1, 40, 77, 12];
  const out = await gen.completeTokens(prompt, { temperature: 1, seed: 1, maxNewTokens: 3, stopTokenIds: [] });
  // The sampled ids' log-probs (temperature 1) are the adapted model's (recall score --adapter on prompt + ids).
  const scored = JSON.parse(runRecall(["score", "--model", model, "--adapter", adapter, "--ids", [...prompt, ...out.tokenIds].join(","), "--json"]).stdout).logprobs as number[];
  expectClose(Float32Array.from(out.logprobs!), Float32Array.from(scored.slice(prompt.length)), { atol: 2e-5, rtol: 1e-5 }, "generator log-probs");
  await gen.close?.();
  const served = resolveConfig({}, { sgl_remote_url: "127.0.0.1:30000", adapter });
  await expect(openGenerator(served, httpOptions(served))).rejects.toThrow("--adapter applies to a local model");
});

test("LoRA settings: verl's keys and the flags set them; an unknown module is refused naming the flag", async () => {
  const { parseSftCommandLine } = await import("../src/config/sft.ts");
  const t = parseTrainCommandLine(["--train_files", "t.parquet", "--actor_model_path", "m", "actor_rollout_ref.model.lora_rank=64", "actor_rollout_ref.model.target_modules=all-linear"]).settings;
  expect([t["actor_rollout_ref.model.lora_rank"], t["actor_rollout_ref.model.lora_alpha"], t["actor_rollout_ref.model.target_modules"]]).toEqual([64, 16, ["all-linear"]]);
  const s = parseSftCommandLine(["--train_files", "t.jsonl", "--model", "m", "--lora_rank", "8", "model.target_modules=[q_proj,v_proj]"]).settings;
  expect([s["model.lora_rank"], s["model.target_modules"]]).toEqual([8, ["q_proj", "v_proj"]]);
  expect(() => parseTrainCommandLine(["--train_files", "t.parquet", "--actor_model_path", "m", "--target_modules", "q_proj,lm_head"])).toThrow("'lm_head' is not a module LoRA can target here");
});

test("--lora_dropout: train and sft take it (default 0), bad values and a dropout without a rank are refused naming the flag", async () => {
  const train = (...a: string[]) => parseTrainCommandLine(["--train_files", "t.parquet", "--actor_model_path", "m", ...a]).settings;
  const sft = (...a: string[]) => parseSftCommandLine(["--train_files", "t.jsonl", "--model", "m", ...a]).settings;
  expect(train()["actor_rollout_ref.model.lora_dropout"]).toBe(0);
  expect(sft()["model.lora_dropout"]).toBe(0);
  expect(train("--lora_rank", "8", "--lora_dropout", "0.05")["actor_rollout_ref.model.lora_dropout"]).toBe(0.05);
  expect(sft("--lora-dropout", "0.1")["model.lora_dropout"]).toBe(0.1);
  expect(sft("model.lora_dropout=0.2")["model.lora_dropout"]).toBe(0.2);
  for (const [v, why] of [["1", "must be in [0, 1), got 1"], ["-0.1", "must be in [0, 1), got -0.1"], ["abc", "expects a number, got 'abc'"]]) {
    expect(() => train("--lora_dropout", v!)).toThrow(`flag --lora_dropout ${why}`);
    expect(() => sft("--lora_dropout", v!)).toThrow(`flag --lora_dropout ${why}`);
  }
  // Through the CLI: one line naming the flag, and a dropout with lora_rank 0 (it would do nothing) refused.
  const bad = runRecall(["sft", "--train_files", "t.jsonl", "--model", model, "--lora_dropout", "1"]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain("flag --lora_dropout must be in [0, 1), got 1");
  const file = join(dir, "one.jsonl");
  writeFileSync(file, JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "yo" }] }) + "\n");
  const norank = runRecall(["sft", "--train_files", file, "--model", model, "--save_path", join(dir, "never"), "--lora_dropout", "0.1"]);
  expect(norank.code).toBe(1);
  expect(norank.stderr).toContain("model.lora_dropout (--lora_dropout) is 0.1, but lora_rank is 0");
  for (const cmd of ["train", "sft"]) expect(runRecall([cmd, "--help"]).stdout).toContain("--lora_dropout");
});
