/**
 * Draws README's demo figure: the GRPO curves (mean train reward, tool calls per rollout) of finished `recall demo`
 * runs, one line per run, as one standalone SVG (the run report's chart code, with its styles inlined so that a
 * Markdown viewer shows it as an image).
 *
 *   ./node_modules/.bin/bun scripts/demo_curves.ts --out docs/demo_curves.svg runs/demo-0 runs/demo-1 runs/demo-2
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { renderChart, type LineSpec, type Point } from "../src/train/report_chart.ts";
import { writeFileAtomic } from "../src/util/fs.ts";
import { escapeHtml } from "../src/util/html.ts";

const args = process.argv.slice(2);
const outAt = args.indexOf("--out");
if (outAt < 0 || args.length < outAt + 3) throw new Error("usage: bun scripts/demo_curves.ts --out FILE.svg RUN_DIR [RUN_DIR ...]");
const out = args[outAt + 1]!;
const runs = args.filter((_, i) => i !== outAt && i !== outAt + 1);
const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c"];

interface Run {
  label: string;
  score: Point[];
  toolCalls: Point[];
}

function readRun(dir: string): Run {
  const marker = JSON.parse(readFileSync(join(dir, "demo.json"), "utf8")) as { seed: number; quick: boolean };
  const score: Point[] = [], toolCalls: Point[] = [];
  for (const line of readFileSync(join(dir, "checkpoints/demo/grpo/metrics.jsonl"), "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const m = JSON.parse(line) as Record<string, number>;
    if (typeof m["critic/score/mean"] !== "number") continue;
    score.push([m.step!, m["critic/score/mean"]!]);
    toolCalls.push([m.step!, m["tool_calls/mean"] ?? 0]);
  }
  return { label: `seed ${marker.seed}${marker.quick ? " (quick)" : ""}`, score, toolCalls };
}

const data = runs.map(readRun);
const steps = data.flatMap((r) => r.score.map(([s]) => s));
const xDomain: [number, number] = [Math.min(...steps), Math.max(...steps)];
const lines = (pick: (r: Run) => Point[]): LineSpec[] => data.map((r, i) => ({ label: r.label, points: pick(r), color: COLORS[i % COLORS.length]! }));
const panels = [
  { title: "mean train reward (critic/score/mean)", chart: renderChart({ id: "score", title: "reward", unit: "reward", lines: lines((r) => r.score), zeroBased: true }, xDomain) },
  { title: "tool calls per rollout (tool_calls/mean)", chart: renderChart({ id: "tools", title: "tool calls", unit: "calls", lines: lines((r) => r.toolCalls), zeroBased: true }, xDomain) },
];

// Each chart's own <svg> (viewBox 640×250), placed side by side under a title and a shared legend.
const W = 640, H = 250, TOP = 56;
const body = panels.map((p, i) => {
  const svg = /<svg viewBox="0 0 \d+ \d+"[^>]*>([\s\S]*)<\/svg>/.exec(p.chart)?.[1];
  if (svg === undefined) throw new Error("renderChart's output has no <svg>");
  return `<text class="title" x="${i * W + 58}" y="${TOP - 8}">${escapeHtml(p.title)}</text><svg x="${i * W}" y="${TOP}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${svg}</svg>`;
});
const legend = data.map((r, i) => `<rect x="${58 + i * 130}" y="12" width="14" height="4" rx="2" fill="${COLORS[i % COLORS.length]}"/><text class="key" x="${78 + i * 130}" y="18">${escapeHtml(r.label)}</text>`);
const style = [
  "text{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px;fill:#6b7280}",
  ".title{font-size:13px;font-weight:600;fill:#111827}.key{font-size:12px;fill:#374151}.label{font-size:11.5px}",
  ".grid{stroke:#e5e7eb;stroke-width:1}.axis{stroke:#9ca3af;stroke-width:1}",
  ".line{fill:none;stroke-width:1.9;stroke-linejoin:round;stroke-linecap:round}.hv{fill:transparent}",
].join("");
const doc =
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${2 * W} ${TOP + H}" width="${2 * W}" height="${TOP + H}">` +
  `<style>${style}</style><rect width="100%" height="100%" fill="#ffffff"/>${legend.join("")}${body.join("")}</svg>\n`;
writeFileAtomic(out, doc);
console.log(`${out}: ${data.length} runs, steps ${xDomain[0]}–${xDomain[1]}`);
