/** `recall eval` (FlashRAG-style QA evaluation with ReCall's run_eval flags), `recall eval judge`, `recall eval score`. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { consola } from "consola";
import { defineRecallCommand, numberFlag, requiredStringFlag, stringFlag } from "../src/cli/command.ts";
import { flagKeys, type SettingsSchema } from "../src/config/schema.ts";
import { RecallError } from "../src/errors.ts";
import { openBackends } from "../src/eval/backends.ts";
import { EVAL_ARGS, EVAL_COMMAND_LINE, EVAL_SETTINGS, METRICS, evalFileEntries, onlySplit, parseEvalFlags, perSplitConfigs, readConfigFile, resolveEvalRun, type MetricName, type RawSettings } from "../src/eval/config.ts";
import { judgeFolder } from "../src/eval/judge.ts";
import { CONFIG_FILE } from "../src/eval/output.ts";
import { runEvaluation } from "../src/eval/run.ts";
import { scoreFolder } from "../src/eval/score.ts";
import { OpenAIChatGenerator } from "../src/rollout/remote/openai.ts";
import { VERSION } from "../src/version.ts";

const s = (description: string) => ({ type: "string" as const, description });

/** Bool settings as flags (`--apply_chat`), which may be given bare. */
const BOOL_FLAGS = [...flagKeys(EVAL_SETTINGS, EVAL_COMMAND_LINE.keyFlags)].filter(([, key]) => (EVAL_SETTINGS as SettingsSchema)[key]!.type === "bool").map(([flag]) => `--${flag}`);

/** Settings that config.yaml records but that are not settings to resume with. */
const RECORD_ONLY = ["recall_version", "generator", "generator_model_recorded", "retriever", "dataset_file", "items", "api_key_set", "resume", "started_at"];

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
    "recall eval --method_name re-call --data_dir data --dataset_name hotpotqa --split dev,test --sgl_remote_url 127.0.0.1:30000 --index_path /tmp/wiki-bm25 --max_tokens_per_turn 1024",
    "recall eval --method_name naive --dataset_path aime25.jsonl --question_key problem --answer_key answer --sgl_remote_url 127.0.0.1:30000 --generator_model /models/Qwen2.5-7B-Instruct --chat_template model --max_new_tokens 8192",
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
    // value for a subcommand), so bare bool flags are spelled out in place before the subcommand lookup.
    for (let i = 0; i < rawArgs.length; i++) {
      const next = rawArgs[i + 1];
      if (BOOL_FLAGS.includes(rawArgs[i]!) && (next === undefined || next.startsWith("-"))) rawArgs[i] += "=true";
    }
  },
  async run({ rawArgs }) {
    const { flags, configPath, json } = parseEvalFlags(rawArgs);
    let file: RawSettings = {};
    let fileSource = "the config file";
    const resume = flags.findLast((e) => e.key === "resume")?.value;
    if (typeof resume === "string") {
      const recorded = join(resume, CONFIG_FILE);
      if (!existsSync(recorded)) throw new RecallError(`--resume '${resume}' is not an eval output folder (no ${CONFIG_FILE})`);
      file = readConfigFile(recorded);
      for (const k of RECORD_ONLY) delete file[k];
      fileSource = recorded;
    } else {
      if (configPath !== undefined) {
        file = readConfigFile(configPath);
        fileSource = configPath;
      }
    }
    const { cfg, notes } = resolveEvalRun([...evalFileEntries(file, fileSource), ...flags]);
    for (const note of notes) consola.warn(note);
    const backends = await openBackends(cfg);
    try {
      // One run folder per split, against the same servers.
      const runs = perSplitConfigs(cfg);
      const results: Record<string, unknown>[] = [];
      for (const splitCfg of runs) {
        const retriesBefore = backends.retries();
        const summary = await runEvaluation(splitCfg, backends, {
          log: (l) => consola.info(l),
          warn: (l) => consola.warn(l),
          record: { recall_version: VERSION, started_at: new Date().toISOString(), ...backends.description },
        });
        const retries = backends.retries() - retriesBefore;
        if (json) {
          results.push({ dir: summary.dir, ...(runs.length > 1 ? { split: onlySplit(splitCfg) } : {}), metrics: Object.fromEntries(summary.metrics.map(([k, v]) => [k, v])), failures: Object.fromEntries(summary.failures), retries });
        } else {
          console.log(summary.table);
          consola.info(`${summary.ranNow} items in ${summary.seconds.toFixed(1)} s (${(summary.ranNow / Math.max(summary.seconds, 1e-9)).toFixed(2)} items/s)${retries ? `, ${retries} request retries` : ""}`);
          consola.success(`wrote ${summary.dir}/{config.yaml,metric_score.txt,intermediate_data.json,items.jsonl}`);
        }
        if (summary.failed > 0) {
          consola.warn(`${summary.failed} of ${summary.total} items failed (${summary.failures.map(([r, n]) => `${n}× ${r}`).join(", ")}); run again with --resume ${summary.dir} to retry them`);
          process.exitCode = 3;
        }
      }
      // One split: the summary object as before; several: a list of them, each naming its split.
      if (json) console.log(JSON.stringify(runs.length > 1 ? results : results[0], null, 2));
    } finally {
      await backends.close();
    }
  },
  subCommands: { judge, score },
});
