/**
 * Batched generation with a KV cache: a session holds B sequences, each with its own length. Tokens
 * appended to a sequence (a prompt, a tool response) run through the model once and stay in the
 * cache; generation decodes one token per active sequence per step and reads back only the sampled
 * ids. Token-in/token-out: the ids the model sampled are kept exactly; nothing is re-tokenized.
 */
import { cheapestRuns } from "../data/packing.ts";
import { RecallError } from "../errors.ts";
import type { Gpu } from "../gpu/runtime.ts";
import { Tensor } from "../gpu/tensor.ts";
import { NONFINITE_ROW, sample, type SamplingParams } from "../ops/sampling.ts";
import type { LayerCache, TokenBatch, Transformer } from "./transformer.ts";

export type { SamplingParams };

export interface GenerateOptions {
  maxNewTokens: number;
  sampling: SamplingParams;
  /** Generation of a sequence ends when it samples one of these (the token is kept). */
  stopTokenIds?: readonly number[];
  /** ... or when its decoded new text contains one of these (needs `decode`); the tokens are kept. */
  stopStrings?: readonly string[];
  decode?: (ids: number[]) => string;
  /** Which sequences to generate for (default: every sequence whose last append is fresh). */
  sequences?: readonly number[];
  /** Called after every decode step with the number of sequences still running. */
  onStep?: (active: number) => void;
}

export type FinishReason = "stop" | "length" | "capacity";

export interface GenerationResult {
  /** The new tokens of this call, exactly as sampled. */
  tokens: number[];
  /** log softmax(logits / temperature) of each token (temperature 1 when greedy), over the whole vocabulary. */
  logprobs: number[];
  finishReason: FinishReason;
  /** The stop string or token id that ended generation, when finishReason is "stop". */
  stoppedBy?: string | number;
}

/** Ends a sequence's generation: a stop id (kept), a stop string in the decoded new text (kept), or a limit. */
export class StopRule {
  private readonly ids: Set<number>;
  constructor(
    private readonly o: Pick<GenerateOptions, "maxNewTokens" | "stopTokenIds" | "stopStrings" | "decode">,
    private readonly capacity: number,
  ) {
    this.ids = new Set(o.stopTokenIds ?? []);
  }

  /** Records `id` in `r` and says whether generation of that sequence is over (r.finishReason set). */
  accept(r: GenerationResult, id: number, sequenceLength: number): boolean {
    r.tokens.push(id);
    if (this.ids.has(id)) {
      r.finishReason = "stop";
      r.stoppedBy = id;
      return true;
    }
    if (this.o.stopStrings?.length && this.o.decode) {
      const text = this.o.decode(r.tokens);
      const hit = this.o.stopStrings.find((x) => text.includes(x));
      if (hit !== undefined) {
        r.finishReason = "stop";
        r.stoppedBy = hit;
        return true;
      }
    }
    if (r.tokens.length >= this.o.maxNewTokens) {
      r.finishReason = "length";
      return true;
    }
    if (sequenceLength >= this.capacity) {
      r.finishReason = "capacity";
      return true;
    }
    return false;
  }
}

export class GenerationSession {
  readonly caches: LayerCache[] = [];
  /** Tokens of each sequence: everything appended and generated, in order. */
  readonly tokens: number[][];
  /** Tokens of each sequence already in the KV cache (a finished sequence's last sampled token is not, until the next append). */
  readonly cached: number[];
  /** Whether `logits` row b holds the next-token logits of sequence b's current end. */
  private fresh: boolean[];
  private readonly logits: Tensor;
  /** u32 [B]: the ids sampled last, and each slot's index (the sampler's stream key). */
  private readonly sampled: Tensor;
  /** f32 [B]: the log-probs of the ids sampled last. */
  private readonly sampledLogprob: Tensor;
  private readonly slotIds: Tensor;
  /** Log-probs of the ids the last sampleNext returned, in the same order. */
  lastLogprobs: number[] = [];
  private readonly gpu: Gpu;
  /** Decode steps run (for figures such as dispatches per token). */
  steps = 0;
  /** Token rows run through the model so far (prefill and decode): shows that continuing reuses the cache. */
  rowsProcessed = 0;

