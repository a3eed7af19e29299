/**
 * A training run's metrics log, `RUN/metrics.jsonl`: one JSON object per line,
 * `{"step": N, "epoch": E, "time": "<ISO>", "<verl metric name>": value, ...}`.
 *
 * Several lines may carry the same step (validation is logged on its own line); readers merge them,
 * later values winning. Each line is written with one append, so a kill -9 leaves at most a torn last
 * line, which readers skip and `truncateAfter` (resume) and the next writer remove. JSON has no NaN or
 * Infinity: non-finite numbers are written as null, so the log stays readable by any JSON parser.
 */
import { appendFileSync, closeSync, existsSync, ftruncateSync, fstatSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { RecallError } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";

export const METRICS_FILE = "metrics.jsonl";

/** A metric's value as logged: null stands for a non-finite number (NaN, ±Inf). */
export type MetricValue = number | null;

/** All lines of one step, merged. */
export interface MetricsRow {
  step: number;
  epoch?: number;
  /** ISO time of the step's last line. */
  time?: string;
  metrics: Record<string, MetricValue>;
}

/** Keys of a line that are not metrics. */
const RESERVED = new Set(["step", "epoch", "time"]);

export class MetricsLog {
  /** Opens (creating on first append) the log at `path`; a torn last line left by a killed writer is removed first. */
  constructor(readonly path: string) {
    repairTail(path);
  }

  /**
   * Appends one line for `step`. Undefined metrics are left out; non-finite numbers become null.
   * `time` defaults to now.
   */
  append(step: number, metrics: Readonly<Record<string, number | null | undefined>>, opts: { epoch?: number; time?: Date } = {}): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`MetricsLog.append: step must be a non-negative integer, got ${step}`);
    const line: Record<string, string | number | null> = { step };
    if (opts.epoch !== undefined) line.epoch = opts.epoch;
    line.time = (opts.time ?? new Date()).toISOString();
    for (const [key, value] of Object.entries(metrics)) {
      if (RESERVED.has(key)) throw new Error(`MetricsLog.append: '${key}' is not a metric name (reserved)`);
      if (value === undefined) continue;
      line[key] = value !== null && Number.isFinite(value) ? value : null;
    }
    // One write of the whole line: a kill leaves the file ending in a complete line or a torn one, never a torn middle.
    appendFileSync(this.path, JSON.stringify(line) + "\n");
  }

  /** For resume from the checkpoint of `step`: drops every line with a later step (and a torn last line), atomically. */
  truncateAfter(step: number): void {
    if (!existsSync(this.path)) return;
    const kept: string[] = [];
    forEachLine(this.path, readFileSync(this.path, "utf8"), (line, obj) => {
      if (obj.step <= step) kept.push(line);
    });
    writeFileAtomic(this.path, kept.map((l) => l + "\n").join(""));
  }
}

/** Mean, max and min of `values`: NaN each when empty or when any value is NaN (as torch's reductions propagate it). */
export function summarize(values: readonly number[]): { mean: number; max: number; min: number } {
  if (values.length === 0) return { mean: NaN, max: NaN, min: NaN };
  let sum = 0, max = -Infinity, min = Infinity;
  for (const v of values) {
    if (Number.isNaN(v)) return { mean: NaN, max: NaN, min: NaN };
    sum += v;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  return { mean: sum / values.length, max, min };
}

/**
 * The log's rows merged by step, in step order. A torn last line is skipped; any other line that is
 * not a JSON object with a non-negative integer `step` is refused naming `file:line`. Values that are
 * neither numbers nor null (none are written by MetricsLog) are not metrics and are left out.
 */
export function readMetrics(file: string): MetricsRow[] {
  if (!existsSync(file)) throw new RecallError(`${file}: no such file`);
  const byStep = new Map<number, MetricsRow>();
  forEachLine(file, readFileSync(file, "utf8"), (_line, obj) => {
    let row = byStep.get(obj.step);
    if (!row) byStep.set(obj.step, (row = { step: obj.step, metrics: {} }));
    if (typeof obj.epoch === "number") row.epoch = obj.epoch;
    if (typeof obj.time === "string") row.time = obj.time;
    for (const [key, value] of Object.entries(obj)) {
      if (RESERVED.has(key)) continue;
      if (value === null || typeof value === "number") row.metrics[key] = value;
    }
  });
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

type LogLine = { step: number; [key: string]: unknown };

/** Calls `fn` for each non-empty line with its parsed object; skips a torn last line; throws on any other bad line. */
function forEachLine(file: string, text: string, fn: (line: string, obj: LogLine) => void): void {
  const lines = text.split("\n");
  let last = lines.length - 1;
  while (last >= 0 && lines[last]!.trim() === "") last--;
  for (let i = 0; i <= last; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      // The last line without its newline is a write cut short by a kill: expected, not corruption.
      if (i === last && !text.endsWith("\n")) return;
      throw new RecallError(`${file}:${i + 1}: not a JSON line`);
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new RecallError(`${file}:${i + 1}: not a JSON object`);
    const step = (obj as { step?: unknown }).step;
    if (typeof step !== "number" || !Number.isInteger(step) || step < 0) {
      throw new RecallError(`${file}:${i + 1}: 'step' must be a non-negative integer, got ${JSON.stringify(step) ?? "nothing"}`);
    }
    fn(line, obj as LogLine);
  }
}

/**
 * Makes the file end with a newline before appending: a parsable unterminated last line gets its newline,
 * a torn one (a killed write) is cut off. Reads only the tail.
 */
function repairTail(path: string): void {
  if (!existsSync(path)) return;
  const fd = openSync(path, "r+");
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return;
    const chunk = Buffer.alloc(64 * 1024);
    let end = size;
    let tail = Buffer.alloc(0);
    // Walk back from the end to the last newline (a line is at most a few KB; the loop covers any size).
    for (;;) {
      const start = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - start, start);
      tail = Buffer.concat([chunk.subarray(0, n), tail]);
      end = start;
      const nl = tail.lastIndexOf(0x0a);
      if (nl === tail.length - 1) return; // already ends with a newline
      if (nl >= 0 || start === 0) {
        const lineStart = nl >= 0 ? end + nl + 1 : 0;
        const last = tail.subarray(nl + 1).toString("utf8");
        let complete = false;
        try {
          JSON.parse(last);
          complete = true;
        } catch {
          complete = false;
        }
        if (complete) writeSync(fd, "\n", size);
        else ftruncateSync(fd, lineStart);
        return;
      }
    }
  } finally {
    closeSync(fd);
  }
}
