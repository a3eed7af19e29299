/**
 * The policy on the GPU as the trainer uses it: per-token log-probs of the response tokens of many sequences
 * (old and reference log-probs, no gradient), and the gradient of one micro-batch's policy loss accumulated
 * into the gradient set.
 *
 * A sequence is prompt ids + response ids. Response token j sits at position p = responseStart + j and is
 * predicted by row p − 1 of the forward pass (its log-prob and the entropy of the distribution it was drawn
 * from). Sequences go through the model in micro-batches whose summed lengths fit a token budget, and a micro-batch
 * in forward passes of sequences of similar length (paddingPasses): a pass computes B × its longest length rows, so
 * sequences of 130 and 192 tokens in one pass would waste a third of the shorter ones' rows. Sequences that share a
 * prompt (a GRPO group's n samples) run it once when that saves rows (src/model/shared_prefix.ts): the pass then holds
 * each distinct prompt but its last token once, and every sample's last prompt token and response.
 */
import type { Tensor } from "../gpu/tensor.ts";
import { makeBatch, releaseBatch, type TokenBatch, type Transformer } from "../model/transformer.ts";
import { makeSharedPrefixBatch, planSharedPrefix, sharedPrefixRowMultiple, type SharedPrefixPlan } from "../model/shared_prefix.ts";
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
  /**
   * One flag per response position (responseStart .. length − 1): nonzero where its log-prob is used (SFT: the loss
   * mask). The LM head may skip the others, whose log-probs and entropies then read as 0. Default: all used.
   */
  used?: ArrayLike<number>;
}

export interface ResponseScores {
  logprob: Float32Array[];
  entropy: Float32Array[];
}

/**
 * Fewest logits (skipped rows × vocabulary) for which a pass runs its LM head on the used response rows only: below it
 * the rows' gather and scatter (six dispatches) cost more than they save — an SFT pass with every row wanted but the
 * padding's ran 2–6% slower with them on the demo's model (V = 320).
 */
const MIN_SKIPPED_LOGITS = 1 << 16;

/** A pass's batch, and where each member's response values sit in the pass's logprob/entropy (and its gradients). */
export interface ResponseBatch {
  batch: TokenBatch;
  /** Member b's values, one per response position (0 where unused and skipped). */
  read(pass: Float32Array, b: number): Float32Array;
  /** Puts member b's per-position values (gradients) where the pass's rows hold them. */
  write(pass: Float32Array, b: number, values: Float32Array): void;
}

/**
 * A pass's batch whose LM head runs on the used response rows only (row p − 1 predicts token p) when that skips enough
 * work — the pass's logprob/entropy then hold those rows back to back in member order — else on every row.
 */
export function responseBatch(model: Transformer, seqs: readonly PolicySequence[]): ResponseBatch {
  const T = Math.max(1, ...seqs.map((s) => s.ids.length));
  // Per member, the response positions (index j: position responseStart + j) whose rows go through the head.
  const positions = seqs.map((s) => {
    const out: number[] = [];
    for (let j = 0; j < s.ids.length - s.responseStart; j++) if (!s.used || s.used[j] !== 0) out.push(j);
    return out;
  });
  const wanted = positions.reduce((n, js) => n + js.length, 0);
  const shared = sharedPrefixPlan(model, seqs);
  const rows = shared ? shared.rows : seqs.length * T;
  const skip = (rows - wanted) * model.V >= MIN_SKIPPED_LOGITS;
  const head = skip ? positions.map((js, b) => js.map((j) => seqs[b]!.responseStart - 1 + j)) : undefined;
  const ids = seqs.map((s) => s.ids);
  const batch = shared ? makeSharedPrefixBatch(model.gpu, shared, ids, seqs.map(prefixLength), head) : makeBatch(model.gpu, ids, T, head);
  const count = (b: number) => Math.max(0, seqs[b]!.ids.length - seqs[b]!.responseStart);
  if (!batch.head) {
    // Every row computed (too little to skip, or nothing used): member b's values are its rows from responseStart − 1.
    const from = (b: number) => batch.row(b, seqs[b]!.responseStart - 1);
    return {
      batch,
      read: (pass, b) => pass.slice(from(b), from(b) + count(b)),
      write: (pass, b, values) => pass.set(values, from(b)),
    };
  }
  const offsets: number[] = [];
  let at = 0;
  for (const js of positions) {
    offsets.push(at);
    at += js.length;
  }
  return {
    batch,
    read: (pass, b) => {
      const out = new Float32Array(count(b));
      positions[b]!.forEach((j, k) => (out[j] = pass[offsets[b]! + k]!));
      return out;
    },
    write: (pass, b, values) => positions[b]!.forEach((j, k) => (pass[offsets[b]! + k] = values[j]!)),
  };
}

