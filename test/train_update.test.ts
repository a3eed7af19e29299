/**
 * The actor update on the GPU against an independent PyTorch implementation (scripts/verify_update.py):
 *
 * 1. fixtures/grpo/update_tiny.json — two full updates of the golden qwen2 model on fixed batches (dynamic and fixed
 *    micro-batches, ReCall's and upstream verl's loss), run here through actor.ts + loss.ts + optimizer.ts in the
 *    trainer's mini/micro-batch loop and compared with PyTorch's metrics, grad norms, weights and AdamW moments.
 *    Needs no Python, so CI checks the update even without torch.
 * 2. A real `recall train` run (2 steps, Python reward, several mini- and micro-batches, low_var_kl loss, entropy
 *    bonus, save_batches) recomputed step by step by the script (skipped when no python3 has torch).
 * 3. The loss mask at model level: altering old/reference log-probs and advantages where the mask is 0 leaves every
 *    gradient bit-identical.
 */
import { beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu, type Gpu } from "../src/gpu/runtime.ts";
import { Transformer } from "../src/model/transformer.ts";
import { packMicroBatches } from "../src/data/packing.ts";
import { writeVerlParquet } from "../src/data/verl_parquet.ts";
import { forwardForUpdate, scoreResponses, type PolicySequence } from "../src/train/actor.ts";
import { policyLossAndGrads, type KlType, type LossAggMode, type LossCompat, type PolicyLossMetrics, type PolicyLossSettings } from "../src/train/loss.ts";
import { ActorOptimizer } from "../src/train/optimizer.ts";
import { updateActor } from "../src/train/update.ts";
import { PROJECT_ROOT, runRecall, torchPython } from "./harness.ts";

// Pipelines compile on first use and lavapipe is slow; the end-to-end run takes about a minute.
setDefaultTimeout(600_000);

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

// ------------------------------------------------------------------------------------------- the fixture
interface FixtureSequence {
  ids: number[];
  response_start: number;
  loss_mask: number[];
  old_log_probs: number[];
  ref_log_prob: number[];
  advantages: number[];
}
interface FixtureSettings {
  n: number;
  temperature: number;
  mini_batch_prompts: number;
  dynamic: boolean;
  max_token_len: number;
  micro_batch_size: number | null;
  grad_clip: number;
  clip_low: number;
  clip_high: number;
  clip_c: number;
  loss_agg_mode: LossAggMode;
  compat: LossCompat;
  entropy_coeff: number;
  use_kl_loss: boolean;
  kl_coef: number;
  kl_type: KlType;
  horizon: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
}
interface FixtureTensor {
  index: number[];
  before: number[];
  after: number[];
  exp_avg: number[];
  exp_avg_sq: number[];
}
interface FixtureCase {
  name: string;
  lr: number;
  settings: FixtureSettings;
  sequences: FixtureSequence[];
  expected: {
    partitions: number[][][];
    grad_norms: number[];
    metrics: Record<string, number>;
    tensors: Record<string, FixtureTensor>;
  };
}

const fixture = JSON.parse(readFileSync(join(PROJECT_ROOT, "fixtures/grpo/update_tiny.json"), "utf8")) as { model: string; cases: FixtureCase[] };

