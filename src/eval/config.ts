/**
 * An evaluation's settings: defaults, then ReCall's `eval_config.yaml` (`--config_path`, FlashRAG keys),
 * then command-line flags — a flag always wins. Keys are snake_case as in ReCall/FlashRAG, and the
 * merged settings are what `config.yaml` in the output folder records.
 *
 * YAML keys read (FlashRAG's names): data_dir, dataset_name, split (one or a list), dataset_path, save_dir,
 * save_note, method_name, test_sample_num (= --limit), random_sample, seed, sgl_remote_url, openai_base_url,
 * model, api_key, openai_api, generator_model, remote_retriever_url, sandbox_url, tool_backend, retrieval_method,
 * retrieval_topk, index_path, corpus_path, apply_chat, generation_params {max_tokens | max_new_tokens,
 * temperature, top_p, top_k}, generator_max_input_len (with framework: sgl_remote), max_turns,
 * max_response_length, context_length, metrics, metric_setting {retrieval_recall_topk}, workers, max_retries,
 * request_timeout, retry_backoff, and every other setting below by its key. Other FlashRAG keys (gpu_id,
 * framework, faiss_gpu, save_intermediate_data …) are accepted and kept in config.yaml.
 *
 * Token budgets follow what ReCall's evaluation sends, not one shared number: re-call and research ask for
 * `max_tokens_per_turn` (512, as `ReCall.run` hard-codes) on every turn, whatever the YAML says; one-shot methods
 * ask for `max_new_tokens`, which a YAML sets where FlashRAG's generator of its `framework` reads it — the
 * SGLang generator (`framework: sgl_remote`, ReCall's) sends `generator_max_input_len` as max_new_tokens and
 * ignores generation_params' max_tokens; the others read generation_params.
 */
import { basename } from "node:path";
import {
  atLeast,
  above,
  defineSettings,
  describeSource,
  dropNulls,
  parseCommandLine,
  readYamlMapping,
  resolveSettings,
  settingsArgs,
  type CommandLineSpec,
  type NullsAsOptional,
  type SettingEntry,
  type SettingsOf,
} from "../config/schema.ts";
import { RecallError } from "../errors.ts";

export const METHODS = ["naive", "zero-shot", "standard-rag", "re-call", "research"] as const;
export type MethodName = (typeof METHODS)[number];
/** ReCall's run_eval methods recall does not implement. */
const UNSUPPORTED_METHODS: Record<string, string> = {
  iterretgen: "(FlashRAG's ITER-RETGEN pipeline) is not implemented in recall",
  ircot: "(FlashRAG's IRCoT pipeline) is not implemented in recall",
};

export const METRICS = ["em", "acc", "f1", "precision", "recall"] as const;
export type MetricName = (typeof METRICS)[number];
/** FlashRAG's other metric names: a FlashRAG YAML that lists them still runs (they are noted, not computed). */
const FLASHRAG_ONLY_METRICS = [
  "sub_em", "retrieval_recall", "retrieval_precision", "rouge-1", "rouge-2", "rouge-l", "zh_rouge-1", "zh_rouge-2", "zh_rouge-l",
  "bleu", "input_tokens", "gaokao_acc", "llm_judge",
];

/**
 * Every setting of `recall eval`, once: its flag is its key (FlashRAG's names), its YAML key too. Nullable settings
 * are unset (absent from EvalConfig) unless given.
 */
