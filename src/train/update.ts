/**
 * The actor update of one training step, as verl runs it: `ppoEpochs` passes over the batch in consecutive
 * mini-batches (`miniBatchSequences` = ppo_mini_batch_size × n), each split into micro-batches (verl's balanced
 * partition under a token budget, or fixed sizes), each micro-batch's loss scaled by its share of the mini-batch
 * (dynamic sizes) or by 1 / the number of micro-batches, gradients accumulated, then one clipped AdamW step per
 * mini-batch (skipped when the gradient norm is not finite).
 */
import type { Transformer } from "../model/transformer.ts";
import { packMicroBatches } from "../data/packing.ts";
import { epochOrder } from "../data/sampler.ts";
import { forwardForUpdate, type GradientSet, type PolicySequence } from "./actor.ts";
import { policyLossAndGrads, type PolicyLossMetrics, type PolicyLossSettings } from "./loss.ts";
import type { ActorOptimizer } from "./optimizer.ts";
import { loraDropoutSeed, type LoraDropoutStep } from "../model/lora_dropout.ts";

/** Everything the update needs per sequence (response tokens only for the arrays). */
export interface UpdateBatch {
  seqs: readonly PolicySequence[];
  /**
   * The rollout policy's log-probs. Undefined when the update is on-policy — one epoch, one mini-batch, so one
   * optimizer step after every forward: each micro-batch's own forward then runs on the rollout's weights and its
   * log-probs are the old ones (what TRL does with num_iterations = 1), which saves a separate scoring pass.
   */
  oldLogprob?: readonly Float32Array[];
  refLogprob?: readonly Float32Array[];
  advantages: readonly Float32Array[];
  lossMask: readonly Float32Array[];
}

export interface UpdateSettings {
  ppoEpochs: number;
  miniBatchSequences: number;
  /** Token budget per micro-batch (verl's use_dynamic_bsz); else `microBatchSequences`. */
  maxTokens?: number;
  microBatchSequences?: number;
  temperature: number;
  checkpoint: boolean;
  loss: PolicyLossSettings;
  lr: number;
  /** actor.shuffle: a seeded reshuffle of the sequences before each epoch's mini-batches (undefined: in order). */
  shuffleSeed?: number;
  /** LoRA dropout in the update's forward passes (the k-th micro-batch pass of the step draws masks keyed by k). */
  loraDropout?: LoraDropoutStep;
}

export interface UpdateResult {
  /** One entry per micro-batch, as verl logs them. */
  lossMetrics: PolicyLossMetrics[];
  /** Each optimizer step's gradient norm (before clipping). */
  gradNorms: number[];
  skippedSteps: number;
  /** Micro-batches (sequence indices) of each mini-batch, for logs and tests. */
  partitions: number[][][];
  /** The old log-probs used: the given ones, or those the forward passes produced (on-policy). */
  oldLogprob: Float32Array[];
}

export async function updateActor(model: Transformer, optimizer: ActorOptimizer<GradientSet>, b: UpdateBatch, o: UpdateSettings): Promise<UpdateResult> {
  const S = b.seqs.length;
  if (!b.oldLogprob && !(o.ppoEpochs === 1 && o.miniBatchSequences >= S)) {
    throw new Error("updateActor: old log-probs may be left out only when there is one epoch of one mini-batch (one optimizer step)");
  }
  if (!b.oldLogprob && o.loraDropout) throw new Error("updateActor: with LoRA dropout the old log-probs come from a pass without it; give them");
  let pass = 0;
  const old: Float32Array[] = b.oldLogprob ? [...b.oldLogprob] : new Array(S);
  const out: UpdateResult = { lossMetrics: [], gradNorms: [], skippedSteps: 0, partitions: [], oldLogprob: old };
  for (let epoch = 0; epoch < o.ppoEpochs; epoch++) {
    const order = epochOrder(S, o.shuffleSeed ?? 0, epoch, o.shuffleSeed !== undefined);
    for (let m0 = 0; m0 < S; m0 += o.miniBatchSequences) {
      const mini = order.slice(m0, m0 + o.miniBatchSequences);
      const micros = packMicroBatches(
        mini.map((i) => b.seqs[i]!.ids.length),
        o.maxTokens !== undefined ? { maxTokens: o.maxTokens } : { maxSequences: o.microBatchSequences ?? mini.length },
      ).map((g) => g.map((k) => mini[k]!));
      out.partitions.push(micros);
      for (const micro of micros) {
        const scale = o.maxTokens !== undefined ? micro.length / mini.length : 1 / micros.length;
        const d = o.loraDropout;
        const loraDropout = d ? { p: d.p, seed: loraDropoutSeed(d.runSeed, d.step, pass) } : undefined;
        pass++;
        const fwd = await forwardForUpdate(model, micro.map((i) => b.seqs[i]!), { temperature: o.temperature, checkpoint: o.checkpoint, loraDropout });
        if (!b.oldLogprob) micro.forEach((i, k) => (old[i] = fwd.logprob[k]!.slice()));
        const r = policyLossAndGrads(
          {
            logprob: fwd.logprob,
            oldLogprob: micro.map((i) => old[i]!),
            refLogprob: b.refLogprob ? micro.map((i) => b.refLogprob![i]!) : undefined,
            entropy: fwd.entropy,
            advantages: micro.map((i) => b.advantages[i]!),
            mask: micro.map((i) => b.lossMask[i]!),
          },
          o.loss,
          scale,
        );
        out.lossMetrics.push(r.metrics);
        fwd.backward(r.dLogprob, r.dEntropy, optimizer.grads);
      }
      const step = await optimizer.apply(o.lr);
      out.gradNorms.push(step.gradNorm);
      if (step.skipped) out.skippedSteps++;
    }
  }
  return out;
}
