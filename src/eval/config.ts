/**
 * An evaluation's settings: defaults, then ReCall's `eval_config.yaml` (`--config_path`, FlashRAG keys),
 * then command-line flags — a flag always wins. Keys are snake_case as in ReCall/FlashRAG, and the
 * merged settings are what `config.yaml` in the output folder records.
 *
 * YAML keys read (FlashRAG's names): data_dir, dataset_name, split, dataset_path, save_dir, save_note,
 * method_name, test_sample_num (= --limit), random_sample, seed, sgl_remote_url, openai_base_url,
 * model, api_key, openai_api, generator_model, remote_retriever_url, sandbox_url, tool_backend, retrieval_method,
 * retrieval_topk, index_path, corpus_path, apply_chat, generation_params {max_tokens | max_new_tokens,
 * temperature, top_p, top_k}, max_turns, max_response_length, context_length, metrics, metric_setting
 * {retrieval_recall_topk}, workers, max_retries, request_timeout, retry_backoff. Other FlashRAG keys (gpu_id,
 * framework, faiss_gpu, save_intermediate_data …) are accepted and kept in config.yaml.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { parse } from "yaml";
import { RecallError } from "../errors.ts";

export const METHODS = ["naive", "zero-shot", "standard-rag", "re-call", "research"] as const;
export type MethodName = (typeof METHODS)[number];
/** ReCall's run_eval methods recall does not implement. */
const UNSUPPORTED_METHODS: Record<string, string> = {
  iterretgen: "FlashRAG's ITER-RETGEN pipeline",
  ircot: "FlashRAG's IRCoT pipeline",
};

export const METRICS = ["em", "acc", "f1", "precision", "recall"] as const;
export type MetricName = (typeof METRICS)[number];

export interface EvalConfig {
  method_name: MethodName;
  data_dir: string;
  dataset_name: string;
  split: string;
  dataset_path?: string;
  save_dir: string;
  save_note: string;
  /** Evaluate only this many items (FlashRAG test_sample_num). */
  limit?: number;
  /** With limit: pick a seeded random subset instead of the first N (FlashRAG random_sample + seed). */
  seed?: number;
  random_sample: boolean;
  sgl_remote_url?: string;
  openai_base_url?: string;
  model?: string;
  api_key?: string;
  openai_api: "completions" | "chat";
  generator_model?: string;
  remote_retriever_url?: string;
  sandbox_url?: string;
  /** re-call's wikipedia_search: `native` (answered in-process) or `sandbox` (ReCall's Python tool in the local sandbox). */
  tool_backend: "native" | "sandbox";
  index_path?: string;
  corpus_path?: string;
  retrieval_method: string;
  retrieval_topk: number;
  apply_chat: boolean;
  temperature: number;
  top_p?: number;
  top_k?: number;
  max_new_tokens: number;
  max_turns: number;
  max_response_length?: number;
  /** Local engine: tokens per sequence in its cache (prompt + every turn). */
  context_length: number;
  metrics: MetricName[];
  retrieval_recall_topk: number;
  workers: number;
  max_retries: number;
  /** Seconds per HTTP request. */
  request_timeout: number;
  /** Seconds before the first retry (doubled each retry, with jitter). */
  retry_backoff: number;
  /** Continue the run in this folder. */
  resume?: string;
  /** FlashRAG keys recall does not use, kept for config.yaml. */
  extra: Record<string, unknown>;
}

export const DEFAULTS: Omit<EvalConfig, "extra"> = {
  method_name: "re-call",
  data_dir: "data",
  dataset_name: "bamboogle",
  split: "test",
  save_dir: "eval_results",
  save_note: "",
  random_sample: false,
  openai_api: "completions",
  tool_backend: "native",
  retrieval_method: "bm25",
  retrieval_topk: 5,
  apply_chat: true,
  temperature: 0,
  max_new_tokens: 512,
  max_turns: 5,
  context_length: 4096,
  metrics: [...METRICS],
  retrieval_recall_topk: 5,
  workers: 8,
  max_retries: 5,
  request_timeout: 300,
  retry_backoff: 0.5,
};

/** Flag or YAML values before checking: strings, numbers, booleans as the source gives them. */
export type RawSettings = Record<string, unknown>;

