/**
 * The local WebGPU engine behind the rollout loop's TokenGenerator interface (src/rollout/generator.ts):
 * concurrent `completeTokens` calls are gathered into batches on one GenerationSession, and each call
 * lands in the cache slot whose tokens are a prefix of its prompt when there is one, so a conversation
 * continued after a tool response only runs its new tokens through the model.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { RecallError } from "../errors.ts";
import type { RolloutTokenizer, TokenCompletion, TokenGenerator, TokenSamplingParams } from "../rollout/generator.ts";
import { GenerationSession } from "./generate.ts";
import { openPretrained, type Pretrained } from "./pretrained.ts";

interface PendingCall {
  prompt: readonly number[];
  params: TokenSamplingParams;
  resolve: (c: TokenCompletion) => void;
  reject: (e: unknown) => void;
}

export interface LocalGeneratorOptions {
  /** Sequences decoded together (cache slots). */
  batchSize?: number;
  /** Tokens per sequence the cache holds (prompt + every turn). */
  capacity?: number;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export class LocalTokenGenerator implements TokenGenerator {
  readonly kind = "tokens";
  readonly description: string;
  readonly tokenizer: RolloutTokenizer;
  private readonly session: GenerationSession;
  private queue: PendingCall[] = [];
  private running = false;
  /** Batched rounds run so far (tests and progress). */
  get rounds(): number {
    return this.round;
  }
  /** Token rows the model has processed (prefill + decode). */
  get rowsProcessed(): number {
    return this.session.rowsProcessed;
  }
  /** Round in which each slot was last used (least recently used slots are reassigned first). */
  private lastUsed: number[];
  private round = 0;

  constructor(readonly pretrained: Pretrained, dir: string, o: LocalGeneratorOptions = {}) {
    const { model, tokenizer } = pretrained;
    const batch = o.batchSize ?? 8;
    const capacity = Math.min(o.capacity ?? 4096, model.config.maxPositionEmbeddings);
    this.session = new GenerationSession(model, batch, capacity);
    this.lastUsed = new Array(batch).fill(-1);
    this.description = `local ${dir} (WebGPU, batch ${batch}, ${capacity} tokens per sequence)`;
    this.tokenizer = {
      encode: (text) => tokenizer.encode(text, { addSpecialTokens: false }),
      decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: false }),
      tokenId: (token) => tokenizer.tokenToId(token),
    };
  }

  static async open(gpu: Gpu, dir: string, o: LocalGeneratorOptions = {}): Promise<LocalTokenGenerator> {
    return new LocalTokenGenerator(await openPretrained(gpu, dir), dir, o);
  }

  completeTokens(promptIds: readonly number[], params: TokenSamplingParams, signal?: AbortSignal): Promise<TokenCompletion> {
    if (promptIds.length === 0) return Promise.reject(new RecallError("local generator: empty prompt"));
    if (promptIds.length >= this.session.capacity) {
      return Promise.reject(new RecallError(`local generator: prompt of ${promptIds.length} tokens does not fit the ${this.session.capacity}-token cache`));
    }
    return new Promise((resolve, reject) => {
      const call: PendingCall = { prompt: promptIds, params, resolve, reject };
      signal?.addEventListener("abort", () => {
        const i = this.queue.indexOf(call);
        if (i >= 0) {
          this.queue.splice(i, 1);
          reject(signal.reason ?? new Error("aborted"));
        }
      });
      this.queue.push(call);
      if (!this.running) void this.drain();
    });
  }

  /** Runs rounds until the queue is empty. Calls that arrive during a round wait for the next. */
  private async drain(): Promise<void> {
    this.running = true;
    try {
      // Let concurrently issued calls arrive before the first round.
      await new Promise((r) => setTimeout(r, 0));
      while (this.queue.length > 0) {
        // One round serves calls with identical sampling settings (one generate() call).
        const key = JSON.stringify(this.queue[0]!.params);
        const round = this.queue.filter((c) => JSON.stringify(c.params) === key).slice(0, this.session.B);
        this.queue = this.queue.filter((c) => !round.includes(c));
        try {
          await this.runRound(round);
        } catch (e) {
          for (const c of round) c.reject(e);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private assignSlots(round: PendingCall[]): number[] {
    const s = this.session;
    const taken = new Set<number>();
    const slots: number[] = [];
    for (const call of round) {
      // Best slot: the longest cached prefix of this prompt that the slot holds entirely.
      let best = -1, bestLen = 0;
      for (let b = 0; b < s.B; b++) {
        if (taken.has(b)) continue;
        const toks = s.tokens[b]!;
        if (toks.length > 0 && toks.length < call.prompt.length && commonPrefix(toks, call.prompt) === toks.length && toks.length > bestLen) {
          best = b;
          bestLen = toks.length;
        }
      }
      if (best < 0) {
        const free = [...Array(s.B).keys()].filter((b) => !taken.has(b)).sort((x, y) => this.lastUsed[x]! - this.lastUsed[y]!);
        best = free[0]!;
        s.reset(best);
      }
      taken.add(best);
      slots.push(best);
    }
    return slots;
  }

  private async runRound(round: PendingCall[]): Promise<void> {
    const s = this.session;
    const slots = this.assignSlots(round);
    this.round++;
    const appends: (number[] | undefined)[] = new Array(s.B).fill(undefined);
    round.forEach((call, i) => {
      const b = slots[i]!;
      this.lastUsed[b] = this.round;
      // A reused slot holds a strict prefix of the prompt, a reset one nothing: there is always a suffix to run.
      appends[b] = call.prompt.slice(s.tokens[b]!.length);
    });
    s.append(appends);
    const p = round[0]!.params;
    const results = await s.generate({
      maxNewTokens: p.maxNewTokens,
      sampling: { temperature: p.temperature, topP: p.topP ?? 1, topK: p.topK ?? 0, seed: p.seed ?? 0 },
      stopTokenIds: p.stopTokenIds,
      stopStrings: p.stop,
      decode: (ids) => this.tokenizer.decode(ids),
      sequences: slots,
    });
    round.forEach((call, i) => {
      const r = results[slots[i]!]!;
      call.resolve({ tokenIds: r.tokens, finishReason: r.finishReason === "stop" ? "stop" : "length" });
    });
  }

  async close(): Promise<void> {
    this.session.release();
    this.pretrained.model.params.release();
  }
}
