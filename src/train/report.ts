/**
 * `RUN/report.html`: the page people open first on a training run. One self-contained file (inline CSS
 * and SVG, no script, no network) built from `metrics.jsonl`, the newest rollout dumps and `config.yaml`:
 * a header (run, settings, progress), curves grouped as reward / rollouts / policy / optimizer / speed, any
 * other logged metric as a small chart, and the best and worst sequences of the latest steps.
 * Rewritten every step by the trainer and by `recall report RUN_DIR`; written to a temp name and renamed.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { RecallError, errorMessage } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { escapeHtml } from "../util/html.ts";
import { METRICS_FILE, readMetrics, type MetricsRow } from "./metrics.ts";
import { chartHasData, formatPercent, formatValue, renderChart, type ChartSpec, type LineSpec, type Point } from "./report_chart.ts";
import { listRolloutFiles, renderRolloutSummary, summarizeRolloutFiles } from "./report_rollouts.ts";
import { REPORT_CSS } from "./report_style.ts";

export const REPORT_FILE = "report.html";

export interface ReportOptions {
  /** How many of the newest training dumps to show samples from (default 3). */
  rolloutSteps?: number;
  /** The time printed as "generated at" (tests pin it). */
  now?: Date;
}

/** Writes `runDir/report.html` (atomically) and returns its path. */
export function writeReport(runDir: string, opts: ReportOptions = {}): string {
  const html = renderReport(runDir, opts);
  const path = join(runDir, REPORT_FILE);
  writeFileAtomic(path, html);
  return path;
}

const PALETTE = ["#2563eb", "#ea580c", "#059669", "#db2777", "#7c3aed", "#0891b2", "#ca8a04", "#dc2626", "#4b5563", "#65a30d"];
const C = { blue: PALETTE[0]!, orange: PALETTE[1]!, green: PALETTE[2]!, pink: PALETTE[3]!, purple: PALETTE[4]!, cyan: PALETTE[5]!, gold: PALETTE[6]!, red: PALETTE[7]!, gray: PALETTE[8]! };

