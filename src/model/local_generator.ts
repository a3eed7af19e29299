/**
 * The local WebGPU engine behind the rollout loop's TokenGenerator interface (src/rollout/generator.ts),
 * with continuous batching: each of the session's B cache slots serves one call at a time, a call that
 * finishes frees its slot at once, and queued calls join the running batch at the next step (their
 * prompt runs in the same step as the others' next token). A call lands in the slot whose tokens are a
 * prefix of its prompt when there is one, so a conversation continued after a tool response only runs
 * its new tokens through the model.
 */
import type { Gpu } from "../gpu/runtime.ts";
import { RecallError } from "../errors.ts";
import type { RolloutTokenizer, TokenCompletion, TokenGenerator, TokenSamplingParams } from "../rollout/generator.ts";
import { GenerationSession, StopRule, type GenerationResult, type PendingSample } from "./generate.ts";
import { openPretrained, type Pretrained } from "./pretrained.ts";

interface PendingCall {
  prompt: readonly number[];
  params: TokenSamplingParams;
  resolve: (c: TokenCompletion) => void;
  reject: (e: unknown) => void;
}

interface ActiveCall {
  call: PendingCall;
  result: GenerationResult;
  rule: StopRule;
}

export interface LocalGeneratorOptions {
  /** Sequences decoded together (cache slots). */
  batchSize?: number;
  /** Tokens per sequence the cache holds (prompt + every turn). */
  capacity?: number;
  /** A LoRA adapter folder (PEFT format) to attach to the model `open` loads. */
  adapter?: string;
}

/** Shorter shared prefixes are cheaper to recompute than to wait a step for. */
const MIN_FORK_TOKENS = 16;

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Calls share a decode step only when they sample the same way (one sampler launch per step). */
function samplingKey(p: TokenSamplingParams): string {
  return JSON.stringify([p.temperature, p.topP ?? 1, p.topK ?? 0, p.seed ?? 0]);
}

