/** `recall eval` (FlashRAG-style QA evaluation with ReCall's run_eval flags), `recall eval judge`, `recall eval score`. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs, type ArgsDef } from "citty";
import { consola } from "consola";
import { defineRecallCommand, numberFlag, requiredStringFlag, stringFlag } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";
import { openBackends } from "../src/eval/backends.ts";
import { METHODS, METRICS, readConfigFile, resolveConfig, type MetricName, type RawSettings } from "../src/eval/config.ts";
import { judgeFolder } from "../src/eval/judge.ts";
import { CONFIG_FILE } from "../src/eval/output.ts";
import { runEvaluation } from "../src/eval/run.ts";
import { scoreFolder } from "../src/eval/score.ts";
import { OpenAIChatGenerator } from "../src/rollout/remote/openai.ts";
import { VERSION } from "../src/version.ts";

const s = (description: string) => ({ type: "string" as const, description });

/** Settings that config.yaml records but that are not settings to resume with. */
const RECORD_ONLY = ["recall_version", "generator", "generator_model_recorded", "retriever", "dataset_file", "items", "api_key_set", "resume", "started_at"];

const SETTING_FLAGS = [
  "method_name", "data_dir", "dataset_name", "split", "dataset_path", "save_dir", "save_note", "limit", "seed", "sgl_remote_url",
  "openai_base_url", "model", "api_key", "openai_api", "generator_model", "remote_retriever_url", "sandbox_url", "tool_backend", "index_path",
  "corpus_path", "retrieval_method", "retrieval_topk", "apply_chat", "temperature", "top_p", "top_k", "max_new_tokens", "max_turns",
  "max_response_length", "context_length", "metrics", "retrieval_recall_topk", "workers", "max_retries", "request_timeout", "retry_backoff", "resume",
] as const;

const judge = defineRecallCommand({
  meta: { name: "judge", description: "ReCall's LLM-judge pass over an eval output folder: writes llm_judge.jsonl and llm_judge_metric.txt." },
  examples: [
    "recall eval judge --input_dir eval_results/bamboogle_2026_01_01_12_00_re-call --base_url http://127.0.0.1:8000/v1 --model_name Qwen2.5-72B-Instruct",
    "recall eval judge --input_dir DIR --base_url https://api.openai.com/v1 --model_name gpt-4o-mini --api_key $OPENAI_API_KEY --workers 16",
  ],
  args: {
    input_dir: s("Output folder of 'recall eval' or FlashRAG (holds intermediate_data.json)"),
    base_url: s("OpenAI-compatible base URL of the judge model (with or without /v1)"),
    model_name: s("Judge model name"),
    api_key: s("API key (default: $OPENAI_API_KEY)"),
    workers: s("Concurrent judge requests (default 8)"),
    max_retries: s("Retries per request on 429/5xx/connection errors (default 5)"),
    request_timeout: s("Seconds per request (default 300)"),
  },
  async run({ args }) {
    const inputDir = requiredStringFlag(args, "input_dir");
    const http = {
      timeoutMs: numberFlag(args, "request_timeout", { default: 300, min: 1 }) * 1000,
      retries: numberFlag(args, "max_retries", { default: 5, integer: true, min: 0 }),
      backoffMs: 500,
      maxBackoffMs: 30_000,
    };
    const gen = new OpenAIChatGenerator(requiredStringFlag(args, "base_url"), {
      model: requiredStringFlag(args, "model_name"),
      apiKey: stringFlag(args, "api_key") ?? process.env.OPENAI_API_KEY,
      http,
    });
    const r = await judgeFolder(inputDir, gen, {
      workers: numberFlag(args, "workers", { default: 8, integer: true, min: 1 }),
      log: (l) => consola.info(l),
      warn: (l) => consola.warn(l),
    });
    console.log(`llm_judge_metric: ${r.metric.toFixed(4)}  (${r.correct}/${r.judged} correct${r.unparsed ? `, ${r.unparsed} unparsed replies counted incorrect` : ""}${r.errors ? `, ${r.errors} failed requests left out` : ""}${r.skipped ? `, ${r.skipped} failed items skipped` : ""})`);
    consola.success(`wrote ${r.file} and llm_judge_metric.txt`);
    if (r.errors > 0) process.exitCode = 3;
  },
});

