/**
 * An evaluation run: load and select the items, open (or resume) the output folder, run the method on
 * every item not yet finished with `workers` running at once, append each result to items.jsonl as it
 * finishes, then write FlashRAG's intermediate_data.json and metric_score.txt and return the summary.
 *
 * A run survives a flaky backend: an item whose requests still fail after the retries is recorded as
 * failed with the reason (`HTTP 503`, `timeout after 30s` …), left out of the averages, counted in the
 * summary, and tried again by `--resume`. Configuration mistakes (a RecallError) stop the run at once.
 */
import { RecallError, errorMessage } from "../errors.ts";
import { HttpFailure } from "../rollout/remote/http.ts";
import { configForRecord, onlySplit, type EvalConfig } from "./config.ts";
import { findDatasetFile, loadDataset, selectItems, type EvalItem } from "./dataset.ts";
import { averageScores, scoreItem } from "./metrics.ts";
import { runMethod, type MethodBackends } from "./methods.ts";
import {
  appendItemRecord,
  intermediateData,
  newRunDir,
  readItemRecords,
  writeConfigYaml,
  writeIntermediate,
  writeMetricScore,
  type ItemRecord,
} from "./output.ts";
import { EvalProgress } from "./progress.ts";
import { renderTable } from "./summary.ts";

export interface EvalSummary {
  dir: string;
  total: number;
  ok: number;
  failed: number;
  /** Failure reasons with counts, most frequent first. */
  failures: [string, number][];
  /** metric_score.txt's lines: name, value, whether it is a count. */
  metrics: [string, number, boolean?][];
  table: string;
  /** Items run in this invocation (not counting those resumed from the folder). */
  ranNow: number;
  seconds: number;
}

export interface EvalOptions {
  log: (line: string) => void;
  warn: (line: string) => void;
  /** Extra facts for config.yaml (generator and retriever descriptions, recall version). */
  record: Record<string, unknown>;
  signal?: AbortSignal;
  now?: Date;
}

function failureOf(e: unknown): { reason: string; message: string } {
  if (e instanceof HttpFailure) return { reason: e.reason, message: e.message };
  const message = errorMessage(e);
  return { reason: `${e instanceof Error ? e.name : "error"}: ${message.split("\n")[0]!.slice(0, 100)}`, message };
}

/** Said when `naive` runs: ReCall's run_eval uses the name for FlashRAG's retrieve-then-generate pipeline. */
export const NAIVE_WARNING =
  "method 'naive' here generates from the question alone; ReCall's run_eval 'naive' retrieves first (FlashRAG's SequentialPipeline) — for ReCall's naive numbers use --method_name standard-rag";

const TOOL_METHODS = new Set(["re-call", "research"]);
const RETRIEVAL_METHODS = new Set(["standard-rag", "re-call", "research"]);

export async function loadEvalItems(cfg: EvalConfig): Promise<{ file: string; items: EvalItem[] }> {
  const split = onlySplit(cfg);
  const file = cfg.dataset_path ?? findDatasetFile(cfg.data_dir, cfg.dataset_name, split);
  const all = await loadDataset(file, split, { question: cfg.question_key, answer: cfg.answer_key });
  return { file, items: selectItems(all, cfg.limit, cfg.random_sample, cfg.seed ?? 0) };
}

/** The metric_score.txt lines for a set of records. */
export function summarizeRecords(cfg: EvalConfig, items: readonly EvalItem[], records: Map<string, ItemRecord>): { metrics: [string, number, boolean?][]; ok: ItemRecord[]; failed: ItemRecord[] } {
  const done = items.map((it) => records.get(it.id)).filter((r): r is ItemRecord => r !== undefined);
  const ok = done.filter((r) => r.status === "ok");
  const failed = done.filter((r) => r.status === "failed");
  const means = averageScores(ok.map((r) => r.output!.metric_score));
  const metrics: [string, number, boolean?][] = [];
  for (const m of cfg.metrics) if (means[m] !== undefined) metrics.push([m, means[m]!]);
  const rk = `retrieval_recall_top${cfg.retrieval_recall_topk}`;
  if (RETRIEVAL_METHODS.has(cfg.method_name) && means[rk] !== undefined) metrics.push([rk, means[rk]!]);
  if (TOOL_METHODS.has(cfg.method_name) && ok.length > 0) {
    const mean = (f: (r: ItemRecord) => number) => ok.reduce((s, r) => s + f(r), 0) / ok.length;
    const calls = ok.reduce((s, r) => s + (r.output!.tool_calls ?? 0), 0);
    const parseFails = ok.reduce((s, r) => s + (r.output!.tool_call_parse_failures ?? 0), 0);
    metrics.push(["tool_calls_per_item", mean((r) => r.output!.tool_calls ?? 0)]);
    metrics.push(["turns_per_item", mean((r) => r.output!.turns ?? 0)]);
    metrics.push(["format_failure_rate", mean((r) => (r.output!.format_ok ? 0 : 1))]);
    metrics.push(["tool_call_parse_failure_rate", calls > 0 ? parseFails / calls : 0]);
    metrics.push(["no_answer_rate", mean((r) => (r.output!.pred === "" ? 1 : 0))]);
  }
  metrics.push(["items", ok.length, true], ["failed_items", failed.length, true]);
  return { metrics, ok, failed };
}