/** The tokens a sequence may share with others: its prompt but the last token (whose row predicts the first response token). */
function prefixLength(s: PolicySequence): number {
  return Math.max(0, s.responseStart - 1);
}

/**
 * Fewest rows a shared-prefix pass must save over padding every sequence to the longest: the layout's own work (per
 * layer, gathering each sample's keys, a second attention, and in the backward scattering their gradients back).
 */
const SHARED_PREFIX_MIN_SAVING = 0.1;

/** The shared-prefix layout of a pass's sequences when some share a prompt and it saves enough rows, else undefined. */
function sharedPrefixPlan(model: Transformer, seqs: readonly PolicySequence[]): SharedPrefixPlan | undefined {
  if (seqs.length < 2) return undefined;
  const plan = planSharedPrefix(seqs.map((s) => s.ids), seqs.map(prefixLength), sharedPrefixRowMultiple(model.gpu, model.config));
  const T = Math.max(...seqs.map((s) => s.ids.length));
  // Each sample's gathered keys are one attention binding, like a whole pass's keys.
  const gatheredBytes = plan.S * (plan.Tp + plan.Ts) * model.Hkv * model.hd * 4;
  if (gatheredBytes > model.gpu.limits.maxStorageBufferBindingSize) return undefined;
  return plan.prefixes.length < seqs.length && plan.rows <= (1 - SHARED_PREFIX_MIN_SAVING) * seqs.length * T ? plan : undefined;
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

/**
 * The forward passes of one group of sequences: indices into it, each pass's sequences of similar length — or all of
 * them in one pass when they share prompts and that pass computes fewer rows than the padding passes cost.
 */
function passesOf(model: Transformer, seqs: readonly PolicySequence[], costRows = passCostRows(model)): number[][] {
  const lengths = seqs.map((s) => s.ids.length);
  const passes = paddingPasses(lengths, costRows);
  const shared = sharedPrefixPlan(model, seqs);
  if (!shared || passes.length === 1) return passes;
  const paddedRows = passes.reduce((n, p) => n + p.length * Math.max(...p.map((i) => lengths[i]!)) + costRows, 0);
  return shared.rows + costRows < paddedRows ? [seqs.map((_, i) => i)] : passes;
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
      const rb = responseBatch(model, group.map((i) => seqs[i]!));
      const fwd = model.forward(rb.batch, { temperature: o.temperature });
      const [lp, ent] = (await g.readMany([fwd.logprob, fwd.entropy])).map((b) => new Float32Array(b));
      g.release(fwd.logprob, fwd.entropy);
      releaseBatch(g, rb.batch);
      group.forEach((i, b) => {
        out.logprob[i] = rb.read(lp!, b);
        out.entropy[i] = rb.read(ent!, b);
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
    const rb = responseBatch(model, members.map((i) => seqs[i]!));
    const loraDropout = o.loraDropout && splitPassDropout(o.loraDropout, k);
    const fwd = model.forward(rb.batch, { train: true, checkpoint: o.checkpoint, temperature: o.temperature, loraDropout });
    return { members, fwd, rb };
  });
  const read = (await g.readMany(passes.flatMap((p) => [p.fwd.logprob, p.fwd.entropy]))).map((b) => new Float32Array(b));
  const logprob: Float32Array[] = new Array(seqs.length);
  const entropy: Float32Array[] = new Array(seqs.length);
  passes.forEach((p, k) => {
    p.members.forEach((i, b) => {
      logprob[i] = p.rb.read(read[2 * k]!, b);
      entropy[i] = p.rb.read(read[2 * k + 1]!, b);
    });
  });
  const free = (p: (typeof passes)[number], extra: Tensor[] = []) => {
    g.release(p.fwd.logprob, p.fwd.entropy, ...extra);
    releaseBatch(g, p.rb.batch);
  };
  return {
    logprob,
    entropy,
    backward(dLogprob, dEntropy, grads) {
      for (const p of passes) {
        const N = p.fwd.logprob.numel;
        const dl = new Float32Array(N), de = new Float32Array(N);
        p.members.forEach((i, b) => {
          p.rb.write(dl, b, dLogprob[i]!);
          p.rb.write(de, b, dEntropy[i]!);
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
