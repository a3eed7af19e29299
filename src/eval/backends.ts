/**
 * The generator, retriever and tool backend an evaluation runs against, opened from its settings:
 * - generator: `--sgl_remote_url` (SGLang /generate), or `--openai_base_url` + `--model`
 *   (`/v1/completions`, or `/v1/chat/completions` with `--openai_api chat`), or `--generator_model DIR`
 *   (or `--model DIR` without a URL): the local WebGPU engine, `--workers` sequences decoded as one batch
 *   with a `--context_length`-token KV cache each. With a remote URL, `--generator_model` is only
 *   recorded, as ReCall's scripts pass both;
 * - retriever (methods that retrieve): `--remote_retriever_url`, or a BM25 index in this process
 *   (`--index_path`, `--corpus_path`, `retrieval_method: bm25`);
 * - re-call's `wikipedia_search`: by default answered in this process from the retriever (the same text
 *   the sandbox would return). With `--tool_backend sandbox` ReCall's Python tool source runs in the local
 *   sandbox, and with `--sandbox_url` in that remote sandbox, querying the retriever over HTTP
 *   (`--remote_retriever_url`, or a local index served on 127.0.0.1 for the purpose);
 * - with `--chat_template model`, the one-shot methods' prompts are rendered by the chat template of the model
 *   folder's tokenizer (`--generator_model`, which next to a remote URL is the local copy ReCall's scripts pass),
 *   with the generation prompt, as FlashRAG's PromptTemplate does.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { RecallTokenizer } from "../data/tokenizer.ts";
import { getGpu } from "../gpu/runtime.ts";
import { LocalTokenGenerator } from "../model/local_generator.ts";
import { RecallError } from "../errors.ts";
import type { ChatMessage } from "../rollout/chatml.ts";
import type { ChatGenerator, Generator } from "../rollout/generator.ts";
import { RecordingRetriever } from "../rollout/recording_retriever.ts";
import { normalizeBaseUrl, type HttpOptions } from "../rollout/remote/http.ts";
import { SEARCH_URL_PLACEHOLDER, WIKIPEDIA_SEARCH_ENV } from "../rollout/templates.ts";
import { SandboxToolRunner, type ToolRunner } from "../rollout/tools.ts";
import { OpenAIChatGenerator, OpenAICompletionsGenerator } from "../rollout/remote/openai.ts";
import { SglangGenerator } from "../rollout/remote/sglang.ts";
import { openBm25Retriever, RemoteRetriever, startRetrieverServer, type Retriever } from "../retrieval/index.ts";
import { createLocalSandbox, RemoteSandbox, type ToolExecutor } from "../sandbox/index.ts";
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

export async function openGenerator(cfg: EvalConfig, http: HttpOptions): Promise<Generator | ChatGenerator> {
  if (cfg.sgl_remote_url && cfg.openai_base_url) {
    throw new RecallError("both --sgl_remote_url and --openai_base_url given; pick one generator");
  }
  if ((cfg.sgl_remote_url || cfg.openai_base_url) && cfg.adapter) {
    throw new RecallError("--adapter applies to a local model (--generator_model DIR), not a served one", { hint: "merge it first (recall merge) and serve the merged folder" });
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
    if (!existsSync(join(local, "config.json"))) {
      throw new RecallError(`--generator_model '${local}' is not a model folder (no config.json)`, {
        hint: "a Hugging Face model folder (config.json, safetensors, tokenizer files), e.g. from 'recall init'; or pass --sgl_remote_url / --openai_base_url",
      });
    }
    if (cfg.openai_api === "chat") throw new RecallError("--openai_api chat applies to --openai_base_url, not a local model");
    return LocalTokenGenerator.open(await getGpu(), local, { batchSize: cfg.workers, capacity: cfg.context_length, adapter: cfg.adapter ?? undefined });
  }
  if (cfg.adapter) throw new RecallError("--adapter applies to a local model (--generator_model DIR)");
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
const ONE_SHOT = new Set(["naive", "zero-shot", "standard-rag"]);

/** The model's chat template for one-shot prompts (`--chat_template model`), or undefined when not asked for. */
export function openChatTemplate(cfg: EvalConfig): ((messages: readonly ChatMessage[]) => string) | undefined {
  if (cfg.chat_template !== "model" || !cfg.apply_chat || !ONE_SHOT.has(cfg.method_name)) return undefined;
  if (cfg.openai_base_url && cfg.openai_api === "chat") {
    throw new RecallError("--chat_template model renders raw prompts; with --openai_api chat the server applies the model's template", { hint: "drop --chat_template, or use --openai_api completions" });
  }
  const folder = cfg.generator_model ?? (cfg.sgl_remote_url || cfg.openai_base_url ? undefined : cfg.model);
  if (!folder) throw new RecallError("--chat_template model needs the model's tokenizer: pass --generator_model DIR (a local copy of the served model)");
  const tokenizer = RecallTokenizer.load(folder);
  if (!tokenizer.hasChatTemplate) throw new RecallError(`--chat_template model: ${folder} has no chat template (tokenizer_config.json 'chat_template' or chat_template.jinja)`, { hint: "use --chat_template chatml" });
  return (messages) => tokenizer.applyChatTemplate(messages.map((m) => ({ role: m.role, content: m.content })), { addGenerationPrompt: true });
}

