/**
 * Batched generation with a KV cache: a session holds B sequences, each with its own length. Tokens
 * appended to a sequence (a prompt, a tool response) run through the model once and stay in the
 * cache; generation decodes one token per active sequence per step and reads back only the sampled
 * ids. Token-in/token-out: the ids the model sampled are kept exactly; nothing is re-tokenized.
 */
import { RecallError } from "../errors.ts";
import type { Gpu } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { sample, type SamplingParams } from "../ops/sampling.ts";
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
  finishReason: FinishReason;
  /** The stop string or token id that ended generation, when finishReason is "stop". */
  stoppedBy?: string | number;
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
  private readonly gpu: Gpu;
  /** Decode steps run (for figures such as dispatches per token). */
  steps = 0;
  /** Token rows run through the model so far (prefill and decode): shows that continuing reuses the cache. */
  rowsProcessed = 0;

  constructor(readonly model: Transformer, readonly B: number, readonly capacity: number) {
    this.gpu = model.gpu;
    const F = model.Hkv * model.hd;
    // Every layer appends the same rows: one newLen tensor serves them all.
    const newLen = this.gpu.empty([B], "u32");
    for (let l = 0; l < model.config.numLayers; l++) {
      this.caches.push({ k: this.gpu.zeros([B, capacity, F]), v: this.gpu.zeros([B, capacity, F]), capacity, newLen });
    }
    this.tokens = Array.from({ length: B }, () => []);
    this.cached = new Array(B).fill(0);
    this.fresh = new Array(B).fill(false);
    this.logits = this.gpu.empty([B, model.V]);
  }

  release(): void {
    if (this.caches[0]) this.gpu.release(this.caches[0].newLen);
    for (const c of this.caches) this.gpu.release(c.k, c.v);
    this.caches.length = 0;
    this.gpu.release(this.logits);
  }

  /**
   * Appends tokens to sequences (undefined/empty = leave that sequence alone) and runs them through the
   * model in one batched step, so their cache covers them and their next-token logits are ready.
   */
  append(perSequence: readonly (readonly number[] | undefined)[]): void {
    const rows: number[][] = [];
    for (let b = 0; b < this.B; b++) {
      const add = perSequence[b];
      if (!add || add.length === 0) {
        rows.push([]);
        continue;
      }
      this.tokens[b]!.push(...add);
      // Includes a finished sequence's last sampled token, which was never run through the model.
      rows.push(this.tokens[b]!.slice(this.cached[b]!));
    }
    this.step(rows);
  }

  /** Empties sequence b (its cache slot is reused from position 0 by the next append). */
  reset(b: number): void {
    this.tokens[b] = [];
    this.cached[b] = 0;
    this.fresh[b] = false;
  }

  /** Runs the given new rows of each sequence through the model (empty = sequence does not take part). */
  private step(rows: readonly (readonly number[])[]): void {
    const g = this.gpu;
    const T = Math.max(1, ...rows.map((r) => r.length));
    for (let b = 0; b < this.B; b++) {
      if (this.cached[b]! + rows[b]!.length > this.capacity) {
        throw new RecallError(`sequence ${b} would hold ${this.cached[b]! + rows[b]!.length} tokens, over the session's capacity of ${this.capacity}`);
      }
    }
    const ids = new Uint32Array(this.B * T);
    const positions = new Uint32Array(this.B * T);
    const qStart = new Uint32Array(this.B);
    const newLen = new Uint32Array(this.B);
    const lastRows = new Uint32Array(this.B);
    for (let b = 0; b < this.B; b++) {
      const r = rows[b]!;
      qStart[b] = this.cached[b]!;
      newLen[b] = r.length;
      for (let t = 0; t < T; t++) {
        ids[b * T + t] = t < r.length ? r[t]! : 0;
        positions[b * T + t] = Math.min(this.cached[b]! + t, this.capacity - 1);
      }
      lastRows[b] = b * T + Math.max(0, r.length - 1);
    }
    const idsTensor = g.upload(ids, [this.B * T]);
    const batch: TokenBatch = {
      B: this.B,
      T,
      lengths: [...newLen],
      ids: idsTensor,
      targets: idsTensor, // a cached step computes logits, not log-probs of targets
      positions: g.upload(positions, [this.B * T]),
      qStart: g.upload(qStart, [this.B]),
      kvLen: g.upload(qStart.map((s, b) => s + newLen[b]!), [this.B]),
    };
    if (this.caches[0]) g.write(this.caches[0].newLen, newLen);
    const last = g.upload(lastRows, [this.B]);
    this.model.forwardCached(batch, this.caches, last, this.logits);
    g.release(batch.ids, batch.positions, batch.qStart, batch.kvLen, last);
    for (let b = 0; b < this.B; b++) {
      if (rows[b]!.length > 0) {
        this.rowsProcessed += rows[b]!.length;
        this.cached[b] = this.cached[b]! + rows[b]!.length;
        this.fresh[b] = true;
      }
    }
  }

  /** The current next-token logits [B, V] (row b is meaningful when sequence b was just appended to). For tests and tools. */
  async readLogits(): Promise<Float32Array> {
    return this.gpu.readF32(this.logits);
  }

  /** Decodes new tokens for the sequences whose logits are fresh, until each stops or hits a limit. */
  async generate(o: GenerateOptions): Promise<(GenerationResult | undefined)[]> {
    const g = this.gpu;
    const which = o.sequences ?? [...this.fresh.keys()].filter((b) => this.fresh[b]);
    for (const b of which) {
      if (!this.fresh[b]) throw new Error(`generate: sequence ${b} has no fresh logits (append to it first)`);
    }
    const results: (GenerationResult | undefined)[] = new Array(this.B).fill(undefined);
    const running = new Set(which);
    for (const b of which) results[b] = { tokens: [], finishReason: "length" };
    const stopIds = new Set(o.stopTokenIds ?? []);
    const out = g.empty([this.B], "u32");
    const seqIndex = g.upload(Uint32Array.from({ length: this.B }, (_, b) => b), [this.B]);
    try {
      while (running.size > 0) {
        if (o.maxNewTokens <= 0) break;
        // Each sequence's RNG stream is keyed by its position, so results do not depend on batch composition.
        const pos = g.upload(Uint32Array.from(this.tokens.map((t) => t.length)), [this.B]);
        sample(g, this.logits, out, seqIndex, pos, { B: this.B, V: this.model.V }, o.sampling);
        const ids = await g.readU32(out);
        g.release(pos);
        this.steps++;
        const next: number[][] = Array.from({ length: this.B }, () => []);
        for (const b of [...running]) {
          const id = ids[b]!;
          const r = results[b]!;
          r.tokens.push(id);
          this.tokens[b]!.push(id);
          this.fresh[b] = false;
          let done = false;
          if (stopIds.has(id)) {
            r.finishReason = "stop";
            r.stoppedBy = id;
            done = true;
          } else if (o.stopStrings?.length && o.decode) {
            const text = o.decode(r.tokens);
            const hit = o.stopStrings.find((s) => text.includes(s));
            if (hit !== undefined) {
              r.finishReason = "stop";
              r.stoppedBy = hit;
              done = true;
            }
          }
          if (!done && r.tokens.length >= o.maxNewTokens) {
            r.finishReason = "length";
            done = true;
          }
          if (!done && this.tokens[b]!.length >= this.capacity) {
            r.finishReason = "capacity";
            done = true;
          }
          if (done) running.delete(b);
          else next[b] = [id];
        }
        o.onStep?.(running.size);
        if (running.size > 0) this.step(next);
      }
    } finally {
      g.release(out, seqIndex);
    }
    return results;
  }
}