const score = defineRecallCommand({
  meta: { name: "score", description: "Recompute em/acc/f1/precision/recall (and retrieval recall) from an existing intermediate_data.json." },
  examples: [
    "recall eval score --input_dir eval_results/bamboogle_2026_01_01_12_00_re-call",
    "recall eval score --input_dir flashrag_output/nq_2024_05_01_10_00_naive --metrics em,f1 --write",
  ],
  args: {
    input_dir: s("Output folder of 'recall eval' or FlashRAG (or the intermediate_data.json itself)"),
    metrics: s(`Comma list of ${METRICS.join(", ")} (default all)`),
    retrieval_recall_topk: s("k of retrieval_recall_top{k} (default 5)"),
    write: { type: "boolean" as const, description: "Rewrite metric_score.txt in the folder with the recomputed values" },
    json: { type: "boolean" as const, description: "Print the metrics as JSON" },
  },
  run({ args }) {
    const list = (stringFlag(args, "metrics") ?? METRICS.join(",")).split(",").map((m) => m.trim()).filter(Boolean);
    for (const m of list) if (!(METRICS as readonly string[]).includes(m)) throw new RecallError(`flag --metrics: unknown metric '${m}'`, { hint: `metrics: ${METRICS.join(", ")}` });
    const r = scoreFolder(requiredStringFlag(args, "input_dir"), {
      metrics: list as MetricName[],
      retrievalRecallTopK: numberFlag(args, "retrieval_recall_topk", { default: 5, integer: true, min: 1 }),
      write: args.write === true,
    });
    if (args.json) console.log(JSON.stringify(Object.fromEntries(r.metrics.map(([k, v]) => [k, v])), null, 2));
    else console.log(r.table);
    if (r.written) consola.success(`wrote ${r.written}`);
  },
});

const EVAL_ARGS = {
  config_path: s("ReCall/FlashRAG eval_config.yaml; flags override its keys"),
  method_name: s(`${METHODS.join(" | ")} (default re-call)`),
  data_dir: s("Datasets root: reads {data_dir}/{dataset_name}/{split}.jsonl|.json|.parquet (default data)"),
  dataset_name: s("Dataset folder name, e.g. bamboogle (default bamboogle)"),
  split: s("Split file name (default test)"),
  dataset_path: s("One dataset file instead of data_dir/dataset_name/split"),
  save_dir: s("Where run folders go (default eval_results)"),
  save_note: s("Suffix of the run folder name (default: the method name)"),
  limit: s("Evaluate only N items (FlashRAG test_sample_num): the first N, or a random N with --seed"),
  seed: s("Seed for a random --limit subset"),
  sgl_remote_url: s("SGLang server (native /generate), e.g. 127.0.0.1:30000"),
  openai_base_url: s("OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, llama.cpp, hosted)"),
  model: s("Model name for --openai_base_url; without a URL, a local model folder (= --generator_model)"),
  api_key: s("API key for --openai_base_url (default: $OPENAI_API_KEY)"),
  openai_api: s("completions (raw prompt, default; needed for re-call/research) or chat (one-shot methods)"),
  generator_model: s("Local model folder run by the WebGPU engine (batch = --workers); with a remote URL only recorded"),
  remote_retriever_url: s("Retriever server (ReCall /search API), e.g. 127.0.0.1:8000"),
  sandbox_url: s("ReCall sandbox server (/execute): re-call's tool calls run ReCall's Python wikipedia_search there"),
  tool_backend: s("re-call's wikipedia_search: native (in-process, default) or sandbox (ReCall's Python tool in the local sandbox)"),
  index_path: s("BM25 index built by 'recall retriever index' (searched in this process)"),
  corpus_path: s("Corpus JSONL of --index_path (default: the path stored in the index)"),
  retrieval_method: s("bm25 (default; dense retrievers only through --remote_retriever_url)"),
  retrieval_topk: s("Passages per search for standard-rag and research (default 5)"),
  apply_chat: s("true (default): ChatML prompts; false: base-model prompts (ReSearch base template)"),
  temperature: s("Sampling temperature (default 0 = greedy)"),
  top_p: s("Top-p (default: server's)"),
  top_k: s("Top-k (default: server's)"),
  max_new_tokens: s("New tokens per turn (default 512)"),
  max_turns: s("Assistant turns for re-call/research (default 5)"),
  max_response_length: s("Response token budget over all turns (default: none)"),
  context_length: s("Local engine: tokens per sequence in the KV cache, prompt + all turns (default 4096)"),
  metrics: s(`Comma list of ${METRICS.join(", ")} (default all)`),
  retrieval_recall_topk: s("k of retrieval_recall_top{k} (default 5)"),
  workers: s("Items evaluated concurrently against remote servers (default 8)"),
  max_retries: s("Retries per request on 429/5xx/connection errors/timeouts (default 5)"),
  request_timeout: s("Seconds per request before it is retried (default 300)"),
  retry_backoff: s("Seconds before the first retry, doubled each time (default 0.5)"),
  resume: s("Continue the run in this output folder: finished items are kept, failed and missing ones run"),
  json: { type: "boolean" as const, description: "Print the summary as JSON" },
} satisfies ArgsDef;

