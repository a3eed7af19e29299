/**
 * bench/lora: one training step (forward with activation checkpointing, backward, clip + AdamW) of a real-size model
 * with a LoRA adapter on every projection (the frozen projection weights in f16 where the adapter has shader-f16), against the same step with full fine-tuning (`--full`): seconds per step,
 * the GPU memory the pool measured at its peak, and the estimate recall prints before a run.
 *
 *   ./node_modules/.bin/bun bench/lora.ts [--preset 0.5b] [--rank 16] [--alpha 32] [--B 1] [--T 128] [--steps 2] [--full] [--f32_base]
 *                                         [--lora_dropout P]
 *
 * The model is a `recall init` folder of the preset (random weights, BF16 on disk, f32 on the GPU), written to a temp
 * folder unless `--model DIR` names one.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getGpu } from "../src/gpu/runtime.ts";
import { initModel } from "../src/model/init.ts";
import { Transformer, makeBatch, releaseBatch } from "../src/model/transformer.ts";
import { LoraWeights, loraParameterCount, resolveTargetModules } from "../src/model/lora.ts";
import { loraDropoutSeed } from "../src/model/lora_dropout.ts";
import { estimateMemory, formatBytes, formatMemoryEstimate } from "../src/model/memory.ts";
import { ActorOptimizer } from "../src/train/optimizer.ts";
import type { GradientSet } from "../src/train/actor.ts";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const preset = flag("preset", "0.5b");
const rank = Number(flag("rank", "16"));
const alpha = Number(flag("alpha", "32"));
const B = Number(flag("B", "1"));
const T = Number(flag("T", "128"));
const steps = Number(flag("steps", "2"));
const full = process.argv.includes("--full");
const dropoutP = Number(flag("lora_dropout", "0"));

const gpu = await getGpu();
const limits = gpu.limits;
console.log(`adapter: ${gpu.handle.info.description}; max binding ${formatBytes(limits.maxStorageBufferBindingSize)}, max buffer ${formatBytes(limits.maxBufferSize)}`);
const tmp = flag("model", "") ? undefined : mkdtempSync(join(tmpdir(), "recall-bench-lora-"));
const dir = flag("model", "") || join(tmp!, "model");
if (tmp) {
  const t0 = performance.now();
  await initModel({ arch: "qwen2", preset, outDir: dir, seed: 0, dtype: "BF16" });
  console.log(`recall init --preset ${preset}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
// LoRA keeps the frozen projections in f16 where the adapter has shader-f16, as recall train/sft do.
const halfProjections = !full && !process.argv.includes("--f32_base") && gpu.device.features.has("shader-f16");
const model = await Transformer.load(gpu, dir, { projectionDtype: halfProjections ? "f16" : "f32" });
const c = model.config;
const settings = { rank, alpha, targetModules: resolveTargetModules(["all-linear"], "--target_modules") };
const sizes = { batch: B, seqLen: T, checkpointing: true, training: true, loraParameters: full ? undefined : loraParameterCount(c, settings), halfProjections };
console.log(`${full ? "full fine-tuning" : `LoRA r=${rank} alpha=${alpha}${dropoutP ? `, dropout ${dropoutP}` : ""}, all-linear`}; B=${B} T=${T}, activation checkpointing`);
console.log(formatMemoryEstimate(estimateMemory(c, sizes), sizes));

let params: GradientSet, grads: GradientSet;
if (full) {
  params = model.params;
  grads = model.newGradients();
} else {
  model.adapter = LoraWeights.init(gpu, c, settings, 0);
  params = model.adapter;
  grads = model.adapter.zerosLike();
}
const optimizer = new ActorOptimizer<GradientSet>(gpu, params, grads, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 });
await gpu.sync();
gpu.pool.stats.peak = gpu.pool.stats.inUse;
const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => 1 + ((7 * b + 13 * t) % (c.vocabSize - 1))));
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  const batch = makeBatch(gpu, seqs);
  const loraDropout = full ? undefined : { p: dropoutP, seed: loraDropoutSeed(0, s + 1, 0) };
  const dispatches = gpu.dispatchCount;
  const fwd = model.forward(batch, { train: true, checkpoint: true, loraDropout });
  const w = gpu.upload(new Float32Array(B * T).fill(-1 / (B * T)), [B * T]);
  model.backward(fwd, w, null, grads);
  const r = await optimizer.apply(1e-4);
  gpu.release(w, fwd.logprob, fwd.entropy);
  releaseBatch(gpu, batch);
  console.log(`step ${s + 1}: ${((performance.now() - t0) / 1000).toFixed(1)} s, ${gpu.dispatchCount - dispatches} dispatches, grad norm ${r.gradNorm.toFixed(4)}${s === 0 ? " (includes pipeline compilation)" : ""}`);
}
console.log(`GPU memory in use at the peak (pool): ${formatBytes(gpu.pool.stats.peak)}; trainable parameters ${(params.numel / 1e6).toFixed(2)}M of ${((model.params.numel + (full ? 0 : params.numel)) / 1e6).toFixed(2)}M`);
if (tmp) rmSync(tmp, { recursive: true, force: true });
process.exit(0);