/** One training step's actor update through the trainer's own code (src/train/update.ts). */
async function gpuUpdate(model: Transformer, c: FixtureCase) {
  const s = c.settings;
  const grads = model.newGradients();
  const optimizer = new ActorOptimizer(gpu, model.params, grads, { beta1: s.betas[0], beta2: s.betas[1], eps: s.eps, weightDecay: s.weight_decay, gradClip: s.grad_clip });
  const loss: PolicyLossSettings = {
    clipRatioLow: s.clip_low,
    clipRatioHigh: s.clip_high,
    clipRatioC: s.clip_c,
    lossAggMode: s.loss_agg_mode,
    compat: s.compat,
    entropyCoeff: s.entropy_coeff,
    useKlLoss: s.use_kl_loss,
    klCoef: s.kl_coef,
    klType: s.kl_type,
    horizon: s.horizon,
  };
  const f32 = (key: "old_log_probs" | "ref_log_prob" | "advantages" | "loss_mask") => c.sequences.map((q) => Float32Array.from(q[key]));
  const r = await updateActor(
    model,
    optimizer,
    { seqs: c.sequences.map((q) => ({ ids: q.ids, responseStart: q.response_start })), oldLogprob: f32("old_log_probs"), refLogprob: f32("ref_log_prob"), advantages: f32("advantages"), lossMask: f32("loss_mask") },
    {
      ppoEpochs: 1,
      miniBatchSequences: s.mini_batch_prompts * s.n,
      maxTokens: s.dynamic ? s.max_token_len : undefined,
      microBatchSequences: s.micro_batch_size ?? undefined,
      temperature: s.temperature,
      checkpoint: true,
      loss,
      lr: c.lr,
    },
  );
  const metrics = r.lossMetrics, partitions = r.partitions, gradNorms = r.gradNorms;
  const read = async (set: typeof grads) => new Map(await Promise.all(set.specs.map(async (sp) => [sp.name, await gpu.readF32(set.get(sp.name))] as const)));
  const out = { metrics, partitions, gradNorms, params: await read(model.params), m: await read(optimizer.m), v: await read(optimizer.v), steps: optimizer.step };
  optimizer.release();
  grads.release();
  return out;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sortedParts = (ps: number[][]) => ps.map((p) => [...p].sort((a, b) => a - b)).sort((a, b) => a[0]! - b[0]!);

describe("actor update vs PyTorch (fixtures/grpo/update_tiny.json)", () => {
  for (const c of fixture.cases) {
    test(c.name, async () => {
      const model = await Transformer.load(gpu, join(PROJECT_ROOT, fixture.model));
      try {
        const got = await gpuUpdate(model, c);
        const e = c.expected;
        // Same micro-batches (as sets: their order only reorders a sum).
        expect(got.partitions.map(sortedParts)).toEqual(e.partitions.map(sortedParts));
        expect(got.steps).toBe(e.grad_norms.length);
        // Logged figures: means over micro-batches; the grad norm before clipping, per mini-batch.
        for (const [key, field] of [["actor/pg_loss", "pg_loss"], ["actor/entropy", "entropy"], ["actor/kl_loss", "kl_loss"], ["actor/ppo_kl", "ppo_kl"]] as const) {
          const g = mean(got.metrics.map((m) => m[field]));
          // ppo_kl is a mean of old − new log-prob differences after an AdamW step, each a cancellation of two
          // log-probs near ln(V) ≈ 4.4: f32 kernels that sum in another order (e.g. the subgroup attention)
          // move it by ~1e-5 absolute, far below what a wrong ratio or sign would (≥ 1e-2).
          const tol = field === "ppo_kl" ? 3e-5 : 1e-6 + 1e-4 * Math.abs(e.metrics[key]!);
          expect({ key, diff: Math.abs(g - e.metrics[key]!) <= tol }).toEqual({ key, diff: true });
        }
        got.gradNorms.forEach((g, i) => expect(Math.abs(g - e.grad_norms[i]!) / e.grad_norms[i]!).toBeLessThan(1e-4));
        // Weights move by about lr per AdamW step: measure their error in those units; moments relative to the slice.
        const unit = c.lr * e.grad_norms.length;
        let worstW = 0, worstM = 0, worstV = 0, moved = 0;
        for (const [name, t] of Object.entries(e.tensors)) {
          const p = got.params.get(name)!, m = got.m.get(name)!, v = got.v.get(name)!;
          const mScale = Math.max(...t.exp_avg.map(Math.abs)), vScale = Math.max(...t.exp_avg_sq.map(Math.abs));
          t.index.forEach((idx, k) => {
            worstW = Math.max(worstW, Math.abs(p[idx]! - t.after[k]!) / unit);
            if (mScale > 0) worstM = Math.max(worstM, Math.abs(m[idx]! - t.exp_avg[k]!) / mScale);
            if (vScale > 0) worstV = Math.max(worstV, Math.abs(v[idx]! - t.exp_avg_sq[k]!) / vScale);
            moved = Math.max(moved, Math.abs(t.after[k]! - t.before[k]!) / unit);
          });
        }
        expect(moved).toBeGreaterThan(0.5); // the update is real: weights moved by about lr per step
        expect({ weightsInLrUnits: worstW < 0.02, expAvgRel: worstM < 1e-4, expAvgSqRel: worstV < 2e-4 }).toEqual({ weightsInLrUnits: true, expAvgRel: true, expAvgSqRel: true });
      } finally {
        model.params.release();
      }
    });
  }
});

// ------------------------------------------------------------------------------------------- on-policy old log-probs
describe("on-policy update without a separate old log-prob pass", () => {
  test("one epoch of one mini-batch: the forward's own log-probs serve as old ones; same weights as scoring first", async () => {
    const c = fixture.cases[0]!;
    const s = c.settings;
    const seqs: PolicySequence[] = c.sequences.map((q) => ({ ids: q.ids, responseStart: q.response_start }));
    const f32 = (key: "ref_log_prob" | "advantages" | "loss_mask") => c.sequences.map((q) => Float32Array.from(q[key]));
    const loss: PolicyLossSettings = {
      clipRatioLow: s.clip_low, clipRatioHigh: s.clip_high, clipRatioC: s.clip_c, lossAggMode: s.loss_agg_mode, compat: s.compat,
      entropyCoeff: s.entropy_coeff, useKlLoss: s.use_kl_loss, klCoef: s.kl_coef, klType: s.kl_type, horizon: s.horizon,
    };
    const settings = { ppoEpochs: 1, miniBatchSequences: seqs.length, maxTokens: 64, temperature: s.temperature, checkpoint: true, loss, lr: 1e-2 };
    const run = async (scoreFirst: boolean) => {
      const model = await Transformer.load(gpu, join(PROJECT_ROOT, fixture.model));
      const grads = model.newGradients();
      const optimizer = new ActorOptimizer(gpu, model.params, grads, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 });
      const old = scoreFirst ? (await scoreResponses(model, seqs, { temperature: s.temperature, maxTokens: 4096 })).logprob : undefined;
      const r = await updateActor(model, optimizer, { seqs, oldLogprob: old, refLogprob: f32("ref_log_prob"), advantages: f32("advantages"), lossMask: f32("loss_mask") }, settings);
      const params = await Promise.all(model.params.specs.map((sp) => gpu.readF32(model.params.get(sp.name))));
      optimizer.release();
      grads.release();
      model.params.release();
      return { r, params, old };
    };
    const scored = await run(true);
    const onPolicy = await run(false);
    expect(scored.r.partitions.length).toBe(1);
    // The old log-probs the update used are the scoring pass's, and so are the resulting weights.
    onPolicy.r.oldLogprob.forEach((lp, i) => lp.forEach((x, t) => expect(Math.abs(x - scored.old![i]![t]!)).toBeLessThan(1e-5)));
    let worst = 0;
    onPolicy.params.forEach((p, k) => p.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - scored.params[k]![i]!)))));
    expect(worst).toBeLessThan(1e-5);
    for (const m of onPolicy.r.lossMetrics) expect(Math.abs(m.ppo_kl)).toBeLessThan(1e-6);
  });

  test("old log-probs may be left out only for one epoch of one mini-batch", async () => {
    const model = await Transformer.load(gpu, join(PROJECT_ROOT, fixture.model));
    const grads = model.newGradients();
    const optimizer = new ActorOptimizer(gpu, model.params, grads, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 1 });
    const seqs: PolicySequence[] = [{ ids: [1, 2, 3], responseStart: 1 }, { ids: [4, 5, 6], responseStart: 1 }];
    const z = () => seqs.map(() => new Float32Array(2));
    const loss = { clipRatioLow: 0.2, clipRatioHigh: 0.2, clipRatioC: 3, lossAggMode: "token-mean", compat: "verl", entropyCoeff: 0, useKlLoss: false, klCoef: 0, klType: "low_var_kl", horizon: 2 } as unknown as PolicyLossSettings;
    for (const [ppoEpochs, miniBatchSequences] of [[2, 2], [1, 1]] as const) {
      await expect(updateActor(model, optimizer, { seqs, advantages: z(), lossMask: z() }, { ppoEpochs, miniBatchSequences, temperature: 1, checkpoint: false, loss, lr: 0 })).rejects.toThrow(/one epoch of one mini-batch/);
    }
    optimizer.release();
    grads.release();
    model.params.release();
  });
});