/** The report's HTML. Throws RecallError when `runDir` has no metrics.jsonl or it is corrupt. */
export function renderReport(runDir: string, opts: ReportOptions = {}): string {
  const metricsPath = join(runDir, METRICS_FILE);
  if (!existsSync(runDir)) throw new RecallError(`${runDir}: no such folder`);
  if (!existsSync(metricsPath)) throw new RecallError(`${runDir}: no ${METRICS_FILE} here (not a training run folder?)`);
  const rows = readMetrics(metricsPath);
  const config = readConfig(runDir);
  const m = new MetricSeries(rows);
  const specs = chartSpecs(m);
  const xs = rows.map((r) => r.step);
  const xDomain: [number, number] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];

  const sections: string[] = [];
  for (const group of specs) {
    const charts = group.charts.filter(chartHasData);
    if (charts.length === 0) continue;
    sections.push(section(group.id, group.title, `<div class="grid">${charts.map((c) => renderChart(c, xDomain)).join("")}</div>`));
  }
  // Anything logged that no chart above asked for (a new metric) still gets a curve.
  const others = m.keys().filter((k) => !m.usedKeys.has(k)).slice(0, 40);
  if (others.length) {
    const small = others.map((k, i): ChartSpec => ({ id: `other-${i}`, title: k, unit: "value", lines: [{ label: k, points: m.get(k), color: C.gray, smooth: true }] }));
    sections.push(section("other", "Other metrics", `<div class="grid">${small.filter(chartHasData).map((c) => renderChart(c, xDomain)).join("")}</div>`));
  }
  // An SFT run (`recall sft`) has no rollouts: no sample section, and the RL charts it lacks are not worth listing.
  const sft = m.keys().includes("train/loss") && !m.keys().includes("critic/score/mean");
  const missing = sft ? [] : specs.flatMap((g) => g.charts).filter((c) => !chartHasData(c)).map((c) => c.title);

  if (!sft) sections.push(section("samples", "Sample rollouts", samplesHtml(rolloutDir(runDir, config), opts.rolloutSteps ?? 3)));
  const nav = [...sections.map((s) => /<section id="([^"]+)"><h2>([^<]+)</.exec(s)).filter((x) => x !== null).map((x) => `<a href="#${x![1]}">${x![2]}</a>`)];

  const name = basename(resolve(runDir));
  const now = opts.now ?? new Date();
  const body = [
    header(name, resolve(runDir), rows, m, config),
    `<nav>${nav.join("")}</nav>`,
    rows.length === 0 ? `<div class="empty">No steps logged yet: ${escapeHtml(METRICS_FILE)} is empty. The curves appear after the first step.</div>` : "",
    ...sections,
    missing.length && rows.length ? `<p class="muted small-note">Not logged in this run: ${missing.map(escapeHtml).join(", ")}.</p>` : "",
    `<footer>Written by <code>recall report</code> at ${escapeHtml(isoMinute(now))} from ${escapeHtml(METRICS_FILE)}${rows.length ? ` (steps ${rows[0]!.step}–${rows[rows.length - 1]!.step})` : ""}. Hover a chart for values.</footer>`,
  ].join("\n");
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${escapeHtml(name)} · recall run report</title><style>${REPORT_CSS}</style></head><body><main>${body}</main></body></html>\n`;
}

/** The series of each metric over steps; remembers which keys charts asked for. */
class MetricSeries {
  readonly usedKeys = new Set<string>();
  constructor(readonly rows: readonly MetricsRow[]) {}
  get(key: string): Point[] {
    this.usedKeys.add(key);
    const out: Point[] = [];
    for (const r of this.rows) if (key in r.metrics) out.push([r.step, r.metrics[key]!]);
    return out;
  }
  keys(): string[] {
    const all = new Set<string>();
    for (const r of this.rows) for (const k of Object.keys(r.metrics)) all.add(k);
    return [...all].sort();
  }
  last(key: string): { step: number; value: number } | undefined {
    for (let i = this.rows.length - 1; i >= 0; i--) {
      const v = this.rows[i]!.metrics[key];
      if (typeof v === "number") return { step: this.rows[i]!.step, value: v };
    }
    return undefined;
  }
  /** Mean of the last `n` finite values. */
  recentMean(key: string, n: number): number | undefined {
    const vs = this.rows.map((r) => r.metrics[key]).filter((v): v is number => typeof v === "number").slice(-n);
    return vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : undefined;
  }
}

interface ChartGroup {
  id: string;
  title: string;
  charts: ChartSpec[];
}

function chartSpecs(m: MetricSeries): ChartGroup[] {
  const line = (key: string, label: string, color: string, extra: Partial<LineSpec> = {}): LineSpec => ({ label, points: m.get(key), color, ...extra });
  const skipped = m.get("train/skipped_step").filter(([, v]) => v === 1).map(([step]) => ({ step, label: "step skipped (non-finite loss or gradients)" }));
  const valKeys = m.keys().filter((k) => k.startsWith("val/test_score/"));
  const rewards = m.get("critic/rewards/mean");
  const scoreMean = m.get("critic/score/mean");
  const scoreAt = new Map(scoreMean);
  // Rewards differ from scores only with a KL penalty in the reward; drawing an identical line twice is noise.
  const rewardsDiffer = rewards.some(([s, v]) => v !== scoreAt.get(s));
  // Validation is timed on its own line, outside the step: a separate series, not a layer of the step.
  const timingKeys = m.keys().filter((k) => k.startsWith("timing_s/") && k !== "timing_s/step" && k !== "timing_s/testing");
  const order = ["gen", "reward", "old_log_prob", "ref", "adv", "update_actor"];
  timingKeys.sort((a, b) => rank(order, a.slice(9)) - rank(order, b.slice(9)) || a.localeCompare(b));
  const stack: LineSpec[] = timingKeys.map((k, i) => ({ label: k.slice(9), points: m.get(k), color: PALETTE[i % PALETTE.length]! }));
  const other = otherTime(m.get("timing_s/step"), stack);
  if (other.some(([, v]) => v !== null && v > 0)) stack.push({ label: "other", points: other, color: "#cbd5e1" });

  return [
    {
      id: "loss", title: "Loss (SFT)", charts: [
        {
          id: "sft_loss", title: "Loss", unit: "nats / token", zeroBased: true, note: "train/loss per step (token mean over trained tokens); val/loss on the held-out set",
          lines: [line("train/loss", "train", C.blue, { smooth: true }), line("val/loss", "held out", C.orange, { markers: true })],
          flags: skipped,
        },
        {
          id: "token_acc", title: "Held-out token accuracy", unit: "share of tokens", zeroBased: true, percent: true, note: "val/token_acc: trained tokens that are the model's argmax",
          lines: [line("val/token_acc", "token accuracy", C.green, { markers: true })],
        },
      ],
    },
    {
      id: "reward", title: "Reward", charts: [
        {
          id: "score", title: "Training score", unit: "score", note: "critic/score per step: batch mean, min–max band",
          lines: [line("critic/score/mean", "mean", C.blue, { smooth: true }), ...(rewardsDiffer ? [{ label: "reward mean (after KL penalty)", points: rewards, color: C.orange, dash: true }] : [])],
          band: { label: "min–max", lo: m.get("critic/score/min"), hi: m.get("critic/score/max"), color: C.blue },
          flags: skipped,
        },
        {
          id: "val", title: "Validation score", unit: "score", note: "val/test_score per data source (greedy); step 0 = before training",
          lines: valKeys.map((k, i) => line(k, k.slice("val/test_score/".length), PALETTE[(i + 2) % PALETTE.length]!, { markers: true })),
        },
        {
          id: "advantages", title: "Advantages", unit: "advantage", note: "critic/advantages: mean, min–max band",
          lines: [line("critic/advantages/mean", "mean", C.purple)],
          band: { label: "min–max", lo: m.get("critic/advantages/min"), hi: m.get("critic/advantages/max"), color: C.purple },
        },
      ],
    },
    {
      id: "rollouts", title: "Rollouts", charts: [
        {
          id: "length", title: "Response length", unit: "tokens", zeroBased: true, note: "response_length per sequence; prompt length dashed",
          lines: [line("response_length/mean", "mean", C.blue, { smooth: true }), line("response_length/max", "max", C.orange, { smooth: true }), line("prompt_length/mean", "prompt mean", C.gray, { dash: true })],
        },
        {
          id: "clip", title: "Responses cut at max length", unit: "share of responses", zeroBased: true, percent: true, note: "response_length/clip_ratio",
          lines: [line("response_length/clip_ratio", "clip ratio", C.red, { smooth: true })],
        },
        {
          id: "tools", title: "Turns and tool calls", unit: "per sequence", zeroBased: true, note: "num_turns/mean, tool_calls/mean",
          lines: [line("num_turns/mean", "turns", C.green, { smooth: true }), line("tool_calls/mean", "tool calls", C.cyan, { smooth: true })],
        },
        {
          id: "failures", title: "Format and tool-call failures", unit: "share of sequences", zeroBased: true, percent: true,
          lines: [line("format_failure_rate", "format failure", C.red, { smooth: true }), line("tool_call_parse_failure_rate", "tool-call parse failure", C.gold, { smooth: true })],
        },
      ],
    },
    {
      id: "policy", title: "Policy", charts: [
        { id: "entropy", title: "Entropy", unit: "nats / token", note: "actor/entropy over sampled tokens", lines: [line("actor/entropy", "entropy", C.purple, { smooth: true })] },
        {
          id: "kl", title: "KL divergence", unit: "nats / token", note: "ppo_kl: to the rollout policy; kl_loss: to the reference",
          lines: [line("actor/ppo_kl", "ppo_kl", C.blue, { smooth: true }), line("actor/kl_loss", "kl_loss", C.pink, { smooth: true })],
        },
        { id: "clipfrac", title: "Clip fraction", unit: "share of tokens", zeroBased: true, percent: true, note: "actor/pg_clipfrac, pg_clipfrac_lower", lines: [line("actor/pg_clipfrac", "clipped", C.orange, { smooth: true }), line("actor/pg_clipfrac_lower", "dual-clip (lower)", C.purple, { smooth: true })] },
        { id: "pg_loss", title: "Policy loss", unit: "loss", note: "actor/pg_loss", lines: [line("actor/pg_loss", "pg_loss", C.gray, { smooth: true })] },
      ],
    },
    {
      id: "optimizer", title: "Optimizer", charts: [
        { id: "grad_norm", title: "Gradient norm", unit: "L2 norm", zeroBased: true, note: "actor/grad_norm, before clipping", lines: [line("actor/grad_norm", "grad norm", C.red, { smooth: true }), line("train/grad_norm", "grad norm (SFT)", C.pink, { smooth: true })], flags: skipped },
        { id: "lr", title: "Learning rate", unit: "learning rate", zeroBased: true, note: "actor/lr", lines: [line("actor/lr", "lr", C.green), line("train/lr", "lr (SFT)", C.cyan)] },
      ],
    },
    {
      id: "speed", title: "Speed", charts: [
        { id: "throughput", title: "Throughput", unit: "tokens / s", zeroBased: true, note: "perf/throughput", lines: [line("perf/throughput", "tokens/s", C.cyan, { smooth: true })] },
        {
          id: "timing", title: "Step time", unit: "seconds", zeroBased: true, note: "timing_s per phase, stacked; line: whole step; dashed: validation run",
          lines: [line("timing_s/step", "step", "var(--ink)"), line("timing_s/testing", "validation", "var(--muted)", { dash: true, markers: true })], stack,
        },
      ],
    },
  ];
}

function rank(order: string[], name: string): number {
  const i = order.indexOf(name);
  return i < 0 ? order.length : i;
}

/** Step time not covered by the timed phases (data loading, logging, checkpoints …). */
function otherTime(step: Point[], parts: LineSpec[]): Point[] {
  const maps = parts.map((p) => new Map(p.points));
  return step.map(([s, total]) => {
    if (total === null) return [s, null];
    const sum = maps.reduce((a, mp) => a + (mp.get(s) ?? 0), 0);
    return [s, Math.max(0, total - sum)];
  });
}

function section(id: string, title: string, inner: string): string {
  return `<section id="${id}"><h2>${escapeHtml(title)}</h2>${inner}</section>`;
}

type Config = { tree?: Record<string, unknown>; problem?: string };

function readConfig(runDir: string): Config {
  const path = join(runDir, "config.yaml");
  if (!existsSync(path)) return {};
  try {
    const tree = parseYaml(readFileSync(path, "utf8")) as unknown;
    return typeof tree === "object" && tree !== null ? { tree: tree as Record<string, unknown> } : { problem: `${path}: not a YAML mapping` };
  } catch (e) {
    return { problem: `${path}: ${errorMessage(e).split("\n")[0]}` };
  }
}

/** A value by dotted path, through nested mappings or flat dotted keys. */
function lookup(tree: Record<string, unknown> | undefined, path: string): unknown {
  if (!tree) return undefined;
  if (path in tree) return tree[path];
  const dot = path.indexOf(".");
  for (let i = dot; i >= 0; i = path.indexOf(".", i + 1)) {
    const child = tree[path.slice(0, i)];
    if (typeof child === "object" && child !== null && !Array.isArray(child)) {
      const v = lookup(child as Record<string, unknown>, path.slice(i + 1));
      if (v !== undefined) return v;
    }
  }
  return undefined;
}

const HIGHLIGHTS: [label: string, paths: string[]][] = [
  ["model", ["actor_rollout_ref.model.path", "model.partial_pretrain"]],
  ["algorithm", ["algorithm.adv_estimator"]],
  ["lr", ["actor_rollout_ref.actor.optim.lr", "optim.lr"]],
  ["batch", ["data.train_batch_size"]],
  ["n", ["actor_rollout_ref.rollout.n"]],
  ["mini-batch", ["actor_rollout_ref.actor.ppo_mini_batch_size"]],
  ["max response", ["data.max_response_length"]],
  ["max turns", ["actor_rollout_ref.rollout.max_turns", "actor_rollout_ref.rollout.multi_turn.max_turns", "max_turns"]],
  ["KL coef", ["actor_rollout_ref.actor.kl_loss_coef"]],
  ["KL type", ["actor_rollout_ref.actor.kl_loss_type"]],
  ["entropy coef", ["actor_rollout_ref.actor.entropy_coeff"]],
  ["epochs", ["trainer.total_epochs"]],
  ["train files", ["data.train_files"]],
];

function header(name: string, dir: string, rows: readonly MetricsRow[], m: MetricSeries, config: Config): string {
  const tree = config.tree;
  const project = lookup(tree, "trainer.project_name"), experiment = lookup(tree, "trainer.experiment_name");
  const sub = [project, experiment].filter((x) => typeof x === "string" && x !== "").map((x) => escapeHtml(String(x))).join(" / ");
  // The KL coefficient and type mean nothing when the KL loss is off (verl keeps their defaults in the config).
  const klOff = lookup(tree, "actor_rollout_ref.actor.use_kl_loss") === false;
  const chips = HIGHLIGHTS.map(([label, paths]) => {
    if (klOff && label === "KL type") return "";
    const v = klOff && label === "KL coef" ? "off" : paths.map((p) => lookup(tree, p)).find((x) => x !== undefined && x !== null);
    if (v === undefined) return "";
    const text = Array.isArray(v) ? v.map(String).join(", ") : typeof v === "number" ? formatValue(v) : typeof v === "object" ? JSON.stringify(v) : String(v);
    return `<span class="cfg"><span>${escapeHtml(label)}</span>${escapeHtml(text.length > 90 ? `…${text.slice(-88)}` : text)}</span>`;
  }).join("");

  const trainSteps = rows.filter((r) => Object.keys(r.metrics).some((k) => !k.startsWith("val/"))).map((r) => r.step);
  const done = trainSteps.length ? Math.max(...trainSteps) : 0;
  const totalRaw = lookup(tree, "trainer.total_training_steps");
  const total = typeof totalRaw === "number" && totalRaw > 0 ? totalRaw : undefined;
  const times = rows.map((r) => (r.time ? Date.parse(r.time) : NaN)).filter((t) => Number.isFinite(t));
  const first = times.length ? Math.min(...times) : undefined, last = times.length ? Math.max(...times) : undefined;
  const stepTime = m.recentMean("timing_s/step", 10);
  const eta = total !== undefined && stepTime !== undefined && done < total ? (total - done) * stepTime : undefined;
  const skipped = rows.filter((r) => r.metrics["train/skipped_step"] === 1).length;

  const progress = total !== undefined
    ? `<div class="progress"><div style="width:${Math.min(100, (100 * done) / total).toFixed(1)}%"></div></div><span>step <b>${done}</b> of ${total}${eta !== undefined ? ` · about ${duration(eta)} left` : ""}</span>`
    : `<span>${rows.length ? `step <b>${done}</b>` : "no steps yet"}</span>`;
  const when = [
    last !== undefined ? `last update <b>${escapeHtml(isoMinute(new Date(last)))}</b>` : "",
    first !== undefined && last !== undefined && last > first ? `running for ${duration((last - first) / 1000)}` : "",
  ].filter(Boolean).join(" · ");

  const tiles: string[] = [];
  const tile = (label: string, value: string, detail = "", cls = "") => tiles.push(`<div class="tile${cls}"><span>${escapeHtml(label)}</span><b>${escapeHtml(value)}</b><small>${escapeHtml(detail)}</small></div>`);
  const score = m.last("critic/score/mean");
  if (score) {
    const recent = m.recentMean("critic/score/mean", 10)!;
    const firstScores = rows.map((r) => r.metrics["critic/score/mean"]).filter((v): v is number => typeof v === "number").slice(0, 10);
    const start = firstScores.reduce((a, b) => a + b, 0) / firstScores.length;
    tile("train score", formatValue(score.value), `last 10: ${formatValue(recent)} (start ${formatValue(start)})`);
  }
  for (const k of m.keys().filter((k) => k.startsWith("val/test_score/")).slice(0, 3)) {
    const v = m.last(k)!;
    if (v) tile(`val · ${k.slice("val/test_score/".length)}`, formatValue(v.value), `at step ${v.step}`);
  }
  const len = m.last("response_length/mean");
  if (len) {
    const clip = m.last("response_length/clip_ratio");
    tile("response length", formatValue(len.value), `tokens (mean)${clip ? ` · ${formatPercent(clip.value)} cut` : ""}`);
  }
  const turns = m.last("tool_calls/mean");
  const turnsMean = m.last("num_turns/mean");
  if (turns) tile("tool calls / seq", formatValue(turns.value), turnsMean ? `turns / seq: ${formatValue(turnsMean.value)}` : "");
  if (stepTime !== undefined) tile("time / step", duration(stepTime), "mean of last 10");
  const tput = m.last("perf/throughput");
  if (tput) tile("throughput", formatValue(tput.value), "tokens / s");
  if (skipped > 0) tile("skipped steps", String(skipped), "non-finite loss or gradients", " alert");

  return `<header><div class="title"><h1>${escapeHtml(name)}</h1>${sub ? `<span class="sub">${sub}</span>` : ""}</div>` +
    `<div class="path">${escapeHtml(dir)}</div>` +
    `<div class="status">${progress}${when ? `<span class="when">${when}</span>` : ""}</div>` +
    (chips ? `<div class="cfgs">${chips}</div>` : "") +
    (config.problem ? `<div class="warn">config.yaml not shown: ${escapeHtml(config.problem)}</div>` : "") +
    (tiles.length ? `<div class="tiles">${tiles.join("")}</div>` : "") + `</header>`;
}

/** Where the dumps are: `trainer.rollout_save_path` when set and present (relative to where the trainer ran), else `RUN/rollout`. */
function rolloutDir(runDir: string, config: Config): string {
  const configured = lookup(config.tree, "trainer.rollout_save_path");
  if (typeof configured === "string" && configured !== "" && existsSync(configured)) return configured;
  return join(runDir, "rollout");
}

function samplesHtml(dir: string, keep: number): string {
  const files = listRolloutFiles(dir);
  if (files.length === 0) return `<p class="muted">No rollout dumps in <code>${escapeHtml(dir)}</code> yet.</p>`;
  const train = files.filter((f) => f.split === "train");
  const val = files.filter((f) => f.split === "val");
  const shown = [...train.slice(-keep).reverse(), ...val.slice(-1)];
  const note = `<p class="muted">${train.length} training and ${val.length} validation dumps in <code>${escapeHtml(dir)}</code>; the newest ${Math.min(keep, train.length)} training and the newest validation dump are shown, each with its best- and worst-scored sequence.</p>`;
  return note + summarizeRolloutFiles(shown).map((summary, i) => renderRolloutSummary(summary, i === 0)).join("");
}

function isoMinute(d: Date): string {
  return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** Seconds as "42 s", "3 min 20 s", "2 h 05 min", "1 d 3 h". */
function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return seconds < 10 ? `${Number(seconds.toPrecision(2))} s` : `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