export const EVAL_SETTINGS = defineSettings({
  method_name: { type: "enum", choices: METHODS, refused: UNSUPPORTED_METHODS, default: "re-call", help: "Evaluation method" },
  data_dir: { type: "string", default: "data", help: "Datasets root: reads {data_dir}/{dataset_name}/{split}.jsonl|.json|.parquet" },
  dataset_name: { type: "string", default: "bamboogle", help: "Dataset folder name, e.g. bamboogle" },
  split: { type: "list<string>", default: ["test"], help: "Split file name; a list (test,dev) evaluates each split into its own run folder" },
  dataset_path: { type: "string", nullable: true, default: null, help: "One dataset file instead of data_dir/dataset_name/split" },
  question_key: { type: "string", nullable: true, default: null, help: "Row field holding the question (default: question, problem or Question; a.b for a nested field)" },
  answer_key: { type: "string", nullable: true, default: null, help: "Row field holding the gold answer(s) (default: golden_answers, answer, answers, Final answer, reward_model.ground_truth)" },
  save_dir: { type: "string", default: "eval_results", help: "Where run folders go" },
  save_note: { type: "string", default: "", help: "Suffix of the run folder name (default: the method name)" },
  limit: { type: "int", nullable: true, default: null, check: atLeast(1), help: "Evaluate only N items (FlashRAG test_sample_num): the first N, or a random N with --seed" },
  seed: { type: "int", nullable: true, default: null, help: "Seed for a random --limit subset" },
  random_sample: { type: "bool", default: false, flags: [], help: "With limit: a seeded random subset instead of the first N (FlashRAG's YAML key)" },
  sgl_remote_url: { type: "string", nullable: true, default: null, help: "SGLang server (native /generate), e.g. 127.0.0.1:30000" },
  openai_base_url: { type: "string", nullable: true, default: null, help: "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, llama.cpp, hosted)" },
  model: { type: "string", nullable: true, default: null, help: "Model name for --openai_base_url; without a URL, a local model folder (= --generator_model)" },
  api_key: { type: "string", nullable: true, default: null, secret: true, help: "API key for --openai_base_url (default: $OPENAI_API_KEY)" },
  openai_api: { type: "enum", choices: ["completions", "chat"], default: "completions", help: "completions (raw prompt; needed for re-call/research) or chat (one-shot methods)" },
  generator_model: { type: "string", nullable: true, default: null, help: "Local model folder run by the WebGPU engine (batch = --workers); with a remote URL only recorded" },
  adapter: { type: "string", nullable: true, default: null, help: "LoRA adapter folder (PEFT format, e.g. a LoRA run's global_step_N) applied to the local model" },
  remote_retriever_url: { type: "string", nullable: true, default: null, help: "Retriever server (ReCall /search API), e.g. 127.0.0.1:8000" },
  sandbox_url: { type: "string", nullable: true, default: null, help: "ReCall sandbox server (/execute): re-call's tool calls run ReCall's Python wikipedia_search there" },
  system_prompt: {
    type: "string",
    default: "",
    help: "re-call: your own system turn instead of ReCall's ({func_schemas} is replaced by the tools' schemas), e.g. 'Use calc.'",
  },
  tool_backend: {
    type: "enum",
    choices: ["native", "sandbox"],
    default: "native",
    help: "re-call's wikipedia_search: native (in-process) or sandbox (ReCall's Python tool in the local sandbox)",
  },
  index_path: { type: "string", nullable: true, default: null, help: "BM25 index built by 'recall retriever index' (searched in this process)" },
  corpus_path: { type: "string", nullable: true, default: null, help: "Corpus JSONL of --index_path (default: the path stored in the index)" },
  retrieval_method: { type: "string", default: "bm25", help: "bm25 (dense retrievers only through --remote_retriever_url)" },
  retrieval_topk: { type: "int", default: 5, check: atLeast(1), help: "Passages per search for standard-rag and research" },
  apply_chat: { type: "bool", default: true, help: "true: chat prompts; false: base-model prompts (ReSearch base template)" },
  chat_template: {
    type: "enum",
    choices: ["chatml", "model"],
    default: "chatml",
    help: "One-shot prompts with apply_chat: chatml (Qwen ChatML) or model (the chat template of --generator_model's tokenizer, as FlashRAG renders them)",
  },
  temperature: { type: "float", default: 0, check: atLeast(0), help: "Sampling temperature (0 = greedy)" },
  top_p: { type: "float", nullable: true, default: null, help: "Top-p (default: server's)" },
  top_k: { type: "int", nullable: true, default: null, help: "Top-k (default: server's)" },
  max_new_tokens: { type: "int", default: 512, check: atLeast(1), help: "New tokens of a one-shot method's answer (YAML: generator_max_input_len with framework sgl_remote, else generation_params.max_tokens)" },
  max_tokens_per_turn: { type: "int", default: 512, check: atLeast(1), help: "New tokens per assistant turn of re-call and research (ReCall.run asks for 512)" },
  max_turns: { type: "int", default: 5, check: atLeast(1), help: "Assistant turns for re-call/research" },
  max_response_length: { type: "int", nullable: true, default: null, check: atLeast(1), help: "Response token budget over all turns (default: none)" },
  context_length: { type: "int", default: 4096, check: atLeast(16), help: "Local engine: tokens per sequence in the KV cache, prompt + all turns" },
  metrics: { type: "list<string>", default: [...METRICS], help: `Comma list of ${METRICS.join(", ")}` },
  retrieval_recall_topk: { type: "int", default: 5, check: atLeast(1), help: "k of retrieval_recall_top{k}" },
  workers: { type: "int", default: 8, check: atLeast(1), help: "Items evaluated concurrently against remote servers" },
  max_retries: { type: "int", default: 5, check: atLeast(0), help: "Retries per request on 429/5xx/connection errors/timeouts" },
  request_timeout: { type: "float", default: 300, check: above(0), help: "Seconds per request before it is retried" },
  retry_backoff: { type: "float", default: 0.5, check: atLeast(0), help: "Seconds before the first retry, doubled each time" },
  resume: { type: "string", nullable: true, default: null, help: "Continue the run in this output folder: finished items are kept, failed and missing ones run" },
});

