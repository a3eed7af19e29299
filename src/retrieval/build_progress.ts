/**
 * Renders index-build progress: one self-overwriting line on a terminal, a log line every
 * `logEverySeconds` otherwise (CI logs, files).
 */
import { consola } from "consola";
import type { BuildProgress } from "./index_builder.ts";

export function formatDuration(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return "?";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

export function formatProgress(p: BuildProgress): string {
  const pct = `${(100 * p.fraction).toFixed(1)}%`;
  const width = 24, fill = Math.round(width * Math.min(1, p.fraction));
  const bar = "█".repeat(fill) + "░".repeat(width - fill);
  if (p.phase === "invert") {
    const mb = (p.bytesRead / 2 ** 20).toFixed(0), total = (p.totalBytes / 2 ** 20).toFixed(0);
    return `indexing ${bar} ${pct}  ${p.docs.toLocaleString("en-US")} docs  ${Math.round(p.docsPerSecond).toLocaleString("en-US")} docs/s  ${mb}/${total} MiB  ${p.runs} runs  ETA ${formatDuration(p.etaSeconds)}`;
  }
  return `merging  ${bar} ${pct}  ${p.terms.toLocaleString("en-US")} terms from ${p.runs} runs  ETA ${formatDuration(p.etaSeconds)}`;
}

export function progressPrinter(logEverySeconds = 10): (p: BuildProgress) => void {
  const tty = process.stderr.isTTY === true;
  let lastLog = 0;
  let lastPhase = "";
  return (p) => {
    const line = formatProgress(p);
    if (tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      if (p.done) process.stderr.write("\n");
      return;
    }
    const now = performance.now() / 1000;
    if (p.done || p.phase !== lastPhase || now - lastLog >= logEverySeconds) {
      consola.info(line);
      lastLog = now;
      lastPhase = p.phase;
    }
  };
}
