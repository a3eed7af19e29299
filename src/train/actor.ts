/**
 * The policy on the GPU as the trainer uses it: per-token log-probs of the response tokens of many sequences
 * (old and reference log-probs, no gradient), and the gradient of one micro-batch's policy loss accumulated
 * into the gradient set.
 *
 * A sequence is prompt ids + response ids. Response token j sits at position p = responseStart + j and is
 * predicted by row p − 1 of the forward pass (its log-prob and the entropy of the distribution it was drawn
 * from). Sequences go through the model in micro-batches whose summed lengths fit a token budget, and a micro-batch
 * in forward passes of sequences of similar length (paddingPasses): a pass computes B × its longest length rows, so
 * sequences of 130 and 192 tokens in one pass would waste a third of the shorter ones' rows.
 */
import type { Tensor } from "../gpu/tensor.ts";
import { makeBatch, releaseBatch, type TokenBatch, type Transformer } from "../model/transformer.ts";
import type { ParameterSet } from "../model/weights.ts";
import { parameterCount } from "../model/config.ts";
import type { LoraWeights } from "../model/lora.ts";
import { packMicroBatches, paddingPasses } from "../data/packing.ts";
import { splitPassDropout, type LoraDropoutPass } from "../model/lora_dropout.ts";

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

/**
 * Fewest logits (skipped rows × vocabulary) for which a pass runs its LM head on the response rows only: below it the
 * rows' gather and scatter (six dispatches) cost more than they save — an SFT pass, whose rows are all wanted but the
 * padding's, ran 2–6% slower with them on the demo's model (V = 320).
 */
const MIN_SKIPPED_LOGITS = 1 << 16;

/**
 * A pass's batch whose LM head runs on the response tokens' rows only (row p − 1 predicts token p) when that skips
 * enough work, and where each member's values sit in the pass's logprob/entropy: back to back in member order, or at
 * their rows of the padded batch.
 */
export function responseBatch(model: Transformer, seqs: readonly PolicySequence[]): { batch: TokenBatch; rows: { from: number; count: number }[] } {
  const T = Math.max(1, ...seqs.map((s) => s.ids.length));
  const wanted = seqs.reduce((n, s) => n + Math.max(0, s.ids.length - s.responseStart), 0);
  const skip = (seqs.length * T - wanted) * model.V >= MIN_SKIPPED_LOGITS;
  const batch = makeBatch(model.gpu, seqs.map((s) => s.ids), T, skip ? seqs.map((s) => s.responseStart - 1) : undefined);
  let from = 0;
  const rows = seqs.map((s, b) => {
    // Without head rows (too little to skip, or every response empty) the pass computed every row.
    const r = { from: batch.head ? from : b * batch.T + s.responseStart - 1, count: Math.max(0, s.ids.length - s.responseStart) };
    from += r.count;
    return r;
  });
  return { batch, rows };
}

/**
 * What one extra forward pass costs beyond its padded rows, in rows: its fixed overhead (dispatches, a readback) over
 * what one row's multiply-adds cost, so smaller models split less. Measured with bench/train.ts on lavapipe: a pass of
 * the tiny preset (0.09M parameters) costs ~1,500 of its rows (splitting its GRPO micro-batches made the step slower),
 * one of the small preset (19M) a few dozen rows (splitting made its reference and update passes 12–15% faster).
 */
function passCostRows(model: Transformer): number {
  return Math.max(64, Math.round(1.5e8 / parameterCount(model.config)));
}

/** The forward passes of one group of sequences: indices into it, each pass's sequences of similar length. */
function passesOf(model: Transformer, seqs: readonly PolicySequence[], costRows = passCostRows(model)): number[][] {
  return paddingPasses(seqs.map((s) => s.ids.length), costRows);
}

/** Options of both entry points: `passCostRows` overrides passCostRows(model) (Infinity: one pass per micro-batch; tests). */
interface PassOptions {
  passCostRows?: number;
}

/** Log-probs (and entropies) of every response token, at `temperature`, `maxTokens` summed tokens per micro-batch. */
export async function scoreResponses(model: Transformer, seqs: readonly PolicySequence[], o: { temperature: number; maxTokens: number } & PassOptions): Promise<ResponseScores> {
  const out: ResponseScores = { logprob: new Array(seqs.length), entropy: new Array(seqs.length) };
  const g = model.gpu;
  for (const micro of packMicroBatches(seqs.map((s) => s.ids.length), { maxTokens: o.maxTokens })) {
    for (const pass of passesOf(model, micro.map((i) => seqs[i]!), o.passCostRows)) {
      const group = pass.map((k) => micro[k]!);
      const { batch, rows } = responseBatch(model, group.map((i) => seqs[i]!));
      const fwd = model.forward(batch, { temperature: o.temperature });
      const [lp, ent] = (await g.readMany([fwd.logprob, fwd.entropy])).map((b) => new Float32Array(b));
      g.release(fwd.logprob, fwd.entropy);
      releaseBatch(g, batch);
      group.forEach((i, b) => {
        const { from, count } = rows[b]!;
        out.logprob[i] = lp!.slice(from, from + count);
        out.entropy[i] = ent!.slice(from, from + count);
      });
    }
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
 * Forward with activations kept for backward, over the sequences `seqs` (one micro-batch, run as one or more passes of
 * similar lengths whose activations all stay until the backward); with `loraDropout`, the passes (forward and
 * backward) apply the adapter's dropout.
 */
export async function forwardForUpdate(model: Transformer, seqs: readonly PolicySequence[], o: { temperature: number; checkpoint: boolean; loraDropout?: LoraDropoutPass } & PassOptions): Promise<MicroBatchPass> {
  const g = model.gpu;
  const passes = passesOf(model, seqs, o.passCostRows).map((members, k) => {
    const { batch, rows } = responseBatch(model, members.map((i) => seqs[i]!));
    const loraDropout = o.loraDropout && splitPassDropout(o.loraDropout, k);
    const fwd = model.forward(batch, { train: true, checkpoint: o.checkpoint, temperature: o.temperature, loraDropout });
    return { members, batch, fwd, rows };
  });
  const read = (await g.readMany(passes.flatMap((p) => [p.fwd.logprob, p.fwd.entropy]))).map((b) => new Float32Array(b));
  const logprob: Float32Array[] = new Array(seqs.length);
  const entropy: Float32Array[] = new Array(seqs.length);
  passes.forEach((p, k) => {
    p.members.forEach((i, b) => {
      const r = p.rows[b]!;
      logprob[i] = read[2 * k]!.slice(r.from, r.from + r.count);
      entropy[i] = read[2 * k + 1]!.slice(r.from, r.from + r.count);
    });
  });
  const free = (p: (typeof passes)[number], extra: Tensor[] = []) => {
    g.release(p.fwd.logprob, p.fwd.entropy, ...extra);
    releaseBatch(g, p.batch);
  };
  return {
    logprob,
    entropy,
    backward(dLogprob, dEntropy, grads) {
      for (const p of passes) {
        const N = p.fwd.logprob.numel;
        const dl = new Float32Array(N), de = new Float32Array(N);
        p.members.forEach((i, b) => {
          dl.set(dLogprob[i]!, p.rows[b]!.from);
          de.set(dEntropy[i]!, p.rows[b]!.from);
        });
        const dlT = g.upload(dl, [N]), deT = g.upload(de, [N]);
        model.backward(p.fwd, dlT, deT, grads);
        free(p, [dlT, deT]);
      }
    },
    discard() {
      for (const p of passes) {
        model.releaseForward(p.fwd);
        free(p);
      }
    },
  };
}
