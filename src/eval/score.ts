/**
 * `recall eval score`: recomputes the metrics of an output folder from its intermediate_data.json (the
 * predictions and gold answers stored there), e.g. after a metric fix or for a folder FlashRAG wrote.
 * Items recorded as failed are left out and counted.
 */
import { join } from "node:path";
import type { MetricName } from "./config.ts";
import { readIntermediate } from "./intermediate.ts";
import { averageScores, scoreItem } from "./metrics.ts";
import { METRIC_FILE, writeMetricScore } from "./output.ts";
import { renderTable } from "./summary.ts";

export interface ScoreOptions {
  metrics: readonly MetricName[];
  retrievalRecallTopK: number;
  /** Rewrite metric_score.txt in the folder. */
  write: boolean;
}

export interface ScoreResult {
  file: string;
  metrics: [string, number, boolean?][];
  table: string;
  written?: string;
}

export function scoreFolder(inputDir: string, opts: ScoreOptions): ScoreResult {
  const { file, items } = readIntermediate(inputDir);
  const scored = items.filter((it) => it.error === undefined);
  const withDocs = scored.some((it) => it.retrieval_result !== undefined);
  const per = scored.map((it) => scoreItem(it.pred, it.golden_answers, opts.metrics, withDocs ? (it.retrieval_result ?? []) : undefined, opts.retrievalRecallTopK));
  const means = averageScores(per);
  const metrics: [string, number, boolean?][] = Object.entries(means).map(([k, v]) => [k, v]);
  metrics.push(["items", scored.length, true], ["failed_items", items.length - scored.length, true]);
  const table = renderTable(`score · ${file}`, metrics.map(([k, v, c]) => [k, c ? String(v) : v.toFixed(4)]));
  const out: ScoreResult = { file, metrics, table };
  if (opts.write) {
    const dir = file.slice(0, file.lastIndexOf("/")) || ".";
    writeMetricScore(dir, metrics);
    out.written = join(dir, METRIC_FILE);
  }
  return out;
}
