/**
 * How much GPU memory a run needs, from the model config and the run's sizes, before anything is allocated:
 * weights, gradients, AdamW state, activations kept for backward (with or without activation
 * checkpointing), the KV cache, and the LM-head chunk scratch. Everything is f32 on the GPU.
 *
 * Activations are counted per token and per layer from what a backward pass of this architecture must
 * keep (or recompute): the residual input, both RMSNorm outputs and their inverse RMS, q/k/v (before and
 * after RoPE, and before the q/k norm for Qwen3), the attention output and its log-sum-exp, the residual
 * after attention, and the MLP's gate, up and gated product. The backward pass also needs a working set of
 * about one layer's activations for gradients flowing through that layer.
 *
 * With LoRA the base weights are frozen: gradients and AdamW moments exist for the adapter's A and B only, and the
 * reference policy is the base model with the adapter switched off, so there is no reference copy. The estimate
 * then also gives what full fine-tuning of the same run would need, to show the saving.
 */
import { parameterCount, type ModelConfig } from "./config.ts";
import { logprobsScratchBytes } from "../ops/logprobs.ts";
import { LORA_MODULES, loraModuleDims } from "./lora.ts";

/** Weights of the decoder layers' projections (q/k/v/o/gate/up/down): what f16 storage halves. */
export function projectionParameterCount(c: ModelConfig): number {
  return c.numLayers * LORA_MODULES.reduce((n, m) => {
    const { inF, outF } = loraModuleDims(c, m);
    return n + inF * outF;
  }, 0);
}

const F32 = 4;

export interface RunSizes {
  /** Sequences per forward/backward micro-batch. */
  batch: number;
  /** Padded tokens per sequence in that micro-batch. */
  seqLen: number;
  /** Recompute each layer in backward, keeping only layer inputs (activation checkpointing). */
  checkpointing?: boolean;
  /** Training (grads and AdamW state). False for scoring / generation only. */
  training?: boolean;
  /** A frozen reference copy of the weights (KL term in GRPO); "bf16-projections": from a bf16 checkpoint, kept so. */
  referenceModel?: boolean | "bf16-projections";
  /** Tokens per LM-head chunk (default: the fused log-prob op's own, 128); logits exist as [chunk × vocab slice] only. */
  lmHeadChunk?: number;
  /** LoRA: the adapter's trainable parameters (r·(in + out) per adapted projection); the base weights are frozen. */
  loraParameters?: number;
  /** The decoder layers' projection weights stored in 16 bits (a LoRA run's frozen f16 base; a bf16 checkpoint opened for inference). */
  halfProjections?: boolean;
  /** KV cache for generation: sequences × capacity tokens (0: no generation). */
  kvSequences?: number;
  /** The rollout decodes with a copy of the weights whose projections are bf16 (`actor_rollout_ref.rollout.dtype`). */
  bf16RolloutCopy?: boolean;
  kvCapacity?: number;
}

export interface MemoryEstimate {
  weights: number;
  /** The projection weights are counted at 2 bytes (f16). */
  halfProjections?: boolean;
  /** The LoRA adapter's A and B (0 without LoRA). */
  adapter: number;
  referenceWeights: number;
  /** The rollout's bf16 projections and LM head; 0 when the rollout decodes with the policy's own weights. */
  rolloutWeights: number;
  grads: number;
  optimizer: number;
  /** Activations kept from forward for backward (or, without training, one layer's working set). */
  activations: number;
  /** Gradient working set during backward (about one layer's activations). */
  backwardScratch: number;
  kvCache: number;
  /** Logits of one LM-head chunk (and their gradient when training). */
  lmHeadScratch: number;
  /** Logits of the decoding batch (one row per sequence) for sampling. */
  decodeLogits: number;
  total: number;
  /** With LoRA: the total the same run would need with full fine-tuning (grads, moments and a reference of every weight). */
  fullFineTuningTotal?: number;
  /** f32 values per token per layer that the forward keeps for backward without checkpointing. */
  activationFloatsPerTokenPerLayer: number;
  kvBytesPerToken: number;
}

/** f32 values per token per layer that a backward pass needs from the forward (see the file comment). */
export function activationFloatsPerTokenPerLayer(c: ModelConfig): number {
  const H = c.hiddenSize, I = c.intermediateSize;
  const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  let n = 0;
  n += H; // residual input
  n += H + 1; // input RMSNorm output + 1/rms
  n += q + 2 * kv; // q, k, v projections
  if (c.qkNorm) n += q + kv + c.numHeads + c.numKvHeads; // q/k after their per-head RMSNorm + 1/rms per head
  n += q + kv; // q, k after RoPE
  n += q + c.numHeads; // attention output + log-sum-exp per head
  n += H; // residual after attention
  n += H + 1; // post-attention RMSNorm output + 1/rms
  n += 3 * I; // gate, up, silu(gate)·up
  return n;
}

/** Bytes of K and V for one token across all layers. */
export function kvBytesPerToken(c: ModelConfig): number {
  return c.numLayers * 2 * c.numKvHeads * c.headDim * F32;
}