export class LocalTokenGenerator implements TokenGenerator {
  readonly kind = "tokens";
  readonly description: string;
  readonly tokenizer: RolloutTokenizer;
  private readonly session: GenerationSession;
  private queue: PendingCall[] = [];
  private readonly active = new Map<number, ActiveCall>();
  private running = false;
  /** Step at which each slot was last used (least recently used free slots are reassigned first). */
  private lastUsed: number[];
  private admissions = 0;
  /** Prompt tokens whose keys and values were copied from another slot instead of computed. */
  forkedTokens = 0;

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
    // A bf16 checkpoint keeps its projection weights in bf16: the same values and tokens, half the bytes.
    const pretrained = await openPretrained(gpu, dir, { adapter: o.adapter, projectionDtype: "stored" });
    return new LocalTokenGenerator(pretrained, o.adapter ? `${dir} + adapter ${o.adapter}` : dir, o);
  }

  /**
   * Forgets every cached key and value: after the weights change (a training step), keys and values computed with the
   * old ones must not be reused as a later prompt's prefix. Call between rollouts, with no call running.
   */
  weightsChanged(): void {
    if (this.active.size > 0 || this.queue.length > 0) throw new Error("local generator: weightsChanged() while calls are running");
    for (let b = 0; b < this.session.B; b++) this.session.reset(b);
  }

  /** Times queued calls joined the batch (calls issued together join together). */
  get rounds(): number {
    return this.admissions;
  }

  /** Decode steps run (one sampled token per running call each). */
  get steps(): number {
    return this.session.steps;
  }

  /** Decode steps run ahead from ids still on the GPU, while the previous step's ids were read back. */
  get decodedAhead(): number {
    return this.session.decodedAhead;
  }

  /** Token rows the model has processed (prefill + decode). */
  get rowsProcessed(): number {
    return this.session.rowsProcessed;
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
      if (!this.running) void this.pump();
    });
  }

  /**
   * Decode steps until no call is queued or running. While no queued call could take a free slot, each step is decoded
   * ahead from the previous step's ids on the GPU (GenerationSession.advanceSampled), so the GPU runs it while the
   * CPU reads those ids back and checks the stop rules; a call that can join drains the pipeline and joins at the
   * next step. The tokens are those of stepping one at a time.
   */
  private async pump(): Promise<void> {
    this.running = true;
    const s = this.session;
    let pending: PendingSample | undefined;
    try {
      // Let concurrently issued calls arrive before the first step.
      await new Promise((r) => setTimeout(r, 0));
      while (this.queue.length > 0 || this.active.size > 0) {
        try {
          if (!pending) {
            this.admit();
            const slots = [...this.active.keys()];
            // New prompts and every running call's last sampled token, in one step.
            s.advance(slots);
            pending = this.sample(slots);
          }
          const live = pending.sequences.filter((b) => this.active.has(b));
          const ahead = this.canAdmit() ? [] : live.filter((b) => {
            const a = this.active.get(b)!;
            return !a.rule.surelyStops(a.result, s.tokens[b]!.length + 1);
          });
          let next: PendingSample | undefined;
          if (ahead.length > 0) {
            s.advanceSampled(pending, ahead);
            next = this.sample(ahead);
          }
          const current = pending;
          pending = undefined;
          const got = await s.finishSample(current, live);
          live.forEach((b, i) => {
            const a = this.active.get(b)!;
            a.result.logprobs.push(got.logprobs[i]!);
            if (!a.rule.accept(a.result, got.ids[i]!, s.tokens[b]!.length)) return;
            this.active.delete(b);
            a.call.resolve({ tokenIds: a.result.tokens, logprobs: a.result.logprobs, finishReason: a.result.finishReason === "stop" ? "stop" : "length" });
          });
          // `next` decoded every call still running; when none is left, its work is dropped.
          if (next && next.sequences.some((b) => this.active.has(b))) pending = next;
          else if (next) s.discardSample(next);
        } catch (e) {
          s.discardPending();
          pending = undefined;
          for (const a of this.active.values()) a.call.reject(e);
          this.active.clear();
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Whether a queued call could join the running calls now: a slot is free and it samples as they do. */
  private canAdmit(): boolean {
    if (this.queue.length === 0 || this.active.size >= this.session.B) return false;
    const running = this.active.values().next().value;
    if (!running) return true;
    const key = samplingKey(running.call.params);
    return this.queue.some((c) => samplingKey(c.params) === key);
  }

  /** Begins sampling the next token of the calls in these slots (they share the first one's sampling settings). */
  private sample(slots: readonly number[]): PendingSample {
    const first = this.active.get(slots[0]!)!.call.params;
    const streams = slots.map((b) => this.active.get(b)!.call.params.streamId ?? b);
    return this.session.beginSample(slots, { temperature: first.temperature, topP: first.topP ?? 1, topK: first.topK ?? 0, seed: first.seed ?? 0 }, streams);
  }

  /** Moves queued calls (with the running calls' sampling settings) into free slots. */
  private admit(): void {
    const s = this.session;
    const key = this.active.size > 0 ? samplingKey(this.active.values().next().value!.call.params) : this.queue[0] && samplingKey(this.queue[0].params);
    const joined: PendingCall[] = [];
    for (const call of this.queue) {
      if (this.active.size >= s.B) break;
      if (samplingKey(call.params) !== key) continue;
      // A prompt that shares a long prefix with one joining in this same step waits one step, then copies its
      // keys and values instead of computing them again (a GRPO group's n samples share one prefill).
      const donor = this.prefixDonor(call.prompt);
      if (joined.some((j) => commonPrefix(j.prompt, call.prompt) >= donor.length + MIN_FORK_TOKENS)) continue;
      const b = this.slotFor(call.prompt);
      // A reused slot holds a strict prefix of the prompt, a reset one nothing: the rest goes in now.
      const held = s.tokens[b]!;
      if (!(held.length > 0 && held.length < call.prompt.length && commonPrefix(held, call.prompt) === held.length)) {
        s.reset(b);
        if (donor.length >= MIN_FORK_TOKENS && donor.slot !== b) {
          s.forkPrefix(donor.slot, b, donor.length);
          this.forkedTokens += donor.length;
        }
      }
      s.push(b, call.prompt.slice(s.tokens[b]!.length));
      this.lastUsed[b] = s.steps;
      this.active.set(b, { call, result: { tokens: [], logprobs: [], finishReason: "length" }, rule: new StopRule({ maxNewTokens: call.params.maxNewTokens, stopTokenIds: call.params.stopTokenIds, stopStrings: call.params.stop, decode: (ids) => this.tokenizer.decode(ids) }, s.capacity) });
      joined.push(call);
    }
    if (joined.length > 0) {
      this.admissions++;
      this.queue = this.queue.filter((c) => !joined.includes(c));
    }
  }

  /** The slot (running or not) whose cached tokens share the longest prefix with `prompt`, leaving one token to run. */
  private prefixDonor(prompt: readonly number[]): { slot: number; length: number } {
    const s = this.session;
    let best = { slot: -1, length: 0 };
    for (let b = 0; b < s.B; b++) {
      const n = Math.min(commonPrefix(s.tokens[b]!, prompt), s.cached[b]!, prompt.length - 1);
      if (n > best.length) best = { slot: b, length: n };
    }
    return best;
  }

  /** The free slot holding the longest strict prefix of `prompt`, else the least recently used free slot. */
  private slotFor(prompt: readonly number[]): number {
    const s = this.session;
    let best = -1, bestLen = 0;
    for (let b = 0; b < s.B; b++) {
      if (this.active.has(b)) continue;
      const toks = s.tokens[b]!;
      if (toks.length > bestLen && toks.length < prompt.length && commonPrefix(toks, prompt) === toks.length) {
        best = b;
        bestLen = toks.length;
      }
    }
    if (best >= 0) return best;
    const free = [...Array(s.B).keys()].filter((b) => !this.active.has(b)).sort((x, y) => this.lastUsed[x]! - this.lastUsed[y]!);
    return free[0]!;
  }

  async close(): Promise<void> {
    this.session.release();
    this.pretrained.model.params.release();
  }
}