// ------------------------------------------------------------------------------------------- loss mask
describe("loss mask at model level", () => {
  test("altering old/ref log-probs and advantages where the mask is 0 leaves every gradient unchanged", async () => {
    const model = await Transformer.load(gpu, join(PROJECT_ROOT, "fixtures/golden/qwen2_gqa_tied/model"));
    const V = model.config.vocabSize;
    // Responses with a tool span (mask 0) inside and an injected prefix (mask 0) at the start.
    const seqs: PolicySequence[] = [
      { ids: [3, 14, 15, 9, 26, 53, 58, 9, 7, 9, 32, 38, 46, 26].map((x) => x % V), responseStart: 4 },
      { ids: [2, 71, 8, 28, 18, 28, 45, 9, 0, 45].map((x) => x % V), responseStart: 3 },
    ];
    const masks = [Float32Array.from([1, 1, 0, 0, 0, 1, 1, 1, 0, 1]), Float32Array.from([0, 0, 1, 1, 0, 1, 1])];
    const settings: PolicyLossSettings = { clipRatioLow: 0.2, clipRatioHigh: 0.28, clipRatioC: 3, lossAggMode: "seq-mean-token-mean", compat: "recall", entropyCoeff: 0.01, useKlLoss: true, klCoef: 0.1, klType: "low_var_kl", horizon: 16 };
    const gradients = async (alter: (row: number, t: number) => boolean) => {
      const pass = await forwardForUpdate(model, seqs, { temperature: 0.9, checkpoint: false });
      const old = pass.logprob.map((lp, i) => lp.map((x, t) => (alter(i, t) ? 25 : x + 0.05 * Math.sin(3 * t + i))));
      const ref = pass.logprob.map((lp, i) => lp.map((x, t) => (alter(i, t) ? -40 : x - 0.3 * Math.cos(t + i))));
      const adv = masks.map((m, i) => m.map((_, t) => (alter(i, t) ? 1e4 : i === 0 ? 0.7 : -0.4)));
      const r = policyLossAndGrads({ logprob: pass.logprob, oldLogprob: old, refLogprob: ref, entropy: pass.entropy, advantages: adv, mask: masks }, settings, 0.5);
      const grads = model.newGradients();
      pass.backward(r.dLogprob, r.dEntropy, grads);
      const out = await Promise.all(grads.specs.map((sp) => gpu.readF32(grads.get(sp.name))));
      grads.release();
      return out;
    };
    const flat = (xs: Float32Array[]) => xs.flatMap((x) => Array.from(x));
    const base = flat(await gradients(() => false));
    const maskedAltered = flat(await gradients((i, t) => masks[i]![t] === 0));
    const sampledAltered = flat(await gradients((i, t) => i === 1 && t === 5));
    expect(Math.max(...base.map(Math.abs))).toBeGreaterThan(1e-4); // the gradient is not trivially zero
    expect(maskedAltered.every((g, k) => Object.is(g, base[k]))).toBe(true); // bit-identical
    expect(sampledAltered.some((g, k) => g !== base[k])).toBe(true); // a sampled token does matter
    model.params.release();
  });
});

