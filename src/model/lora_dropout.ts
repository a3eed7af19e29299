/**
 * LoRA dropout as PEFT applies it: y = x·Wᵀ (+ b) + s·(dropout(x)·Aᵀ)·Bᵀ, inverted dropout (p = lora_dropout) on the
 * adapter branch's input only, in training passes only (PEFT's nn.Dropout is inert in eval mode).
 *
 * Masks are keyed, never stored (src/ops/dropout.ts): a training pass has one seed — from the run seed, the step and
 * the pass's index in that step, so a resumed run draws the same masks — and each adapted projection of each layer
 * draws its own mask from (pass seed, layer, projection). The backward and an activation-checkpointing recompute
 * regenerate the forward's masks from the same key.
 */
import { mix32 } from "../util/prng.ts";
import type { DropoutKey } from "../ops/dropout.ts";
import { LORA_MODULES, type LoraModule } from "./lora.ts";

/** Dropout of one training pass (one micro-batch's forward and backward). */
export interface LoraDropoutPass {
  /** lora_dropout, in [0, 1); 0 runs exactly the pass without dropout. */
  p: number;
  /** u32 seed of this pass's masks (loraDropoutSeed). */
  seed: number;
}

/** LoRA dropout of a training step: its passes are numbered 0, 1, … in the order they run. */
export interface LoraDropoutStep {
  p: number;
  runSeed: number;
  step: number;
}

/** The seed of pass `pass` (0, 1, … in the order the step runs its micro-batches) of step `step` of a run. */
export function loraDropoutSeed(runSeed: number, step: number, pass: number): number {
  return mix32((mix32((mix32((runSeed ^ 0x4c6f5241) >>> 0) + step) >>> 0) + pass) >>> 0);
}

/**
 * The dropout of the k-th forward pass a micro-batch is run in (src/train/actor.ts splits a micro-batch into passes
 * by length): pass 0 keeps the micro-batch's seed, the others draw their own masks.
 */
export function splitPassDropout(d: LoraDropoutPass, k: number): LoraDropoutPass {
  return k === 0 ? d : { p: d.p, seed: mix32((d.seed + Math.imul(k, 0x9e3779b9)) >>> 0) };
}

/** The key of the mask on layer l's projection m in a pass seeded `seed`. */
export function loraDropoutKey(seed: number, l: number, m: LoraModule): DropoutKey {
  const stream = (l * LORA_MODULES.length + LORA_MODULES.indexOf(m) + 1) >>> 0;
  return { key0: mix32((seed ^ mix32(stream)) >>> 0), key1: mix32((seed + 0x9e3779b9 + stream) >>> 0) };
}