  constructor(readonly model: Transformer, readonly B: number, readonly capacity: number) {
    this.gpu = model.gpu;
    const F = model.Hkv * model.hd;
    for (let l = 0; l < model.config.numLayers; l++) {
      this.caches.push({ k: this.gpu.zeros([B, capacity, F]), v: this.gpu.zeros([B, capacity, F]), capacity });
    }
    this.tokens = Array.from({ length: B }, () => []);
    this.cached = new Array(B).fill(0);
    this.fresh = new Array(B).fill(false);
    this.logits = this.gpu.empty([B, model.V]);
    this.sampled = this.gpu.empty([B], "u32");
    this.sampledLogprob = this.gpu.empty([B]);
    this.slotIds = this.gpu.upload(Uint32Array.from({ length: B }, (_, b) => b), [B]);
  }

  release(): void {
    for (const c of this.caches) this.gpu.release(c.k, c.v);
    this.caches.length = 0;
    this.gpu.release(this.logits, this.sampled, this.sampledLogprob, this.slotIds);
  }

  /**
   * Appends tokens to sequences (undefined/empty = leave that sequence alone) and runs them through the
   * model in one batched step, so their cache covers them and their next-token logits are ready.
   */
  append(perSequence: readonly (readonly number[] | undefined)[]): void {
    const which: number[] = [];
    perSequence.forEach((add, b) => {
      if (add && add.length > 0) {
        this.push(b, add);
        which.push(b);
      }
    });
    this.advance(which);
  }

  /** Adds tokens to the end of sequence b without running them yet (see advance). */
  push(b: number, tokens: readonly number[]): void {
    this.tokens[b]!.push(...tokens);
  }

  /**
   * Runs every listed sequence's tokens that are not in the cache yet (a prompt, a tool response, the
   * token sampled last) through the model in one batched step; their next-token logits become fresh.
   * Sequences not listed keep their cache and their logits.
   */
  advance(sequences: readonly number[]): void {
    const rows: number[][] = Array.from({ length: this.B }, () => []);
    for (const b of sequences) rows[b] = this.tokens[b]!.slice(this.cached[b]!);
    if (rows.every((r) => r.length === 0)) return;
    this.step(rows);
  }

  /**
   * Samples one token for each listed sequence (each must have fresh logits), appends it to the sequence
   * (not yet cached) and returns the ids in the order given (their log-probs in `lastLogprobs`). One GPU→CPU
   * read of B ids and B log-probs.
   */
  async sampleNext(sequences: readonly number[], sampling: SamplingParams, streamIds?: readonly number[]): Promise<number[]> {
    for (const b of sequences) {
      if (!this.fresh[b]) throw new Error(`sampleNext: sequence ${b} has no fresh logits (append to it first)`);
    }
    if (sequences.length === 0) return [];
    const g = this.gpu;
    // Each sequence's RNG stream is keyed by (seed, stream, position): results do not depend on batch
    // composition. The stream is the slot unless the caller names one (e.g. a rollout's sample index, so a
    // conversation draws the same tokens whichever slot it lands in).
    let keys = this.slotIds;
    if (streamIds) {
      const k = Uint32Array.from({ length: this.B }, (_, b) => b);
      sequences.forEach((b, i) => (k[b] = streamIds[i]! >>> 0));
      keys = g.upload(k, [this.B]);
    }
    const pos = g.upload(Uint32Array.from(this.tokens.map((t) => t.length)), [this.B]);
    // Only the slot range of the listed sequences: a 64-slot engine running 16 calls samples 16 rows, not 64.
    const lo = Math.min(...sequences), hi = Math.max(...sequences);
    sample(g, this.logits, this.sampled, keys, pos, { B: hi - lo + 1, V: this.model.V }, { ...sampling, logprob: this.sampledLogprob, firstRow: lo });
    const [idBuf, lpBuf] = await g.readMany([this.sampled, this.sampledLogprob]);
    const ids = new Uint32Array(idBuf!);
    const lps = new Float32Array(lpBuf!);
    const broken = sequences.find((b) => ids[b] === NONFINITE_ROW);
    if (broken !== undefined) {
      g.release(pos);
      if (keys !== this.slotIds) g.release(keys);
      throw new RecallError(`the model's next-token logits hold NaN or infinity (sequence ${broken}, position ${this.tokens[broken]!.length}); refusing to sample`, {
        hint: "the weights or the computation overflowed: check the model with 'recall score', lower the learning rate",
      });
    }
    this.lastLogprobs = sequences.map((b) => lps[b]!);
    g.release(pos);
    if (keys !== this.slotIds) g.release(keys);
    this.steps++;
    return sequences.map((b) => {
      this.tokens[b]!.push(ids[b]!);
      this.fresh[b] = false;
      return ids[b]!;
    });
  }

