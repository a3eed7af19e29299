/**
 * The generator, retriever and tool backend an evaluation runs against, opened from its settings:
 * - generator: `--sgl_remote_url` (SGLang /generate), or `--openai_base_url` + `--model`
 *   (`/v1/completions`, or `/v1/chat/completions` with `--openai_api chat`). `--generator_model DIR`
 *   alone asks for the local WebGPU engine, which is not available yet (with a remote URL it is only
 *   recorded, as ReCall's scripts pass both);
 * - retriever (methods that retrieve): `--remote_retriever_url`, or a BM25 index in this process
 *   (`--index_path`, `--corpus_path`, `retrieval_method: bm25`);
 * - re-call's `wikipedia_search`: answered in this process from the retriever (the same text the sandbox
 *   would return). With `--sandbox_url` the call goes to that sandbox instead, running ReCall's Python
 *   tool source against the retriever URL (a local index is served on 127.0.0.1 for it).
 */
import { RecallError } from "../errors.ts";
import type { ChatGenerator, Generator } from "../rollout/generator.ts";
import type { HttpOptions } from "../rollout/remote/http.ts";
import { OpenAIChatGenerator, OpenAICompletionsGenerator } from "../rollout/remote/openai.ts";
import { SglangGenerator } from "../rollout/remote/sglang.ts";
import { openBm25Retriever, RemoteRetriever, type Retriever } from "../retrieval/index.ts";
import type { EvalConfig } from "./config.ts";
import type { MethodBackends } from "./methods.ts";

export interface OpenedBackends extends MethodBackends {
  /** What was opened, for config.yaml and the log. */
  description: Record<string, string>;
  /** Retries made so far (all backends), for the summary. */
  retries: () => number;
  close(): Promise<void>;
}

export function httpOptions(cfg: EvalConfig, onRetry?: HttpOptions["onRetry"]): HttpOptions {
  return {
    timeoutMs: cfg.request_timeout * 1000,
    retries: cfg.max_retries,
    backoffMs: cfg.retry_backoff * 1000,
    maxBackoffMs: Math.max(cfg.retry_backoff * 1000, 30_000),
    onRetry,
  };
}

export function openGenerator(cfg: EvalConfig, http: HttpOptions): Generator | ChatGenerator {
  if (cfg.sgl_remote_url && cfg.openai_base_url) {
    throw new RecallError("both --sgl_remote_url and --openai_base_url given; pick one generator");
  }
  if (cfg.sgl_remote_url) {
    if (cfg.openai_api === "chat") throw new RecallError("--openai_api chat applies to --openai_base_url, not --sgl_remote_url");
    return new SglangGenerator(cfg.sgl_remote_url, http);
  }
  if (cfg.openai_base_url) {
    const model = cfg.model ?? cfg.generator_model;
    if (!model) throw new RecallError("--openai_base_url needs --model NAME (the served model's name)");
    const opts = { model, apiKey: cfg.api_key ?? process.env.OPENAI_API_KEY, http };
    return cfg.openai_api === "chat" ? new OpenAIChatGenerator(cfg.openai_base_url, opts) : new OpenAICompletionsGenerator(cfg.openai_base_url, opts);
  }
  const local = cfg.generator_model ?? cfg.model;
  if (local) {
    throw new RecallError(`local generation (--generator_model ${local}) is not available yet: recall's WebGPU engine cannot serve evaluation so far`, {
      hint: "serve the model with SGLang or vLLM and pass --sgl_remote_url URL (or --openai_base_url URL --model NAME)",
    });
  }
  throw new RecallError("no generator: pass --sgl_remote_url URL, or --openai_base_url URL --model NAME");
}

export async function openRetriever(cfg: EvalConfig, http: HttpOptions): Promise<Retriever> {
  if (cfg.remote_retriever_url) {
    return new RemoteRetriever(/^[a-z]+:\/\//i.test(cfg.remote_retriever_url) ? cfg.remote_retriever_url : `http://${cfg.remote_retriever_url}`, {
      timeoutMs: http.timeoutMs,
      retries: http.retries,
      backoffMs: http.backoffMs,
    });
  }
  if (cfg.index_path) {
    if (cfg.retrieval_method.toLowerCase() !== "bm25") {
      throw new RecallError(`retrieval_method '${cfg.retrieval_method}' is a dense retriever; recall searches only bm25 indexes in-process`, {
        hint: "build one with 'recall retriever index', or serve your retriever and pass --remote_retriever_url",
      });
    }
    return openBm25Retriever(cfg.index_path, cfg.corpus_path);
  }
  throw new RecallError(`method '${cfg.method_name}' needs a retriever: pass --remote_retriever_url URL or --index_path DIR`, {
    hint: "build an index with 'recall retriever index --corpus_path corpus.jsonl --index_path DIR'",
  });
}

const NEEDS_RETRIEVER = new Set(["standard-rag", "re-call", "research"]);

export async function openBackends(cfg: EvalConfig): Promise<OpenedBackends> {
  let retries = 0;
  const http = httpOptions(cfg, () => void retries++);
  const generator = openGenerator(cfg, http);
  const description: Record<string, string> = { generator: generator.description };
  if (cfg.generator_model && (cfg.sgl_remote_url || cfg.openai_base_url)) description.generator_model = cfg.generator_model;
  let retriever: Retriever | undefined;
  if (NEEDS_RETRIEVER.has(cfg.method_name)) {
    retriever = await openRetriever(cfg, http);
    description.retriever = cfg.remote_retriever_url ? `remote ${cfg.remote_retriever_url}` : `bm25 ${cfg.index_path}`;
  }
  if (cfg.sandbox_url) {
    throw new RecallError("--sandbox_url is not wired in yet: re-call answers wikipedia_search in this process from the retriever", {
      hint: "drop --sandbox_url; the tool's answers are the same text ReCall's sandbox returns",
    });
  }
  return {
    generator,
    retriever,
    description,
    retries: () => retries,
    async close() {
      await generator.close?.();
      await retriever?.close();
    },
  };
}