// ------------------------------------------------------------------------------------------- a real run
const python = torchPython();

describe("recall train recomputed in PyTorch (scripts/verify_update.py)", () => {
  test.skipIf(!python)("2 steps: metrics, grad norms, every weight and AdamW moment match (verl's micro-batch partition)", () => {
    const dir = mkdtempSync(join(tmpdir(), "recall-update-"));
    try {
      const model = join(dir, "model");
      expect(runRecall(["init", "--arch", "qwen2", "--preset", "tiny", "--out", model, "--seed", "3"]).code).toBe(0);
      writeVerlParquet(
        join(dir, "train.parquet"),
        Array.from({ length: 8 }, (_, i) => ({ data_source: "ascii", question: `Write something, ${i}.`, ability: "test", ground_truth: "", index: i, split: "train", env: "", func_schemas: "[]" })),
      );
      // A dense reward (the fraction of ASCII characters) so advantages are non-zero in every group.
      writeFileSync(join(dir, "reward.py"), "def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n    return sum(c.isascii() for c in solution_str) / max(1, len(solution_str))\n");
      const run = runRecall([
        "train", "--actor_model_path", model, "--train_files", join(dir, "train.parquet"), "--save_path", join(dir, "runs"), "--project_name", "p", "--experiment_name", "e",
        "--use_re_call", "false", "--train_batch_size", "4", "--rollout_n", "4", "--ppo_mini_batch_size", "2", "--save_freq", "1", "--test_freq", "-1", "--save_batches", "true",
        "--max_prompt_length", "160", "--max_response_length", "24",
        "trainer.total_training_steps=2", "trainer.val_before_train=false", `custom_reward_function.path=${join(dir, "reward.py")}`,
        "actor_rollout_ref.actor.optim.lr=1e-3", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=400", "actor_rollout_ref.actor.entropy_coeff=0.01",
        "actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.actor.kl_loss_type=low_var_kl", "actor_rollout_ref.actor.kl_loss_coef=0.1",
      ]);
      expect({ code: run.code, stderr: run.code === 0 ? "" : run.stderr }).toEqual({ code: 0, stderr: "" });
      const runDir = join(dir, "runs", "p", "e");
      for (const step of [1, 2]) {
        const out = join(dir, `verify_${step}.json`);
        // The script partitions micro-batches as verl does (Karmarkar–Karp into ⌈tokens / budget⌉ parts): so must the trainer.
        const v = Bun.spawnSync([python!, join(PROJECT_ROOT, "scripts/verify_update.py"), runDir, String(step), "--json", out], { stdout: "pipe", stderr: "pipe" });
        const text = v.stdout.toString() + v.stderr.toString();
        const r = JSON.parse(readFileSync(out, "utf8")) as { ok: boolean; partitions: number[][][]; lr: number; largest_weight_change: number; checks: Record<string, { ok: boolean }> };
        expect({ step, failed: Object.entries(r.checks).filter(([, c]) => !c.ok).map(([k]) => k), text: r.ok ? "" : text }).toEqual({ step, failed: [], text: "" });
        expect(v.exitCode).toBe(0);
        expect(r.partitions.length).toBe(2); // two mini-batches …
        expect(r.partitions.every((mini) => mini.length >= 2)).toBe(true); // … each of several micro-batches
        if (step === 2) {
          expect(r.lr).toBe(1e-3); // step 1's lr is 0 (verl's constant schedule at step 0), step 2 really moves weights
          expect(r.largest_weight_change).toBeGreaterThan(1e-3);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
