/**
 * The generator interface the multi-turn loop (conversation.ts) drives. Two kinds exist, because the two
 * kinds of backend differ in what they can promise:
 *
 * - `TextGenerator` — text in, text out: a remote SGLang `/generate` or OpenAI-compatible `/v1/completions`
 *   server. The loop sends the whole conversation so far as a prompt string and appends the returned
 *   text. Good for evaluation; not for RL (the server re-tokenizes the prompt every turn).
 *
 * - `TokenGenerator` — token ids in, token ids out: the local WebGPU engine (`--generator_model DIR`).
 *   The loop keeps every sampled id exactly as sampled, tokenizes only what it appends itself (tool
 *   responses and the injected `\n<|im_start|>assistant\n<think>` prefix), and builds the loss mask
 *   (1 on sampled ids, 0 elsewhere). Nothing is ever re-tokenized.
 *
 * Contract for a TokenGenerator (what the engine must do):
 * - `completeTokens(ids, params)` continues the sequence `ids` and returns the new ids only.
 * - It stops after sampling any id in `params.stopTokenIds` (that id is returned, as sampled), after
 *   the decoded new text first contains one of `params.stop` (the ids up to and including the one that
 *   completed the stop string are returned; none are cut), or after `params.maxNewTokens` ids
 *   (`finishReason: "length"`).
 * - `temperature: 0` is greedy. `logprobs`, when returned, has one entry per returned id (the sampling
 *   distribution's log-probability of that id) — RL uses it as the old policy's log-probs.
 * - Batching is the engine's business: the loop runs one async conversation per item and calls
 *   `completeTokens` concurrently from many of them; an engine gathers the calls that are pending at the
 *   same time into one batch (and may keep a KV cache per conversation prefix). Calls must be safe to
 *   make concurrently.
 * - `tokenizer.encode` parses special tokens written in the text (`<|im_end|>` → its id) and adds no
 *   BOS; `decode` keeps special tokens.
 *
 * Contract for a TextGenerator:
 * - `complete(prompt, params)` returns the new text. Servers differ on whether a matched stop string
 *   (or the EOS token's text) is included; `matchedStop` carries what the server said about it
 *   (SGLang's `meta_info.finish_reason.matched`, vLLM's `stop_reason`), and the loop works out the rest
 *   (turn_end.ts).
 * - Transient server trouble (429, 5xx, connection errors, timeouts) is retried inside the generator;
 *   what it throws is final for that request.
 */

export interface SamplingParams {
  /** New tokens allowed in this call. */
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topP?: number;
  topK?: number;
  /** Stop strings (besides stop token ids). */
  stop?: readonly string[];
  seed?: number;
  /**
   * Token engines: the random stream this call draws from (with `seed` and the token's position). Give each
   * conversation its own so its samples do not depend on which cache slot or batch it runs in (RL's exact
   * resume needs this). Text servers ignore it.
   */
  streamId?: number;
}

export type FinishReason = "stop" | "length";

export interface TextCompletion {
  text: string;
  finishReason: FinishReason;
  /** Which stop ended generation, when the server says: a stop string, or a token id (EOS). */
  matchedStop?: string | number | null;
  /** New tokens generated, when the server reports it. */
  completionTokens?: number;
  promptTokens?: number;
}

export interface TextGenerator {
  readonly kind: "text";
  /** For logs and config.yaml: the backend and model (e.g. `sglang http://127.0.0.1:30000`). */
  readonly description: string;
  complete(prompt: string, params: SamplingParams, signal?: AbortSignal): Promise<TextCompletion>;
  close?(): Promise<void>;
}

export interface TokenCompletion {
  /** The new ids exactly as sampled, stop id or stop-string ids included. */
  tokenIds: number[];
  /** Log-probability of each returned id under the sampling distribution, when the engine provides it. */
  logprobs?: number[];
  finishReason: FinishReason;
}

export interface RolloutTokenizer {
  /** Text → ids; special tokens written in the text map to their ids; no BOS is added. */
  encode(text: string): number[];
  /** Ids → text with special tokens kept. */
  decode(ids: readonly number[]): string;
  /** The id of a single (special) token, e.g. `<|im_end|>`; undefined when the vocabulary lacks it. */
  tokenId(token: string): number | undefined;
}

export interface TokenSamplingParams extends SamplingParams {
  /** Ids that end generation (returned as sampled): EOS, and `<|im_start|>` which a turn must never start. */
  stopTokenIds: readonly number[];
}

export interface TokenGenerator {
  readonly kind: "tokens";
  readonly description: string;
  readonly tokenizer: RolloutTokenizer;
  completeTokens(promptIds: readonly number[], params: TokenSamplingParams, signal?: AbortSignal): Promise<TokenCompletion>;
  close?(): Promise<void>;
}

export type Generator = TextGenerator | TokenGenerator;

/** A chat model behind an OpenAI-compatible `/v1/chat/completions` (one-shot methods and the LLM judge). */
export interface ChatGenerator {
  readonly kind: "chat";
  readonly description: string;
  chat(messages: readonly { role: string; content: string }[], params: SamplingParams, signal?: AbortSignal): Promise<TextCompletion>;
  close?(): Promise<void>;
}
