/**
 * The gradient of one optimizer batch: its conversations go through the model in micro-batches (a fixed number of
 * conversations, or as many as a padded-token budget holds, grouped by length), each forward followed at once by its
 * backward, the gradients accumulating in `grads`. Returns the batch's loss (see loss.ts).
 */
import type { Transformer } from "../model/transformer.ts";
import { packMicroBatches, paddedMicroBatches } from "../data/packing.ts";
import { forwardForUpdate, type GradientSet } from "../train/actor.ts";
import { maskedNll, nllGradient, predictedMask } from "./loss.ts";
import { loraDropoutSeed, type LoraDropoutStep } from "../model/lora_dropout.ts";

/** What a micro-batch needs of a conversation. */
export interface TrainSequence {
  ids: readonly number[];
  mask: readonly number[];
}

export interface MicroBatching {
  /** Conversations per pass; undefined: fill passes up to `maxTokens` padded tokens. */
  sequences?: number;
  maxTokens: number;
}

/** The passes of a batch: index groups into `seqs`. */
export function microBatches(seqs: readonly TrainSequence[], o: MicroBatching): number[][] {
  const lengths = seqs.map((s) => s.ids.length);
  if (o.sequences === undefined) return paddedMicroBatches(lengths, o.maxTokens);
  // Fixed-size passes over the batch sorted by length, so each pass pads little.
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  return packMicroBatches(order.map((i) => lengths[i]!), { maxSequences: o.sequences }).map((g) => g.map((k) => order[k]!).sort((a, b) => a - b));
}

export interface BatchLoss {
  /** Token-mean loss of the batch. */
  loss: number;
  /** Trained tokens. */
  tokens: number;
  /** All tokens of the batch (unpadded). */
  totalTokens: number;
  passes: number;
}

/** Accumulates into `grads` the gradient of the batch's loss; returns the loss. */
export async function accumulateBatchGradient(
  model: Transformer,
  grads: GradientSet,
  seqs: readonly TrainSequence[],
  passes: readonly number[][],
  o: { checkpoint: boolean; loraDropout?: LoraDropoutStep },
): Promise<BatchLoss> {
  const masks = seqs.map((s) => predictedMask(s.mask));
  const batchTokens = masks.reduce((a, m) => a + m.reduce((x, y) => x + y, 0), 0);
  let sum = 0;
  for (const [k, group] of passes.entries()) {
    const d = o.loraDropout;
    const loraDropout = d ? { p: d.p, seed: loraDropoutSeed(d.runSeed, d.step, k) } : undefined;
    // responseStart 1: every position but the first is predicted, and the mask says which count (the LM head may skip
    // the others: the prompt, tool responses).
    const groupMasks = group.map((i) => masks[i]!);
    const pass = await forwardForUpdate(model, group.map((i, k) => ({ ids: seqs[i]!.ids, responseStart: 1, used: groupMasks[k] })), { temperature: 1, checkpoint: o.checkpoint, loraDropout });
    sum += maskedNll(pass.logprob, groupMasks).sum;
    const dLogprob = nllGradient(groupMasks, batchTokens);
    pass.backward(dLogprob, dLogprob.map((d) => new Float32Array(d.length)), grads);
  }
  return { loss: batchTokens > 0 ? sum / batchTokens : 0, tokens: batchTokens, totalTokens: seqs.reduce((a, s) => a + s.ids.length, 0), passes: passes.length };
}