  /**
   * Makes sequence `dst` start with the first `length` cached tokens of sequence `src` by copying their keys and
   * values (a prompt's n samples share one prefill this way). `dst` must not be running.
   */
  forkPrefix(src: number, dst: number, length: number): void {
    if (length > this.cached[src]!) throw new Error(`forkPrefix: sequence ${src} has only ${this.cached[src]} cached tokens, not ${length}`);
    const F = this.model.Hkv * this.model.hd;
    if (length > 0) {
      // WebGPU cannot copy a buffer onto itself: slots of one cache go through a scratch tensor.
      const scratch = this.gpu.empty([length * F]);
      for (const c of this.caches) {
        for (const t of [c.k, c.v]) {
          this.gpu.copyRegion(t, src * this.capacity * F, scratch, 0, length * F);
          this.gpu.copyRegion(scratch, 0, t, dst * this.capacity * F, length * F);
        }
      }
      this.gpu.release(scratch);
    }
    this.tokens[dst] = this.tokens[src]!.slice(0, length);
    this.cached[dst] = length;
    this.fresh[dst] = false;
  }

  /** Empties sequence b (its cache slot is reused from position 0 by the next append). */
  reset(b: number): void {
    this.tokens[b] = [];
    this.cached[b] = 0;
    this.fresh[b] = false;
  }

  /**
   * Runs the given new rows of each sequence through the model (empty = sequence does not take part). A batch is
   * padded to its longest row, so a step where a few sequences take a prompt or a tool response while the others
   * sit idle runs only the slot ranges that have rows (segments), each padded to its own longest row.
   */
  private step(rows: readonly (readonly number[])[]): void {
    for (let b = 0; b < this.B; b++) {
      if (this.cached[b]! + rows[b]!.length > this.capacity) {
        throw new RecallError(`sequence ${b} would hold ${this.cached[b]! + rows[b]!.length} tokens, over the session's capacity of ${this.capacity}`);
      }
    }
    for (const [b0, b1] of this.segments(rows)) this.stepSlots(rows, b0, b1);
    for (let b = 0; b < this.B; b++) {
      if (rows[b]!.length > 0) {
        this.rowsProcessed += rows[b]!.length;
        this.cached[b] = this.cached[b]! + rows[b]!.length;
        this.fresh[b] = true;
      } else {
        // Its logits row may now hold padding's logits.
        this.fresh[b] = false;
      }
    }
  }

  /**
   * Contiguous slot ranges [b0, b1) covering every slot with rows, chosen to minimise the padded rows computed plus
   * a fixed cost per extra forward pass (in rows). Slot ranges are cache views at an offset, so ranges other than
   * the whole batch need that offset to meet the adapter's storage alignment; otherwise one range covers all.
   */
  private segments(rows: readonly (readonly number[])[]): [number, number][] {
    const B = this.B;
    const slotBytes = this.capacity * this.model.Hkv * this.model.hd * 4;
    const first = rows.findIndex((r) => r.length > 0);
    if (first < 0) return [];
    if (slotBytes % this.gpu.limits.minStorageBufferOffsetAlignment !== 0) return [[0, B]];
    // A forward pass costs about as much as this many extra padded rows (dispatch and weight-read overhead).
    return cheapestRuns(rows.map((r) => r.length), Math.max(32, B));
  }

