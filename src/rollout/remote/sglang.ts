/**
 * A TextGenerator on SGLang's native `POST {url}/generate`:
 *   {"text": prompt, "sampling_params": {"temperature", "max_new_tokens", "top_p", "top_k", "stop",
 *    "skip_special_tokens": false, "no_stop_trim": true}}
 *   → {"text": …, "meta_info": {"finish_reason": {"type": "stop"|"length"|"abort", "matched": …}, "completion_tokens", …}}
 * Special tokens are kept and stop strings are not trimmed, so the turn comes back as sampled; the
 * loop copes with servers that trim anyway (turn_end.ts).
 */
import type { SamplingParams, TextCompletion, TextGenerator } from "../generator.ts";
import { DEFAULT_HTTP, HttpFailure, normalizeBaseUrl, postJson, type HttpOptions } from "./http.ts";

interface SglangAnswer {
  text?: unknown;
  meta_info?: {
    finish_reason?: { type?: unknown; matched?: unknown; message?: unknown } | null;
    completion_tokens?: unknown;
    prompt_tokens?: unknown;
  };
}

export class SglangGenerator implements TextGenerator {
  readonly kind = "text";
  readonly description: string;
  private readonly url: string;

  constructor(baseUrl: string, private readonly http: HttpOptions = DEFAULT_HTTP) {
    this.url = normalizeBaseUrl(baseUrl).replace(/\/generate$/, "") + "/generate";
    this.description = `sglang ${this.url}`;
  }

  async complete(prompt: string, params: SamplingParams, signal?: AbortSignal): Promise<TextCompletion> {
    const sampling: Record<string, unknown> = {
      temperature: params.temperature,
      max_new_tokens: params.maxNewTokens,
      skip_special_tokens: false,
      no_stop_trim: true,
    };
    if (params.topP !== undefined) sampling.top_p = params.topP;
    if (params.topK !== undefined) sampling.top_k = params.topK;
    if (params.stop?.length) sampling.stop = params.stop;
    if (params.seed !== undefined) sampling.sampling_seed = params.seed;
    const body = (await postJson(this.url, { text: prompt, sampling_params: sampling }, { ...this.http, signal: signal ?? this.http.signal })) as SglangAnswer;
    const answer = Array.isArray(body) ? (body[0] as SglangAnswer) : body;
    if (typeof answer?.text !== "string") throw new HttpFailure("response", "answer without text", this.url, 1, 200, JSON.stringify(body).slice(0, 300));
    const fr = answer.meta_info?.finish_reason;
    if (fr?.type === "abort") {
      throw new HttpFailure("http", `generation aborted by server${typeof fr.message === "string" ? `: ${fr.message.slice(0, 120)}` : ""}`, this.url, 1, 200);
    }
    const matched = fr?.matched;
    return {
      text: answer.text,
      finishReason: fr?.type === "length" ? "length" : "stop",
      matchedStop: typeof matched === "string" || typeof matched === "number" ? matched : null,
      completionTokens: typeof answer.meta_info?.completion_tokens === "number" ? answer.meta_info.completion_tokens : undefined,
      promptTokens: typeof answer.meta_info?.prompt_tokens === "number" ? answer.meta_info.prompt_tokens : undefined,
    };
  }
}