/** `recall eval`'s command line: a flag per setting (FlashRAG's names), `--config_path`, `--json`. */
export const EVAL_COMMAND_LINE: CommandLineSpec = {
  keyFlags: true,
  overrides: false,
  options: {
    config_path: { type: "string", help: "ReCall/FlashRAG eval_config.yaml; flags override its keys" },
    json: { type: "bool", help: "Print the summary as JSON" },
  },
};

/** citty args of `recall eval`, from the schema. */
export const EVAL_ARGS = settingsArgs(EVAL_SETTINGS, EVAL_COMMAND_LINE);

/** The resolved settings of one evaluation (unset settings absent), as methods, backends and config.yaml use them. */
export type EvalConfig = Omit<NullsAsOptional<SettingsOf<typeof EVAL_SETTINGS>>, "metrics"> & {
  /** The metrics recall computes; FlashRAG names it does not are listed in extra.unsupported_metrics. */
  metrics: MetricName[];
  /** FlashRAG keys recall does not use, kept for config.yaml. */
  extra: Record<string, unknown>;
};

/** Flag or YAML values before checking: strings, numbers, booleans as the source gives them. */
export type RawSettings = Record<string, unknown>;

/** FlashRAG's `framework` of ReCall's eval_config.yaml: the SGLang generator, which sends generator_max_input_len. */
export const SGL_REMOTE_FRAMEWORK = "sgl_remote";

/**
 * Reads ReCall's eval_config.yaml into flat settings (generation_params and metric_setting flattened). The one-shot
 * budget (max_new_tokens) comes from where FlashRAG's generator for the file's `framework` takes it; the tool
 * methods' per-turn budget is never read from generation_params (ReCall.run sends its own 512).
 */
