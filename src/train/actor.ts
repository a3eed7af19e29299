/**
 * The policy on the GPU as the trainer uses it: per-token log-probs of the response tokens of many sequences
 * (old and reference log-probs, no gradient), and the gradient of one micro-batch's policy loss accumulated
 * into the gradient set.
 *
 * A sequence is prompt ids + response ids. Response token j sits at position p = responseStart + j and is
 * predicted by row p − 1 of the forward pass (its log-prob and the entropy of the distribution it was drawn
 * from). Sequences go through the model in micro-batches whose summed lengths fit a token budget.
 */
import type { Tensor } from "../gpu/tensor.ts";
import { makeBatch, releaseBatch, type Transformer } from "../model/transformer.ts";
import type { ParameterSet } from "../model/weights.ts";
import type { LoraWeights } from "../model/lora.ts";
import { packMicroBatches } from "../data/packing.ts";
import type { LoraDropoutPass } from "../model/lora_dropout.ts";

/** What a backward accumulates into: every parameter (full fine-tuning), or the attached LoRA adapter's A and B. */
export type GradientSet = ParameterSet | LoraWeights;

export interface PolicySequence {
  ids: readonly number[];
  responseStart: number;
}

export interface ResponseScores {
  logprob: Float32Array[];
  entropy: Float32Array[];
}

function responseRows(seq: PolicySequence, b: number, T: number): { from: number; count: number } {
  return { from: b * T + seq.responseStart - 1, count: seq.ids.length - seq.responseStart };
}

/** Log-probs (and entropies) of every response token, at `temperature`, `maxTokens` summed tokens per forward. */
export async function scoreResponses(model: Transformer, seqs: readonly PolicySequence[], o: { temperature: number; maxTokens: number }): Promise<ResponseScores> {
  const out: ResponseScores = { logprob: new Array(seqs.length), entropy: new Array(seqs.length) };
  const g = model.gpu;
  for (const group of packMicroBatches(seqs.map((s) => s.ids.length), { maxTokens: o.maxTokens })) {
    const batch = makeBatch(g, group.map((i) => seqs[i]!.ids));
    const fwd = model.forward(batch, { temperature: o.temperature });
    const [lp, ent] = (await g.readMany([fwd.logprob, fwd.entropy])).map((b) => new Float32Array(b));
    g.release(fwd.logprob, fwd.entropy);
    releaseBatch(g, batch);
    group.forEach((i, b) => {
      const { from, count } = responseRows(seqs[i]!, b, batch.T);
      out.logprob[i] = lp!.slice(from, from + count);
      out.entropy[i] = ent!.slice(from, from + count);
    });
  }
  return out;
}

/** What the loss needs from a forward pass with gradients, and how to send the loss's gradient back. */
export interface MicroBatchPass {
  logprob: Float32Array[];
  entropy: Float32Array[];
  /** Accumulates into `grads` the gradient given ∂loss/∂logprob and ∂loss/∂entropy per response token; frees the pass. */
  backward(dLogprob: readonly Float32Array[], dEntropy: readonly Float32Array[], grads: GradientSet): void;
  /** Frees the pass without a backward (e.g. a skipped non-finite loss). */
  discard(): void;
}

/**
 * Forward with activations kept for backward, over the sequences `seqs` (one micro-batch); with `loraDropout`, the
 * pass (forward and backward) applies the adapter's dropout.
 */
export async function forwardForUpdate(model: Transformer, seqs: readonly PolicySequence[], o: { temperature: number; checkpoint: boolean; loraDropout?: LoraDropoutPass }): Promise<MicroBatchPass> {
  const g = model.gpu;
  const batch = makeBatch(g, seqs.map((s) => s.ids));
  const fwd = model.forward(batch, { train: true, checkpoint: o.checkpoint, temperature: o.temperature, loraDropout: o.loraDropout });
  const [lp, ent] = (await g.readMany([fwd.logprob, fwd.entropy])).map((b) => new Float32Array(b));
  const rows = seqs.map((s, b) => responseRows(s, b, batch.T));
  const free = (extra: Tensor[] = []) => {
    g.release(fwd.logprob, fwd.entropy, ...extra);
    releaseBatch(g, batch);
  };
  return {
    logprob: rows.map((r) => lp!.slice(r.from, r.from + r.count)),
    entropy: rows.map((r) => ent!.slice(r.from, r.from + r.count)),
    backward(dLogprob, dEntropy, grads) {
      const N = batch.B * batch.T;
      const dl = new Float32Array(N), de = new Float32Array(N);
      rows.forEach((r, b) => {
        dl.set(dLogprob[b]!, r.from);
        de.set(dEntropy[b]!, r.from);
      });
      const dlT = g.upload(dl, [N]), deT = g.upload(de, [N]);
      model.backward(fwd, dlT, deT, grads);
      free([dlT, deT]);
    },
    discard() {
      model.releaseForward(fwd);
      free();
    },
  };
}