export async function openBackends(cfg: EvalConfig): Promise<OpenedBackends> {
  let retries = 0;
  const http = httpOptions(cfg, () => void retries++);
  const chatTemplate = openChatTemplate(cfg);
  const generator = await openGenerator(cfg, http);
  const description: Record<string, string> = { generator: generator.description };
  if (cfg.generator_model && (cfg.sgl_remote_url || cfg.openai_base_url)) description.generator_model = cfg.generator_model;
  let retriever: Retriever | undefined;
  // re-call on rows that carry their own tools needs no retriever: it is opened only when one is configured.
  const optionalRetriever = cfg.method_name === "re-call" && !cfg.index_path && !cfg.remote_retriever_url && cfg.tool_backend === "native" && !cfg.sandbox_url;
  if (NEEDS_RETRIEVER.has(cfg.method_name) && !optionalRetriever) {
    retriever = await openRetriever(cfg, http);
    description.retriever = cfg.remote_retriever_url ? `remote ${cfg.remote_retriever_url}` : `bm25 ${cfg.index_path}`;
  }
  const closers: (() => Promise<void>)[] = [];
  let reCallTools: ToolRunner | undefined;
  if (cfg.method_name === "re-call" && (cfg.sandbox_url || cfg.tool_backend === "sandbox")) {
    // ReCall's own path: the Python tool source runs in a sandbox and queries a retriever over HTTP.
    // A local index is served on 127.0.0.1 for it, through a recorder so retrieval metrics still see
    // the passages.
    let searchUrl = cfg.remote_retriever_url ? normalizeBaseUrl(cfg.remote_retriever_url) : undefined;
    let recorder: RecordingRetriever | undefined;
    if (!searchUrl) {
      recorder = new RecordingRetriever(retriever!);
      const server = await startRetrieverServer(recorder, { host: "127.0.0.1", port: 0 });
      closers.push(() => server.stop());
      searchUrl = server.url;
      description.tool_retriever_server = searchUrl;
    }
    const executor: ToolExecutor = cfg.sandbox_url
      ? new RemoteSandbox(cfg.sandbox_url, { retries: cfg.max_retries, backoffMs: cfg.retry_backoff * 1000 })
      : await createLocalSandbox({ workers: Math.max(1, Math.min(cfg.workers, availableParallelism())), allowUrls: [searchUrl] });
    closers.push(() => executor.close());
    description.tools = cfg.sandbox_url ? `sandbox ${cfg.sandbox_url}` : "local sandbox (ReCall's wikipedia_search Python tool)";
    const rec = recorder;
    reCallTools = new SandboxToolRunner(executor, WIKIPEDIA_SEARCH_ENV.replace(SEARCH_URL_PLACEHOLDER, () => searchUrl!), {
      docsOf: rec
        ? (call) => {
            const q = call.args.entries.get("query");
            const n = call.args.entries.get("top_n");
            const topN = n !== undefined && n !== null && typeof n === "object" && !Array.isArray(n) && (n.py === "int" || n.py === "float") ? Number(n.value) : 5;
            return typeof q === "string" ? (rec.lookup(q, topN) ?? []) : [];
          }
        : undefined,
    });
  } else if (cfg.method_name === "re-call") {
    description.tools = "native wikipedia_search (in-process, from the retriever)";
  }
  // Rows with their own tools (verl parquet from `recall synth` or ReCall's SynTool form) run them in a sandbox,
  // opened on first use: the remote one with --sandbox_url, else a local pool.
  let rowExecutor: Promise<ToolExecutor> | undefined;
  const openRowExecutor = () =>
    (rowExecutor ??= (async () => {
      const ex: ToolExecutor = cfg.sandbox_url
        ? new RemoteSandbox(cfg.sandbox_url, { retries: cfg.max_retries, backoffMs: cfg.retry_backoff * 1000 })
        : await createLocalSandbox({ workers: Math.max(1, Math.min(cfg.workers, availableParallelism())) });
      closers.push(() => ex.close());
      return ex;
    })());
  const rowTools = (env: string): ToolRunner => ({
    reportsDocs: false,
    run: async (call) => new SandboxToolRunner(await openRowExecutor(), env).run(call),
  });
  return {
    generator,
    chatTemplate,
    retriever,
    reCallTools,
    rowTools,
    description,
    retries: () => retries,
    async close() {
      for (const c of closers.reverse()) await c();
      await generator.close?.();
      await retriever?.close();
    },
  };
}
