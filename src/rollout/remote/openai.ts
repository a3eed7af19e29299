/**
 * Generators on OpenAI-compatible servers (vLLM, SGLang's OpenAI API, llama.cpp, hosted APIs):
 * - `OpenAICompletionsGenerator` — `POST {base}/v1/completions` with a raw prompt (the tool loop needs
 *   raw continuation). It asks vLLM/SGLang to keep special tokens and stop strings
 *   (`skip_special_tokens: false`, `include_stop_str_in_output: true`, `no_stop_trim: true`); a server
 *   that rejects those extensions with HTTP 400 is asked again without them, once, and remembered.
 *   The matched stop comes from vLLM's `stop_reason` or SGLang's `matched_stop` when present.
 * - `OpenAIChatGenerator` — `POST {base}/v1/chat/completions` with messages (one-shot methods, the judge).
 * `base` may be given with or without the trailing `/v1`.
 */
import type { ChatGenerator, SamplingParams, TextCompletion, TextGenerator } from "../generator.ts";
import { DEFAULT_HTTP, HttpFailure, normalizeBaseUrl, postJson, type HttpOptions } from "./http.ts";

export interface OpenAIOptions {
  model: string;
  apiKey?: string;
  http?: HttpOptions;
}

function v1(base: string): string {
  const b = normalizeBaseUrl(base).replace(/\/(chat\/)?completions$/, "");
  return /\/v1$/.test(b) ? b : `${b}/v1`;
}

function headersOf(o: OpenAIOptions): Record<string, string> {
  return o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {};
}

function samplingBody(p: SamplingParams): Record<string, unknown> {
  const b: Record<string, unknown> = { max_tokens: p.maxNewTokens, temperature: p.temperature };
  if (p.topP !== undefined) b.top_p = p.topP;
  if (p.topK !== undefined) b.top_k = p.topK;
  if (p.stop?.length) b.stop = [...p.stop];
  if (p.seed !== undefined) b.seed = p.seed;
  return b;
}

interface Choice {
  text?: unknown;
  message?: { content?: unknown };
  finish_reason?: unknown;
  stop_reason?: unknown;
  matched_stop?: unknown;
}
interface Answer {
  choices?: Choice[];
  usage?: { completion_tokens?: unknown; prompt_tokens?: unknown };
}

function completionOf(body: unknown, url: string, chat: boolean): TextCompletion {
  const a = body as Answer;
  const c = Array.isArray(a?.choices) ? a.choices[0] : undefined;
  const text = chat ? c?.message?.content : c?.text;
  if (!c || typeof text !== "string") throw new HttpFailure("response", "answer without choices[0] text", url, 1, 200, JSON.stringify(body).slice(0, 300));
  const matched = c.stop_reason ?? c.matched_stop;
  return {
    text,
    finishReason: c.finish_reason === "length" ? "length" : "stop",
    matchedStop: typeof matched === "string" || typeof matched === "number" ? matched : null,
    completionTokens: typeof a.usage?.completion_tokens === "number" ? a.usage.completion_tokens : undefined,
    promptTokens: typeof a.usage?.prompt_tokens === "number" ? a.usage.prompt_tokens : undefined,
  };
}

const EXTENSIONS = { skip_special_tokens: false, include_stop_str_in_output: true, no_stop_trim: true };

export class OpenAICompletionsGenerator implements TextGenerator {
  readonly kind = "text";
  readonly description: string;
  private readonly url: string;
  private extensions = true;

  constructor(baseUrl: string, private readonly opts: OpenAIOptions) {
    this.url = `${v1(baseUrl)}/completions`;
    this.description = `openai-completions ${this.url} model=${opts.model}`;
  }

  async complete(prompt: string, params: SamplingParams, signal?: AbortSignal): Promise<TextCompletion> {
    const http = { ...(this.opts.http ?? DEFAULT_HTTP), headers: headersOf(this.opts), signal };
    const body = { model: this.opts.model, prompt, ...samplingBody(params) };
    if (this.extensions) {
      try {
        return completionOf(await postJson(this.url, { ...body, ...EXTENSIONS }, http), this.url, false);
      } catch (e) {
        const rejected = e instanceof HttpFailure && e.status === 400 && /skip_special_tokens|include_stop_str_in_output|no_stop_trim|extra|unrecognized|unexpected|not permitted/i.test(e.body ?? "");
        if (!rejected) throw e;
        this.extensions = false;
      }
    }
    return completionOf(await postJson(this.url, body, http), this.url, false);
  }
}

export class OpenAIChatGenerator implements ChatGenerator {
  readonly kind = "chat";
  readonly description: string;
  private readonly url: string;

  constructor(baseUrl: string, private readonly opts: OpenAIOptions) {
    this.url = `${v1(baseUrl)}/chat/completions`;
    this.description = `openai-chat ${this.url} model=${opts.model}`;
  }

  async chat(messages: readonly { role: string; content: string }[], params: SamplingParams, signal?: AbortSignal): Promise<TextCompletion> {
    const http = { ...(this.opts.http ?? DEFAULT_HTTP), headers: headersOf(this.opts), signal };
    const body = { model: this.opts.model, messages, ...samplingBody(params) };
    return completionOf(await postJson(this.url, body, http), this.url, true);
  }
}