  /** One forward pass over slots [b0, b1) against views of their caches; their logits land in rows b0.. of `logits`. */
  private stepSlots(rows: readonly (readonly number[])[], b0: number, b1: number): void {
    const g = this.gpu;
    const nb = b1 - b0;
    const T = Math.max(1, ...rows.slice(b0, b1).map((r) => r.length));
    const ids = new Uint32Array(nb * T);
    const positions = new Uint32Array(nb * T);
    const qStart = new Uint32Array(nb);
    const newLen = new Uint32Array(nb);
    const lastRows = new Uint32Array(nb);
    for (let k = 0; k < nb; k++) {
      const b = b0 + k;
      const r = rows[b]!;
      qStart[k] = this.cached[b]!;
      newLen[k] = r.length;
      for (let t = 0; t < T; t++) {
        ids[k * T + t] = t < r.length ? r[t]! : 0;
        positions[k * T + t] = Math.min(this.cached[b]! + t, this.capacity - 1);
      }
      lastRows[k] = k * T + Math.max(0, r.length - 1);
    }
    const idsTensor = g.upload(ids, [nb * T]);
    const batch: TokenBatch = {
      B: nb,
      T,
      lengths: [...newLen],
      ids: idsTensor,
      targets: idsTensor, // a cached step computes logits, not log-probs of targets
      positions: g.upload(positions, [nb * T]),
      qStart: g.upload(qStart, [nb]),
      kvLen: g.upload(qStart.map((s, k) => s + newLen[k]!), [nb]),
    };
    const last = g.upload(lastRows, [nb]);
    const whole = nb === this.B;
    const F = this.model.Hkv * this.model.hd;
    const slot = (t: Tensor) => (whole ? t : new Tensor(t.buffer, [nb, this.capacity, F], t.dtype, t.byteOffset + b0 * this.capacity * F * 4));
    const caches: LayerCache[] = whole ? this.caches : this.caches.map((c) => ({ k: slot(c.k), v: slot(c.v), capacity: this.capacity }));
    const logits = whole ? this.logits : g.empty([nb, this.model.V]);
    this.model.forwardCached(batch, caches, last, logits);
    if (!whole) {
      g.copyRegion(logits, 0, this.logits, b0 * this.model.V, nb * this.model.V);
      g.release(logits);
    }
    g.release(batch.ids, batch.positions, batch.qStart, batch.kvLen, last);
  }

  /** The current next-token logits [B, V] (row b is meaningful when sequence b was just appended to). For tests and tools. */
  async readLogits(): Promise<Float32Array> {
    return this.gpu.readF32(this.logits);
  }

  /** Decodes new tokens for the sequences whose logits are fresh, until each stops or hits a limit. */
  async generate(o: GenerateOptions): Promise<(GenerationResult | undefined)[]> {
    const which = o.sequences ?? [...this.fresh.keys()].filter((b) => this.fresh[b]);
    const results: (GenerationResult | undefined)[] = new Array(this.B).fill(undefined);
    for (const b of which) results[b] = { tokens: [], logprobs: [], finishReason: "length" };
    const rule = new StopRule(o, this.capacity);
    let running = o.maxNewTokens > 0 ? [...which] : [];
    while (running.length > 0) {
      const ids = await this.sampleNext(running, o.sampling);
      running.forEach((b, i) => results[b]!.logprobs.push(this.lastLogprobs[i]!));
      running = running.filter((b, i) => !rule.accept(results[b]!, ids[i]!, this.tokens[b]!.length));
      o.onStep?.(running.length);
      this.advance(running);
    }
    return results;
  }
}