/** Evaluates one split (a config from perSplitConfigs). */
export async function runEvaluation(cfg: EvalConfig, backends: MethodBackends, opts: EvalOptions): Promise<EvalSummary> {
  const t0 = performance.now();
  if (cfg.method_name === "naive") opts.warn(NAIVE_WARNING);
  const { file, items } = await loadEvalItems(cfg);
  let dir: string;
  let records: Map<string, ItemRecord>;
  if (cfg.resume) {
    dir = cfg.resume;
    records = readItemRecords(dir);
    const known = new Set(items.map((i) => i.id));
    const stray = [...records.keys()].filter((id) => !known.has(id));
    if (stray.length > 0) {
      throw new RecallError(`--resume ${dir}: ${stray.length} finished item(s) (e.g. '${stray[0]}') are not in this dataset selection`, {
        hint: "resume with the same dataset, --limit and --seed as the original run (config.yaml in that folder has them)",
      });
    }
  } else {
    dir = newRunDir(cfg.save_dir, cfg.dataset_name, cfg.save_note, opts.now);
    records = new Map();
  }
  writeConfigYaml(dir, { ...opts.record, dataset_file: file, items: items.length, ...configForRecord(cfg) });

  const todo = items.filter((it) => records.get(it.id)?.status !== "ok");
  const already = items.length - todo.length;
  if (cfg.resume) opts.log(`resuming ${dir}: ${already} of ${items.length} items already done, ${todo.length} to run`);
  else opts.log(`writing to ${dir}`);
  const progress = new EvalProgress(items.length, already, cfg.metrics[0] ?? "em", opts.log);

  let next = 0;
  let fatal: unknown;
  const worker = async () => {
    while (next < todo.length && fatal === undefined) {
      const item = todo[next++]!;
      const t = performance.now();
      let rec: ItemRecord;
      try {
        const out = await runMethod(item, cfg, backends, opts.signal);
        const docs = RETRIEVAL_METHODS.has(cfg.method_name) ? out.retrieval_result : undefined;
        const metric_score = scoreItem(out.pred, item.golden_answers, cfg.metrics, docs, cfg.retrieval_recall_topk);
        rec = { id: item.id, status: "ok", output: { ...out, metric_score }, seconds: (performance.now() - t) / 1000 };
      } catch (e) {
        if (e instanceof RecallError || opts.signal?.aborted) {
          fatal ??= e;
          return;
        }
        rec = { id: item.id, status: "failed", error: failureOf(e), seconds: (performance.now() - t) / 1000 };
        opts.warn(`item ${item.id} failed: ${rec.error!.message.slice(0, 300)}`);
      }
      records.set(item.id, rec);
      appendItemRecord(dir, rec);
      const first = cfg.metrics[0];
      progress.update(rec.status === "ok", first ? rec.output?.metric_score[first] : undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(cfg.workers, Math.max(1, todo.length)) }, worker));
  if (fatal !== undefined) throw fatal;

  writeIntermediate(dir, intermediateData(items, records));
  const { metrics, ok, failed } = summarizeRecords(cfg, items, records);
  writeMetricScore(dir, metrics);
  const counts = new Map<string, number>();
  for (const r of failed) counts.set(r.error?.reason ?? "unknown", (counts.get(r.error?.reason ?? "unknown") ?? 0) + 1);
  const failures = [...counts].sort((a, b) => b[1] - a[1]);
  const rows: [string, string][] = metrics.map(([k, v, c]) => [k, c ? String(v) : v.toFixed(4)]);
  for (const [reason, n] of failures) rows.push([`failed: ${reason}`, String(n)]);
  const table = renderTable(`${cfg.method_name} · ${cfg.dataset_name}/${onlySplit(cfg)}`, rows);
  return { dir, total: items.length, ok: ok.length, failed: failed.length, failures, metrics, table, ranNow: todo.length, seconds: (performance.now() - t0) / 1000 };
}