const STRING_KEYS = [
  "data_dir", "dataset_name", "split", "dataset_path", "save_dir", "save_note", "sgl_remote_url", "openai_base_url", "model",
  "api_key", "generator_model", "remote_retriever_url", "sandbox_url", "index_path", "corpus_path", "retrieval_method", "resume",
] as const;
const INT_KEYS = ["limit", "seed", "retrieval_topk", "max_new_tokens", "max_turns", "max_response_length", "context_length", "retrieval_recall_topk", "workers", "max_retries", "top_k"] as const;
const FLOAT_KEYS = ["temperature", "top_p", "request_timeout", "retry_backoff"] as const;
const BOOL_KEYS = ["random_sample", "apply_chat"] as const;
const KNOWN = new Set<string>([...STRING_KEYS, ...INT_KEYS, ...FLOAT_KEYS, ...BOOL_KEYS, "method_name", "openai_api", "tool_backend", "metrics"]);

/** Reads ReCall's eval_config.yaml into flat settings (generation_params and metric_setting flattened). */
export function readConfigFile(path: string): RawSettings {
  if (!existsSync(path)) throw new RecallError(`--config_path '${path}' not found`);
  let v: unknown;
  try {
    v = parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new RecallError(`--config_path '${path}' is not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  if (v === null || v === undefined) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new RecallError(`--config_path '${path}' must be a YAML mapping of keys`);
  const y = { ...(v as Record<string, unknown>) };
  const out: RawSettings = {};
  const gp = y.generation_params;
  if (gp !== undefined && gp !== null) {
    if (typeof gp !== "object" || Array.isArray(gp)) throw new RecallError(`'generation_params' in ${path} must be a mapping`);
    const g = gp as Record<string, unknown>;
    if (g.max_new_tokens !== undefined) out.max_new_tokens = g.max_new_tokens;
    else if (g.max_tokens !== undefined) out.max_new_tokens = g.max_tokens;
    for (const k of ["temperature", "top_p", "top_k"]) if (g[k] !== undefined) out[k] = g[k];
    if (g.do_sample === false && g.temperature === undefined) out.temperature = 0;
    delete y.generation_params;
  }
  const ms = y.metric_setting;
  if (ms !== undefined && ms !== null && typeof ms === "object" && !Array.isArray(ms)) {
    const k = (ms as Record<string, unknown>).retrieval_recall_topk;
    if (k !== undefined) out.retrieval_recall_topk = k;
  }
  if (y.test_sample_num !== undefined && y.test_sample_num !== null) out.limit = y.test_sample_num;
  delete y.test_sample_num;
  for (const [k, val] of Object.entries(y)) if (val !== null && val !== undefined) out[k] = val;
  return out;
}

function where(source: string, key: string): string {
  return source === "flag" ? `flag --${key}` : `'${key}' in ${source}`;
}

/**
 * Merges defaults ← file ← flags and checks every value; errors name the flag or the file key.
 * `fileSource` names the YAML for messages.
 */
export function resolveConfig(file: RawSettings, flags: RawSettings, fileSource = "the config file"): EvalConfig {
  const cfg: EvalConfig = { ...DEFAULTS, metrics: [...DEFAULTS.metrics], extra: {} };
  const target = cfg as unknown as Record<string, unknown>;
  for (const [layer, source] of [[file, fileSource], [flags, "flag"]] as const) {
    for (const [key, raw] of Object.entries(layer)) {
      if (raw === undefined) continue;
      const at = where(source, key);
      if (!KNOWN.has(key)) {
        if (source === "flag") throw new RecallError(`unknown setting '${key}'`);
        cfg.extra[key] = raw;
        continue;
      }
      if ((STRING_KEYS as readonly string[]).includes(key)) {
        if (typeof raw !== "string" && typeof raw !== "number") throw new RecallError(`${at} must be a string, got ${JSON.stringify(raw)}`);
        target[key] = String(raw);
      } else if ((INT_KEYS as readonly string[]).includes(key) || (FLOAT_KEYS as readonly string[]).includes(key)) {
        const n = typeof raw === "number" ? raw : Number(String(raw).trim());
        if (String(raw).trim() === "" || !Number.isFinite(n)) throw new RecallError(`${at} expects a number, got '${raw}'`);
        if ((INT_KEYS as readonly string[]).includes(key) && !Number.isInteger(n)) throw new RecallError(`${at} expects an integer, got '${raw}'`);
        target[key] = n;
      } else if ((BOOL_KEYS as readonly string[]).includes(key)) {
        if (typeof raw === "boolean") target[key] = raw;
        else if (/^(true|1|yes)$/i.test(String(raw))) target[key] = true;
        else if (/^(false|0|no)$/i.test(String(raw))) target[key] = false;
        else throw new RecallError(`${at} expects true or false, got '${raw}'`);
      } else if (key === "method_name") {
        const m = String(raw);
        if (m in UNSUPPORTED_METHODS) {
          throw new RecallError(`${at}: '${m}' (${UNSUPPORTED_METHODS[m]}) is not implemented in recall`, { hint: `methods: ${METHODS.join(", ")}` });
        }
        if (!(METHODS as readonly string[]).includes(m)) throw new RecallError(`${at}: unknown method '${m}'`, { hint: `methods: ${METHODS.join(", ")}` });
        cfg.method_name = m as MethodName;
      } else if (key === "openai_api") {
        if (raw !== "completions" && raw !== "chat") throw new RecallError(`${at} must be 'completions' or 'chat', got '${raw}'`);
        cfg.openai_api = raw;
      } else if (key === "tool_backend") {
        if (raw !== "native" && raw !== "sandbox") throw new RecallError(`${at} must be 'native' or 'sandbox', got '${raw}'`);
        cfg.tool_backend = raw;
      } else if (key === "metrics") {
        const list = Array.isArray(raw) ? raw.map(String) : String(raw).split(",").map((s) => s.trim()).filter(Boolean);
        const known = list.filter((m) => (METRICS as readonly string[]).includes(m));
        // FlashRAG metric names recall does not compute (bleu, rouge …) are dropped from the list.
        cfg.metrics = known as MetricName[];
        if (list.length > known.length) cfg.extra.unsupported_metrics = list.filter((m) => !known.includes(m));
      }
    }
  }
  const checks: [boolean, string][] = [
    [cfg.workers >= 1, "workers must be >= 1"],
    [cfg.max_new_tokens >= 1, "max_new_tokens must be >= 1"],
    [cfg.max_turns >= 1, "max_turns must be >= 1"],
    [cfg.context_length >= 16, "context_length must be >= 16"],
    [cfg.retrieval_topk >= 1, "retrieval_topk must be >= 1"],
    [cfg.retrieval_recall_topk >= 1, "retrieval_recall_topk must be >= 1"],
    [cfg.temperature >= 0, "temperature must be >= 0"],
    [cfg.max_retries >= 0, "max_retries must be >= 0"],
    [cfg.request_timeout > 0, "request_timeout must be > 0"],
    [cfg.retry_backoff >= 0, "retry_backoff must be >= 0"],
    [cfg.limit === undefined || cfg.limit >= 1, "limit must be >= 1"],
    [cfg.max_response_length === undefined || cfg.max_response_length >= 1, "max_response_length must be >= 1"],
  ];
  for (const [ok, msg] of checks) if (!ok) throw new RecallError(msg);
  // `--limit N --seed S` asks for a random subset; in a YAML, FlashRAG's random_sample decides.
  if (flags.seed !== undefined) cfg.random_sample = true;
  if (cfg.save_note === "") cfg.save_note = cfg.method_name;
  // A dataset given as a file names the run folder after the file unless a name was given.
  if (cfg.dataset_path && file.dataset_name === undefined && flags.dataset_name === undefined) {
    cfg.dataset_name = basename(cfg.dataset_path).replace(/\.(jsonl|json|parquet)$/, "");
  }
  return cfg;
}

/** The settings as config.yaml records them (secrets left out, extra FlashRAG keys kept). */
export function configForRecord(cfg: EvalConfig, more: Record<string, unknown> = {}): Record<string, unknown> {
  const { extra, api_key, ...rest } = cfg;
  const out: Record<string, unknown> = { ...extra, ...rest, ...more };
  if (api_key) out.api_key_set = true;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}
