/**
 * The output folder, as FlashRAG writes it: `{save_dir}/{dataset_name}_{YYYY_MM_DD_HH_MM}_{save_note}/`
 * with `config.yaml`, `metric_score.txt` (`name: value` lines) and `intermediate_data.json` (a JSON list
 * of `{id, question, golden_answers, metadata?, output: {pred, …, metric_score}}`). recall adds
 * `items.jsonl`: one line per finished (or failed) item, appended as items finish — the record that
 * `--resume` continues from. Whole files are written to a temporary name and renamed.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { RecallError } from "../errors.ts";
import { appendWhole, writeFileAtomic } from "../util/fs.ts";
import { pyReprFloat } from "../python/repr.ts";
import type { EvalItem } from "./dataset.ts";
import type { ItemScores } from "./metrics.ts";
import type { MethodOutput } from "./methods.ts";

export const ITEMS_FILE = "items.jsonl";
export const CONFIG_FILE = "config.yaml";
export const METRIC_FILE = "metric_score.txt";
export const INTERMEDIATE_FILE = "intermediate_data.json";

export interface ItemRecord {
  id: string;
  status: "ok" | "failed";
  output?: MethodOutput & { metric_score: ItemScores };
  /** Why the item failed: `reason` short (for counting), `message` in full. */
  error?: { reason: string; message: string };
  seconds: number;
}

const pad = (n: number) => String(n).padStart(2, "0");

/** A fresh run folder; a `_2`, `_3` … suffix when one with the same minute already exists. */
export function newRunDir(saveDir: string, datasetName: string, saveNote: string, now = new Date()): string {
  const stamp = `${now.getFullYear()}_${pad(now.getMonth() + 1)}_${pad(now.getDate())}_${pad(now.getHours())}_${pad(now.getMinutes())}`;
  const base = join(saveDir, `${datasetName}_${stamp}_${saveNote}`);
  let dir = base;
  for (let i = 2; existsSync(dir); i++) dir = `${base}_${i}`;
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function writeConfigYaml(dir: string, record: Record<string, unknown>): void {
  writeFileAtomic(join(dir, CONFIG_FILE), stringify(record));
}

/** Appends one finished item, whole or not at all (a full disk truncates it back; a kill leaves at most a torn last line). */
export function appendItemRecord(dir: string, rec: ItemRecord): void {
  appendWhole(join(dir, ITEMS_FILE), JSON.stringify(rec) + "\n");
}

/** The latest record per id from items.jsonl; a torn last line (killed mid-write) is ignored. */
export function readItemRecords(dir: string): Map<string, ItemRecord> {
  const path = join(dir, ITEMS_FILE);
  const out = new Map<string, ItemRecord>();
  if (!existsSync(path)) return out;
  const lines = readFileSync(path, "utf8").split("\n");
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      const rec = JSON.parse(line) as ItemRecord;
      if (typeof rec.id === "string") out.set(rec.id, rec);
    } catch {
      const isLast = lines.slice(i + 1).every((l) => l.trim() === "");
      if (!isLast) throw new RecallError(`${path}:${i + 1}: corrupt record (not JSON)`);
    }
  });
  return out;
}

/** `value` as Python prints a float (FlashRAG's metric_score.txt), integers for counts. */
export function formatMetricValue(v: number, isCount = false): string {
  return isCount && Number.isInteger(v) ? String(v) : pyReprFloat(v);
}

export function writeMetricScore(dir: string, lines: readonly [string, number, boolean?][]): void {
  writeFileAtomic(join(dir, METRIC_FILE), lines.map(([k, v, count]) => `${k}: ${formatMetricValue(v, count)}`).join("\n") + "\n");
}

/**
 * FlashRAG's item dicts, in dataset order; failed items carry `output.error` and an empty pred. The
 * dataset row's own id (its type kept) and its other fields (Tool-Star's `answer`, verl's
 * `extra_info` …) are kept beside FlashRAG's keys.
 */
export function intermediateData(items: readonly EvalItem[], records: Map<string, ItemRecord>): unknown[] {
  const out: unknown[] = [];
  for (const it of items) {
    const rec = records.get(it.id);
    if (!rec) continue;
    const row: Record<string, unknown> = { id: it.rowId ?? it.id, question: it.question, golden_answers: it.golden_answers };
    if (it.metadata) row.metadata = it.metadata;
    for (const [k, v] of Object.entries(it.row ?? {})) if (!(k in row)) row[k] = v;
    row.output = rec.status === "ok" ? rec.output : { pred: "", error: rec.error?.message ?? "failed", metric_score: {} };
    out.push(row);
  }
  return out;
}

export function writeIntermediate(dir: string, data: unknown[]): void {
  writeFileAtomic(join(dir, INTERMEDIATE_FILE), JSON.stringify(data, null, 4));
}