export default defineRecallCommand({
  meta: {
    name: "eval",
    description: "Evaluate a model on FlashRAG QA datasets (em/acc/f1, retrieval recall) with ReCall's run_eval flags; writes FlashRAG's output folder.",
  },
  examples: [
    "recall eval --method_name re-call --data_dir data --dataset_name bamboogle --split test --save_dir eval_results --sgl_remote_url 127.0.0.1:30000 --remote_retriever_url 127.0.0.1:8000",
    "recall eval --method_name re-call --dataset_path ../shared/fixtures/bamboogle_test_qa.jsonl --index_path /tmp/wiki-bm25 --openai_base_url http://127.0.0.1:8000/v1 --model Qwen2.5-7B-Instruct --limit 20 --seed 1",
    "recall eval --method_name zero-shot --dataset_path ../shared/fixtures/nq_sample_flashrag.jsonl --openai_base_url http://127.0.0.1:8000/v1 --model qwen --openai_api chat",
    "recall eval --config_path eval_config.yaml --method_name standard-rag --sgl_remote_url 127.0.0.1:30000",
    "recall eval --method_name re-call --generator_model runs/tiny-qwen2 --index_path /tmp/wiki-bm25 --limit 8 --workers 8",
    "recall eval --method_name re-call --sgl_remote_url 127.0.0.1:30000 --index_path /tmp/wiki-bm25 --tool_backend sandbox",
    "recall eval --resume eval_results/bamboogle_2026_01_01_12_00_re-call",
    "recall eval judge --input_dir DIR --base_url http://127.0.0.1:8000/v1 --model_name judge-model",
    "recall eval score --input_dir DIR",
  ],
  args: EVAL_ARGS,
  setup({ rawArgs }) {
    // ReCall's `--apply_chat` is a store_true flag; here it also takes a value (`--apply_chat False`). citty
    // would read a bare `--apply_chat` as taking the next flag for its value (and then mistake that flag's
    // value for a subcommand), so it is spelled out in place before the subcommand lookup, and run()
    // parses the fixed arguments again.
    for (let i = 0; i < rawArgs.length; i++) {
      const next = rawArgs[i + 1];
      if (rawArgs[i] === "--apply_chat" && (next === undefined || next.startsWith("-"))) rawArgs[i] = "--apply_chat=true";
    }
  },
  async run({ rawArgs }) {
    // Parsed again from the arguments as setup() left them (see there).
    const args = parseArgs(rawArgs, EVAL_ARGS) as Record<string, unknown>;
    const flags: RawSettings = {};
    for (const k of SETTING_FLAGS) {
      const v = stringFlag(args, k);
      if (v !== undefined) flags[k] = k === "apply_chat" && v === "" ? "true" : v;
    }
    let file: RawSettings = {};
    let fileSource = "the config file";
    const resume = stringFlag(args, "resume");
    if (resume !== undefined) {
      const recorded = join(resume, CONFIG_FILE);
      if (!existsSync(recorded)) throw new RecallError(`--resume '${resume}' is not an eval output folder (no ${CONFIG_FILE})`);
      file = readConfigFile(recorded);
      for (const k of RECORD_ONLY) delete file[k];
      fileSource = recorded;
    } else {
      const configPath = stringFlag(args, "config_path");
      if (configPath !== undefined) {
        file = readConfigFile(configPath);
        fileSource = configPath;
      }
    }
    const cfg = resolveConfig(file, flags, fileSource);
    const backends = await openBackends(cfg);
    try {
      const summary = await runEvaluation(cfg, backends, {
        log: (l) => consola.info(l),
        warn: (l) => consola.warn(l),
        record: { recall_version: VERSION, started_at: new Date().toISOString(), ...backends.description },
      });
      const retries = backends.retries();
      if (args.json) {
        console.log(JSON.stringify({ dir: summary.dir, metrics: Object.fromEntries(summary.metrics.map(([k, v]) => [k, v])), failures: Object.fromEntries(summary.failures), retries }, null, 2));
      } else {
        console.log(summary.table);
        consola.info(`${summary.ranNow} items in ${summary.seconds.toFixed(1)} s (${(summary.ranNow / Math.max(summary.seconds, 1e-9)).toFixed(2)} items/s)${retries ? `, ${retries} request retries` : ""}`);
        consola.success(`wrote ${summary.dir}/{config.yaml,metric_score.txt,intermediate_data.json,items.jsonl}`);
      }
      if (summary.failed > 0) {
        consola.warn(`${summary.failed} of ${summary.total} items failed (${summary.failures.map(([r, n]) => `${n}× ${r}`).join(", ")}); run again with --resume ${summary.dir} to retry them`);
        process.exitCode = 3;
      }
    } finally {
      await backends.close();
    }
  },
  subCommands: { judge, score },
});