export function estimateMemory(c: ModelConfig, run: RunSizes): MemoryEstimate {
  const lora = run.loraParameters;
  if (lora !== undefined) {
    const full = estimateMemory(c, { ...run, loraParameters: undefined, halfProjections: false });
    const training = run.training ?? true;
    const adapter = lora * F32;
    const grads = training ? adapter : 0;
    const optimizer = training ? 2 * adapter : 0;
    // f16 projections: 2 bytes instead of 4 for each of their weights.
    const weights = full.weights - (run.halfProjections ? 2 * projectionParameterCount(c) : 0);
    const total = full.total - full.weights - full.referenceWeights - full.grads - full.optimizer + weights + adapter + grads + optimizer;
    return { ...full, weights, halfProjections: !!run.halfProjections, adapter, referenceWeights: 0, grads, optimizer, total, fullFineTuningTotal: full.total };
  }
  const training = run.training ?? true;
  const params = parameterCount(c);
  const tokens = run.batch * run.seqLen;
  const perLayer = activationFloatsPerTokenPerLayer(c);
  // 16-bit projections (a frozen base, a bf16 checkpoint opened for inference): 2 bytes instead of 4 each.
  const weights = params * F32 - (run.halfProjections ? 2 * projectionParameterCount(c) : 0);
  // A frozen reference from a bf16 checkpoint keeps its projections bf16 (ParameterSet's "stored").
  const referenceWeights = run.referenceModel ? params * F32 - (run.referenceModel === "bf16-projections" ? 2 * projectionParameterCount(c) : 0) : 0;
  // The bf16 copy's own tensors: the projections and an LM head at 2 bytes (the rest is the policy's, shared).
  const rolloutWeights = run.bf16RolloutCopy ? 2 * (projectionParameterCount(c) + c.vocabSize * c.hiddenSize) : 0;
  const grads = training ? params * F32 : 0;
  const optimizer = training ? 2 * params * F32 : 0; // AdamW first and second moments
  // Final norm output + 1/rms, and per-token log-prob, entropy and log-sum-exp of the LM head.
  const headFloats = c.hiddenSize + 1 + 3;
  let activations: number;
  if (!training) activations = tokens * (perLayer + headFloats) * F32;
  else if (run.checkpointing) activations = tokens * (c.numLayers * c.hiddenSize + perLayer + headFloats) * F32;
  else activations = tokens * (c.numLayers * perLayer + headFloats) * F32;
  const backwardScratch = training ? tokens * perLayer * F32 : 0;
  // The fused LM head's scratch (ops/logprobs.ts): one [chunk × vocab slice] block of logits, reused by the backward.
  const lmHeadScratch = logprobsScratchBytes({ N: tokens, V: c.vocabSize, D: c.hiddenSize }, { chunk: run.lmHeadChunk });
  const kvSeq = run.kvSequences ?? 0;
  const kvCache = kvSeq * (run.kvCapacity ?? 0) * kvBytesPerToken(c);
  const decodeLogits = kvSeq * c.vocabSize * F32;
  const total = weights + referenceWeights + rolloutWeights + grads + optimizer + activations + backwardScratch + kvCache + lmHeadScratch + decodeLogits;
  return {
    weights,
    ...(run.halfProjections ? { halfProjections: true } : {}),
    adapter: 0,
    referenceWeights,
    rolloutWeights,
    grads,
    optimizer,
    activations,
    backwardScratch,
    kvCache,
    lmHeadScratch,
    decodeLogits,
    total,
    activationFloatsPerTokenPerLayer: perLayer,
    kvBytesPerToken: kvBytesPerToken(c),
  };
}

/** "12.3 MiB", "1.50 GiB", "512 B". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

/** A table of the estimate, one line per non-zero item, for printing before a run. */
export function formatMemoryEstimate(e: MemoryEstimate, run?: RunSizes): string {
  const lora = e.fullFineTuningTotal !== undefined;
  const rows: [string, number, string][] = [
    ["weights", e.weights, lora ? (e.halfProjections ? "frozen; projections 16-bit, the rest f32" : "f32, frozen") : e.halfProjections ? "projections 16-bit, the rest f32" : "f32"],
    ["LoRA adapter", e.adapter, "A and B, f32"],
    ["reference weights", e.referenceWeights, run?.referenceModel === "bf16-projections" ? "frozen copy for KL; projections bf16, as stored" : "frozen copy for KL"],
    ["rollout weights", e.rolloutWeights, "bf16 projections and LM head for the rollout"],
    ["gradients", e.grads, lora ? "adapter only" : "f32"],
    ["AdamW state", e.optimizer, lora ? "2 moments of the adapter" : "2 moments, f32"],
    ["activations", e.activations, run?.checkpointing ? "layer inputs + one layer (checkpointing)" : `${e.activationFloatsPerTokenPerLayer} floats/token/layer`],
    ["backward scratch", e.backwardScratch, "about one layer"],
    ["KV cache", e.kvCache, `${formatBytes(e.kvBytesPerToken)}/token`],
    ["LM-head chunk", e.lmHeadScratch, "chunk × vocab slice (never tokens × vocab)"],
    ["decode logits", e.decodeLogits, "batch × vocab"],
  ];
  const lines = rows.filter((r) => r[1] > 0).map(([name, bytes, note]) => `  ${name.padEnd(18)} ${formatBytes(bytes).padStart(11)}  ${note}`);
  lines.push(`  ${"total".padEnd(18)} ${formatBytes(e.total).padStart(11)}`);
  if (e.fullFineTuningTotal !== undefined) {
    const saved = e.fullFineTuningTotal - e.total;
    lines.push(`  ${"full fine-tuning".padEnd(18)} ${formatBytes(e.fullFineTuningTotal).padStart(11)}  LoRA saves ${formatBytes(saved)} (base gradients, AdamW moments${run?.referenceModel ? ", reference copy" : ""})`);
  }
  return lines.join("\n");
}