export function readConfigFile(path: string): RawSettings {
  const y = { ...readYamlMapping(path, "--config_path") };
  const out: RawSettings = {};
  if (y.framework === SGL_REMOTE_FRAMEWORK) {
    if (y.generator_max_input_len !== undefined && y.generator_max_input_len !== null) out.max_new_tokens = y.generator_max_input_len;
  }
  const gp = y.generation_params;
  if (gp !== undefined && gp !== null) {
    if (typeof gp !== "object" || Array.isArray(gp)) throw new RecallError(`'generation_params' in ${path} must be a mapping`);
    const g = gp as Record<string, unknown>;
    // FlashRAG's SGLang generator ignores these; its other generators read them.
    if (y.framework !== SGL_REMOTE_FRAMEWORK) {
      if (g.max_new_tokens !== undefined) out.max_new_tokens = g.max_new_tokens;
      else if (g.max_tokens !== undefined) out.max_new_tokens = g.max_tokens;
    }
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

/** Flat settings read from a YAML (see readConfigFile) as entries naming the file. */
export const evalFileEntries = (file: RawSettings, source: string): SettingEntry[] =>
  Object.entries(file).filter(([, v]) => v !== undefined).map(([key, value]) => ({ key, value, source: { kind: "file", file: source, key } }));

/**
 * Merges defaults ← file ← flags and checks every value; errors name the flag or the file key.
 * `fileSource` names the YAML for messages. (The command line goes through `parseEvalFlags`.)
 */
export function resolveConfig(file: RawSettings, flags: RawSettings, fileSource = "the config file"): EvalConfig {
  const flagEntries = Object.entries(flags)
    .filter(([, v]) => v !== undefined)
    .map(([key, value]): SettingEntry => ({ key, value, source: { kind: "flag", flag: key } }));
  return resolveEvalConfig([...evalFileEntries(file, fileSource), ...flagEntries]);
}

/** `recall eval`'s flags as setting entries, with its options (`config_path`, `json`). */
export function parseEvalFlags(rawArgs: readonly string[]): { flags: SettingEntry[]; configPath?: string; json: boolean } {
  const cl = parseCommandLine(EVAL_SETTINGS, rawArgs, EVAL_COMMAND_LINE);
  const configPath = cl.options.config_path;
  return { flags: cl.flags, configPath: typeof configPath === "string" ? configPath : undefined, json: cl.options.json === true };
}

/** Resolves flat file entries (FlashRAG keys; unknown ones kept in `extra`) and flag entries into an EvalConfig. */
export function resolveEvalConfig(entries: readonly SettingEntry[]): EvalConfig {
  return resolveEvalRun(entries).cfg;
}

const TOOL_METHODS: readonly MethodName[] = ["re-call", "research"];

/** resolveEvalConfig, with one line per given setting that has no effect on this method (for the log). */
export function resolveEvalRun(entries: readonly SettingEntry[]): { cfg: EvalConfig; notes: string[] } {
  const r = resolveSettings(EVAL_SETTINGS, entries, { keepUnknownFileKeys: true });
  const notes = [...r.notes];
  const tool = TOOL_METHODS.includes(r.values.method_name);
  const flag = (key: keyof typeof EVAL_SETTINGS) => {
    const source = r.sources[key];
    return source.kind === "flag" ? `--${source.flag}` : undefined;
  };
  const budgetFlag = flag("max_new_tokens");
  if (tool && budgetFlag) notes.push(`${budgetFlag} sets one-shot methods' answer budget; ${r.values.method_name} asks for --max_tokens_per_turn (${r.values.max_tokens_per_turn}) per turn`);
  const turnFlag = flag("max_tokens_per_turn");
  if (!tool && turnFlag) notes.push(`${turnFlag} applies to re-call and research; ${r.values.method_name} asks for --max_new_tokens (${r.values.max_new_tokens})`);
  const templateFlag = flag("chat_template");
  if (tool && templateFlag && r.values.chat_template !== "chatml") notes.push(`${templateFlag} applies to one-shot methods; ${r.values.method_name} writes its prompt as ReCall/ReSearch do`);
  if (r.values.split.length === 0) throw new RecallError(`${describeSource(r.sources.split)} names no split`);
  if (r.values.split.length > 1 && r.values.dataset_path !== null) {
    throw new RecallError(`${describeSource(r.sources.split)} lists ${r.values.split.length} splits, but --dataset_path reads one file`, { hint: "use --data_dir and --dataset_name, or one split" });
  }
  if (r.values.split.length > 1 && r.values.resume !== null) throw new RecallError(`--resume continues one run folder (one split); ${describeSource(r.sources.split)} lists ${r.values.split.length}`);
  const { metrics, ...rest } = dropNulls(r.values);
  // FlashRAG metric names recall does not compute (bleu, rouge …) are dropped from a YAML's list (with a note); a flag
  // asks for them explicitly, and a name FlashRAG does not know either is a typo: both are refused.
  const known = metrics.filter((m): m is MetricName => (METRICS as readonly string[]).includes(m));
  const others = metrics.filter((m) => !(METRICS as readonly string[]).includes(m));
  const typo = others.find((m) => !FLASHRAG_ONLY_METRICS.includes(m));
  const fromFlag = r.sources.metrics.kind === "flag" || r.sources.metrics.kind === "override";
  if (typo !== undefined || (fromFlag && others.length > 0)) {
    const bad = typo ?? others[0]!;
    throw new RecallError(`${describeSource(r.sources.metrics)}: unknown metric '${bad}'${typo === undefined ? " (FlashRAG's, not computed by recall)" : ""}`, {
      hint: `metrics: ${METRICS.join(", ")}`,
    });
  }
  const extra = { ...r.extra };
  if (others.length > 0) {
    extra.unsupported_metrics = others;
    notes.push(`${describeSource(r.sources.metrics)}: ${others.join(", ")} ${others.length === 1 ? "is" : "are"} FlashRAG's and not computed by recall`);
  }
  const cfg: EvalConfig = { ...rest, metrics: known, extra };
  // `--limit N --seed S` asks for a random subset; in a YAML, FlashRAG's random_sample decides.
  if (r.sources.seed.kind === "flag") cfg.random_sample = true;
  if (cfg.save_note === "") cfg.save_note = cfg.method_name;
  // A dataset given as a file names the run folder after the file unless a name was given.
  if (cfg.dataset_path && r.sources.dataset_name.kind === "default") cfg.dataset_name = basename(cfg.dataset_path).replace(/\.(jsonl|json|parquet)$/, "");
  return { cfg, notes };
}

/**
 * One settings object per split, each evaluated into its own run folder: with several splits the folder's note
 * ends `_{split}` so that runs started in the same minute do not share a folder.
 */
export function perSplitConfigs(cfg: EvalConfig): EvalConfig[] {
  if (cfg.split.length === 1) return [cfg];
  return cfg.split.map((split) => ({ ...cfg, split: [split], save_note: `${cfg.save_note}_${split}` }));
}

/** The one split of a per-split config (see perSplitConfigs). */
export function onlySplit(cfg: EvalConfig): string {
  if (cfg.split.length !== 1) throw new Error(`expected one split, got ${cfg.split.length} (run each through perSplitConfigs)`);
  return cfg.split[0]!;
}

/** The settings as config.yaml records them (secrets left out, extra FlashRAG keys kept). */
export function configForRecord(cfg: EvalConfig, more: Record<string, unknown> = {}): Record<string, unknown> {
  const { extra, api_key, ...rest } = cfg;
  const out: Record<string, unknown> = { ...extra, ...rest, ...more };
  if (api_key) out.api_key_set = true;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}
