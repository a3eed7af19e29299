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
  /** false: step one at a time, waiting for each step's ids before recording the next (benchmarks; same results). */
  decodeAhead?: boolean;
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
  /** Trailing tokens whose text can hold a stop string that the newest token completed (see accept). */
  private readonly window: number;
  constructor(
    private readonly o: Pick<GenerateOptions, "maxNewTokens" | "stopTokenIds" | "stopStrings" | "decode">,
    private readonly capacity: number,
  ) {
    this.ids = new Set(o.stopTokenIds ?? []);
    this.window = 3 * Math.max(0, ...(o.stopStrings ?? []).map((x) => x.length)) + 8;
  }

  /**
   * Whether the token now being sampled for `r` ends its generation whatever it turns out to be (the length or the
   * capacity limit), `sequenceLength` counting that token: such a sequence is not decoded ahead (see generate).
   */
  surelyStops(r: GenerationResult, sequenceLength: number): boolean {
    return r.tokens.length + 1 >= this.o.maxNewTokens || sequenceLength >= this.capacity;
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
      // Every earlier token was checked, so a stop string can only have just been completed: it ends in the newest
      // token's text and starts at most its length back. Every token decodes to at least one byte and a UTF-16 unit
      // is at most three bytes, so the last `window` tokens hold it with tokens to spare before it (a window cut inside
      // a character only garbles its own start). Decoding only them keeps a long turn linear, not quadratic.
      const text = this.o.decode(r.tokens.length > this.window ? r.tokens.slice(-this.window) : r.tokens);
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

/**
 * A sample recorded on the GPU whose ids are still on their way back (GenerationSession.beginSample → finishSample).
 * While it is pending, the next decode step can already run from those ids on the GPU (advanceSampled).
 */
export interface PendingSample {
  readonly sequences: readonly number[];
  readonly read: Promise<ArrayBuffer[]>;
}

/** The sampled ids and their log-probs, in the order of the sequences asked for. */
export interface SampledTokens {
  ids: number[];
  logprobs: number[];
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
  /** Per sequence: tokens sampled on the GPU whose ids the CPU has not received yet (0, or 1–2 while decoding ahead). */
  private readonly inFlight: number[];
  /** Pending samples, oldest first: they finish in the order they began. */
  private readonly pending: PendingSample[] = [];
  private readonly gpu: Gpu;
  /** Decode steps run (for figures such as dispatches per token). */
  steps = 0;
  /** Token rows run through the model so far (prefill and decode): shows that continuing reuses the cache. */
  rowsProcessed = 0;
  /** Decode steps run from ids still on the GPU (advanceSampled), overlapping the previous step's readback. */
  decodedAhead = 0;

  constructor(readonly model: Transformer, readonly B: number, readonly capacity: number) {
    this.gpu = model.gpu;
    const F = model.Hkv * model.hd;
    for (let l = 0; l < model.config.numLayers; l++) {
      this.caches.push({ k: this.gpu.zeros([B, capacity, F]), v: this.gpu.zeros([B, capacity, F]), capacity });
    }
    this.tokens = Array.from({ length: B }, () => []);
    this.cached = new Array(B).fill(0);
    this.fresh = new Array(B).fill(false);
    this.inFlight = new Array(B).fill(0);
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
   * (not yet cached) and returns the ids and their log-probs in the order given. One GPU→CPU read of B ids and
   * B log-probs.
   */
  async sampleNext(sequences: readonly number[], sampling: SamplingParams, streamIds?: readonly number[]): Promise<SampledTokens> {
    return this.finishSample(this.beginSample(sequences, sampling, streamIds));
  }

  /**
   * Records the sampling of one token for each listed sequence (each must have fresh logits) and starts reading the
   * ids back, without waiting: the GPU work is submitted, and the CPU may record more (advanceSampled) before
   * finishSample collects the ids.
   */
  beginSample(sequences: readonly number[], sampling: SamplingParams, streamIds?: readonly number[]): PendingSample {
    for (const b of sequences) {
      if (!this.fresh[b]) throw new Error(`sampleNext: sequence ${b} has no fresh logits (append to it first)`);
    }
    if (sequences.length === 0) return { sequences: [], read: Promise.resolve([]) };
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
    // The position of the token being sampled: tokens still in flight count.
    const pos = g.upload(Uint32Array.from(this.tokens.map((t, b) => t.length + this.inFlight[b]!)), [this.B]);
    // Only the slot range of the listed sequences: a 64-slot engine running 16 calls samples 16 rows, not 64.
    const lo = Math.min(...sequences), hi = Math.max(...sequences);
    sample(g, this.logits, this.sampled, keys, pos, { B: hi - lo + 1, V: this.model.V }, { ...sampling, logprob: this.sampledLogprob, firstRow: lo });
    // readMany submits the sample and the copies before it returns its promise, so the uploads can go back to the pool.
    const read = g.readMany([this.sampled, this.sampledLogprob]);
    g.release(pos);
    if (keys !== this.slotIds) g.release(keys);
    for (const b of sequences) {
      this.fresh[b] = false;
      this.inFlight[b]!++;
    }
    const p: PendingSample = { sequences: [...sequences], read };
    this.pending.push(p);
    return p;
  }

  /**
   * Waits for a pending sample's ids and appends them to their sequences — only to those in `keep` (default: all);
   * the others' ids are dropped (a sequence that stopped while its next token was already being decoded ahead).
   */
  async finishSample(p: PendingSample, keep: readonly number[] = p.sequences): Promise<SampledTokens> {
    if (p.sequences.length === 0) return { ids: [], logprobs: [] };
    if (this.pending[0] !== p) throw new Error("finishSample: pending samples finish in the order they began");
    let bufs: ArrayBuffer[];
    try {
      bufs = await p.read;
    } finally {
      this.settle(p);
    }
    const [idBuf, lpBuf] = bufs;
    const ids = new Uint32Array(idBuf!);
    const lps = new Float32Array(lpBuf!);
    const broken = keep.find((b) => ids[b] === NONFINITE_ROW);
    if (broken !== undefined) {
      throw new RecallError(`the model's next-token logits hold NaN or infinity (sequence ${broken}, position ${this.tokens[broken]!.length}); refusing to sample`, {
        hint: "the weights or the computation overflowed: check the model with 'recall score', lower the learning rate",
      });
    }
    if (keep.length > 0) this.steps++;
    for (const b of keep) this.tokens[b]!.push(ids[b]!);
    return { ids: keep.map((b) => ids[b]!), logprobs: keep.map((b) => lps[b]!) };
  }

  /** Drops the oldest pending sample (nothing when it has ended): none of its ids is appended; its readback completes on its own. */
  discardSample(p: PendingSample): void {
    if (!this.pending.includes(p)) return;
    if (this.pending[0] !== p) throw new Error("discardSample: pending samples end in the order they began");
    p.read.catch(() => {});
    this.settle(p);
  }

  /** Drops every pending sample, oldest first (after an error, so the session can serve on). */
  discardPending(): void {
    while (this.pending.length > 0) this.discardSample(this.pending[0]!);
  }

  private settle(p: PendingSample): void {
    this.pending.shift();
    for (const b of p.sequences) this.inFlight[b]!--;
  }

  /**
   * Decodes ahead: runs the ids of a pending sample, still on the GPU, through the model for the listed sequences
   * (each in `p`, with nothing else uncached), so their next logits are fresh before the CPU has seen those ids. The
   * GPU runs this step while the CPU waits for the previous one's readback; a sequence that turns out to have stopped
   * simply has its last token cached already.
   */
  advanceSampled(p: PendingSample, sequences: readonly number[]): void {
    if (this.pending.at(-1) !== p) throw new Error("advanceSampled: only the newest pending sample can be decoded ahead");
    const rows: number[][] = Array.from({ length: this.B }, () => []);
    for (const b of sequences) {
      if (!p.sequences.includes(b)) throw new Error(`advanceSampled: sequence ${b} is not in the pending sample`);
      if (this.cached[b]! + this.inFlight[b]! - 1 !== this.tokens[b]!.length) throw new Error(`advanceSampled: sequence ${b} has tokens not run yet`);
      rows[b] = [0];
    }
    this.step(rows, true);
    this.decodedAhead++;
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
    if (this.inFlight[b]) throw new Error(`reset: sequence ${b} has a token being sampled`);
    this.tokens[b] = [];
    this.cached[b] = 0;
    this.fresh[b] = false;
  }

  /**
   * Runs the given new rows of each sequence through the model (empty = sequence does not take part). A batch is
   * padded to its longest row, so a step where a few sequences take a prompt or a tool response while the others
   * sit idle runs only the slot ranges that have rows (segments), each padded to its own longest row.
   */
  private step(rows: readonly (readonly number[])[], fromSampled = false): void {
    for (let b = 0; b < this.B; b++) {
      if (this.cached[b]! + rows[b]!.length > this.capacity) {
        throw new RecallError(`sequence ${b} would hold ${this.cached[b]! + rows[b]!.length} tokens, over the session's capacity of ${this.capacity}`);
      }
    }
    for (const [b0, b1] of this.segments(rows)) this.stepSlots(rows, b0, b1, fromSampled);
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

  /**
   * One forward pass over slots [b0, b1) against views of their caches; their logits land in rows b0.. of `logits`.
   * `fromSampled`: every row is one token, the id sampled last for its slot, copied on the GPU (rows hold placeholders).
   */
  private stepSlots(rows: readonly (readonly number[])[], b0: number, b1: number, fromSampled: boolean): void {
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
    // T is 1: row k is slot b0 + k (slots in the range that take no part read a stale id and are not cached).
    if (fromSampled) g.copyRegion(this.sampled, b0, idsTensor, 0, nb);
    const batch: TokenBatch = {
      B: nb,
      T,
      lengths: [...newLen],
      ids: idsTensor,
      targets: idsTensor, // a cached step computes logits, not log-probs of targets
      positions: g.upload(positions, [nb * T]),
      qStart: g.upload(qStart, [nb]),
      kvLen: g.upload(qStart.map((s, k) => s + newLen[k]!), [nb]),
      row: (k, t) => k * T + t,
      longestKeys: Math.max(...qStart.map((s, k) => s + newLen[k]!)),
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

  /**
   * Decodes new tokens for the sequences whose logits are fresh, until each stops or hits a limit. Each step is
   * decoded ahead from the previous step's ids on the GPU while the CPU reads those ids back and checks the stop
   * rules, so the GPU does not sit idle during the readback; the results are those of stepping one at a time.
   */
  async generate(o: GenerateOptions): Promise<(GenerationResult | undefined)[]> {
    const which = o.sequences ?? [...this.fresh.keys()].filter((b) => this.fresh[b]);
    const results: (GenerationResult | undefined)[] = new Array(this.B).fill(undefined);
    for (const b of which) results[b] = { tokens: [], logprobs: [], finishReason: "length" };
    const rule = new StopRule(o, this.capacity);
    let running = o.maxNewTokens > 0 ? [...which] : [];
    try {
      let pending = running.length > 0 ? this.beginSample(running, o.sampling) : undefined;
      while (pending) {
        // Every sequence that may go on is decoded ahead; one that surely stops now is not.
        const ahead = o.decodeAhead === false ? [] : running.filter((b) => !rule.surelyStops(results[b]!, this.tokens[b]!.length + this.inFlight[b]!));
        let next: PendingSample | undefined;
        if (ahead.length > 0) {
          this.advanceSampled(pending, ahead);
          next = this.beginSample(ahead, o.sampling);
        }
        const got = await this.finishSample(pending, running);
        running.forEach((b, i) => results[b]!.logprobs.push(got.logprobs[i]!));
        running = running.filter((b, i) => !rule.accept(results[b]!, got.ids[i]!, this.tokens[b]!.length));
        o.onStep?.(running.length);
        if (next && running.length > 0) {
          // The sequences still running were all decoded ahead (the others stopped): `next` holds their next token.
          pending = next;
        } else {
          if (next) this.discardSample(next);
          pending = undefined;
          if (running.length > 0) {
            // Not decoding ahead: run the ids just read, then sample.
            this.advance(running);
            pending = this.beginSample(running, o.sampling);
          }
        }
      }
    } catch (e) {
      this.discardPending();
      throw e;
    }
    return results;
  }
}
