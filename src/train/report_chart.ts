/**
 * Line charts as inline SVG for the run report: axes with "nice" ticks, a grid, lines (with gaps where a
 * value was not finite), a min–max band, stacked areas, optional EMA smoothing, and hover read-outs
 * through SVG <title> (no script). Long series are reduced to the min and max of each pixel-wide bin,
 * so spikes survive and a 1,000-step run draws about as fast and small as a 100-step one.
 */
import { escapeHtml } from "../util/html.ts";

/** (step, value); a null value is a step whose value was not finite. */
export type Point = readonly [step: number, value: number | null];

export interface LineSpec {
  label: string;
  points: readonly Point[];
  /** A CSS colour (a var() too: it is set through style, so themes apply). */
  color: string;
  dash?: boolean;
  /** Dots on every point while the series is sparse (validation). */
  markers?: boolean;
  /** Draw the raw line faint and an exponential moving average over it (noisy per-step metrics). */
  smooth?: boolean;
}

export interface BandSpec {
  label: string;
  lo: readonly Point[];
  hi: readonly Point[];
  color: string;
}

export interface ChartSpec {
  id: string;
  title: string;
  /** The y axis label, with the unit. */
  unit: string;
  note?: string;
  lines: LineSpec[];
  band?: BandSpec;
  /** Areas stacked bottom-up in order (a missing value counts as 0). */
  stack?: LineSpec[];
  /** Keep 0 inside the y range (counts, lengths, times). */
  zeroBased?: boolean;
  /** Values are fractions, shown as percentages. */
  percent?: boolean;
  /** Steps marked on the x axis (e.g. skipped steps), with what the mark means. */
  flags?: { step: number; label: string }[];
}

const W = 640, H = 250;
const M = { left: 58, right: 14, top: 12, bottom: 32 };
const PH = H - M.top - M.bottom;
/** Above this many points a line is reduced to min/max per bin (two points per bin). */
const MAX_POINTS = 320;
const HOVER_BINS = 140;
const SMOOTH_MIN_POINTS = 20;
/** Past this many points dots crowd into a thick line: draw the line alone. */
const MAX_MARKERS = 60;

/** Whether the chart has any finite value to draw. */
export function chartHasData(spec: ChartSpec): boolean {
  const any = (ps: readonly Point[]) => ps.some(([, v]) => v !== null);
  return spec.lines.some((l) => any(l.points)) || (spec.band !== undefined && any(spec.band.hi)) || (spec.stack ?? []).some((s) => any(s.points));
}

/** The chart as an HTML <figure> holding its legend and SVG; `xDomain` is shared by all charts of a report. */
export function renderChart(spec: ChartSpec, xDomain: readonly [number, number]): string {
  const stacked = stackTotals(spec.stack ?? []);
  const ys: number[] = [];
  for (const l of spec.lines) for (const [, v] of l.points) if (v !== null) ys.push(v);
  if (spec.band) for (const [, v] of [...spec.band.lo, ...spec.band.hi]) if (v !== null) ys.push(v);
  for (const [, top] of stacked.totals) ys.push(top);
  if (spec.zeroBased || spec.stack) ys.push(0);
  let lo = Infinity, hi = -Infinity;
  for (const v of ys) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  // A flat non-negative series sits on the floor of its range (0 for zero-based charts) rather than mid-chart.
  if (lo === hi && lo >= 0 && (lo === 0 || spec.zeroBased)) [lo, hi] = [0, lo === 0 ? 1 : lo * 1.25];
  const [y0, y1, yStep] = niceDomain(lo, hi);
  const maxAbs = Math.max(Math.abs(y0), Math.abs(y1));
  const fmtTick = (v: number) => (spec.percent ? formatPercentTick(v, yStep, maxAbs) : formatTick(v, yStep, maxAbs));
  const ticks: { v: number; label: string }[] = [];
  for (let k = 0; y0 + k * yStep <= y1 + yStep / 2; k++) {
    const v = tidy(y0 + k * yStep);
    ticks.push({ v, label: fmtTick(v) });
  }
  // Room on the left for the widest tick label and the rotated axis title.
  const left = Math.max(M.left, Math.round(Math.max(...ticks.map((t) => t.label.length)) * 6.4 + 28));
  const PW = W - left - M.right;
  let [x0, x1] = xDomain;
  if (x1 <= x0) [x0, x1] = [x0 - 1, x1 + 1];
  const sx = (s: number) => left + ((s - x0) / (x1 - x0)) * PW;
  const sy = (v: number) => M.top + PH - ((v - y0) / (y1 - y0)) * PH;

  const parts: string[] = [];
  // Grid and y ticks.
  for (const { v, label } of ticks) {
    const y = r(sy(v));
    parts.push(`<line class="grid" x1="${left}" x2="${W - M.right}" y1="${y}" y2="${y}"/>`);
    parts.push(`<text class="tick" x="${left - 6}" y="${y + 3.5}" text-anchor="end">${escapeHtml(label)}</text>`);
  }
  // x ticks (integer steps).
  const xStep = Math.max(1, niceStep((x1 - x0) / 7));
  for (let s = Math.ceil(x0 / xStep) * xStep; s <= x1; s += xStep) {
    const x = r(sx(s));
    parts.push(`<line class="grid vgrid" x1="${x}" x2="${x}" y1="${M.top}" y2="${M.top + PH}"/>`);
    parts.push(`<text class="tick" x="${x}" y="${M.top + PH + 15}" text-anchor="middle">${formatTick(s, xStep)}</text>`);
  }
  parts.push(`<line class="axis" x1="${left}" x2="${W - M.right}" y1="${M.top + PH}" y2="${M.top + PH}"/>`);
  parts.push(`<line class="axis" x1="${left}" x2="${left}" y1="${M.top}" y2="${M.top + PH}"/>`);
  parts.push(`<text class="label" x="${left + PW / 2}" y="${H - 3}" text-anchor="middle">step</text>`);
  parts.push(`<text class="label" transform="translate(13 ${M.top + PH / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(spec.unit)}</text>`);

  // Stacked areas.
  if (stacked.layers.length > 0) {
    const bins = binMeans(stacked.steps, stacked.layers);
    let below = bins.steps.map(() => 0);
    stacked.layers.forEach((_, k) => {
      const above = below.map((b, i) => b + bins.values[k]![i]!);
      const top = bins.steps.map((s, i) => `${r(sx(s))},${r(sy(above[i]!))}`);
      const bottom = bins.steps.map((s, i) => `${r(sx(s))},${r(sy(below[i]!))}`).reverse();
      parts.push(`<polygon class="area" style="fill:${spec.stack![k]!.color}" points="${[...top, ...bottom].join(" ")}"/>`);
      below = above;
    });
  }
  // Band.
  if (spec.band) {
    for (const seg of bandSegments(spec.band)) {
      const top = seg.map(([s, , hi]) => `${r(sx(s))},${r(sy(hi))}`);
      const bottom = seg.map(([s, lo]) => `${r(sx(s))},${r(sy(lo))}`).reverse();
      parts.push(`<polygon class="band" style="fill:${spec.band.color}" points="${[...top, ...bottom].join(" ")}"/>`);
    }
  }
  // Lines.
  for (const line of spec.lines) {
    const finite = line.points.filter(([, v]) => v !== null).length;
    const smooth = line.smooth === true && finite >= SMOOTH_MIN_POINTS;
    const dash = line.dash ? ` stroke-dasharray="5 4"` : "";
    for (const seg of segments(line.points)) {
      const pts = reduce(seg);
      parts.push(`<path class="line${smooth ? " raw" : ""}" style="stroke:${line.color}"${dash} d="${pathData(pts, sx, sy)}"/>`);
      if ((line.markers && finite <= MAX_MARKERS) || seg.length === 1) {
        for (const [s, v] of pts) parts.push(`<circle class="dot" cx="${r(sx(s))}" cy="${r(sy(v))}" r="2.6" style="fill:${line.color}"/>`);
      }
    }
    if (smooth) {
      for (const seg of segments(ema(line.points))) parts.push(`<path class="line" style="stroke:${line.color}"${dash} d="${pathData(reduce(seg), sx, sy)}"/>`);
    }
  }
  // Marks: flagged steps and non-finite values, on the x axis.
  const marks = [...(spec.flags ?? [])];
  for (const line of spec.lines) for (const [s, v] of line.points) if (v === null) marks.push({ step: s, label: `${line.label} was not finite` });
  for (const m of marks.slice(0, 200)) {
    const x = r(sx(m.step)), y = M.top + PH;
    parts.push(`<path class="flag" d="M${x} ${y - 7}L${r(x - 4)} ${y}L${r(x + 4)} ${y}Z"><title>${escapeHtml(`step ${m.step}: ${m.label}`)}</title></path>`);
  }
  parts.push(hoverStrips(spec, x0, x1, sx, left));

  const legend = legendHtml(spec);
  const note = spec.note ? `<span class="note">${escapeHtml(spec.note)}</span>` : "";
  return `<figure class="card chart" id="chart-${escapeHtml(spec.id)}"><figcaption><h3>${escapeHtml(spec.title)}</h3>${note}</figcaption>` +
    `<div class="legend">${legend}</div>` +
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(spec.title)}" xmlns="http://www.w3.org/2000/svg">${parts.join("")}</svg></figure>`;
}

function legendHtml(spec: ChartSpec): string {
  const fmt = (v: number) => (spec.percent ? formatPercent(v) : formatValue(v));
  const key = (label: string, color: string, last: number | undefined, cls = "") =>
    `<span class="key"><i class="sw${cls}" style="background:${color}"></i>${escapeHtml(label)}${last === undefined ? "" : ` <b>${escapeHtml(fmt(last))}</b>`}</span>`;
  const keys: string[] = [];
  for (const l of spec.lines) keys.push(key(l.label, l.color, lastValue(l.points), l.dash ? " dash" : ""));
  if (spec.band) keys.push(`<span class="key"><i class="sw band" style="background:${spec.band.color}"></i>${escapeHtml(spec.band.label)}</span>`);
  for (const s of spec.stack ?? []) keys.push(key(s.label, s.color, lastValue(s.points), " area"));
  if (spec.lines.some((l) => l.smooth && l.points.filter(([, v]) => v !== null).length >= SMOOTH_MIN_POINTS)) keys.push(`<span class="key hint">faint: per step · bold: EMA</span>`);
  return keys.join("");
}

/** Transparent full-height strips, one per bin of steps, whose <title> lists every series' value there. */
function hoverStrips(spec: ChartSpec, x0: number, x1: number, sx: (s: number) => number, left: number): string {
  const fmt = (v: number) => (spec.percent ? formatPercent(v) : formatValue(v));
  const series: { label: string; points: readonly Point[]; agg: "mean" | "min" | "max" }[] = [
    ...spec.lines.map((l) => ({ label: l.label, points: l.points, agg: "mean" as const })),
    ...(spec.band ? [{ label: `${spec.band.label} (max)`, points: spec.band.hi, agg: "max" as const }, { label: `${spec.band.label} (min)`, points: spec.band.lo, agg: "min" as const }] : []),
    ...(spec.stack ?? []).map((s) => ({ label: s.label, points: s.points, agg: "mean" as const })),
  ];
  const steps = new Set<number>();
  for (const s of series) for (const [step] of s.points) steps.add(step);
  // Bins tile [x0 - ½, x1 + ½]: while there are few steps, each step is the centre of its own strip.
  const start = x0 - 0.5, span = x1 - x0 + 1;
  const bins = Math.max(1, Math.min(HOVER_BINS, Math.round(span)));
  const width = span / bins;
  const binOf = (step: number) => Math.min(bins - 1, Math.max(0, Math.floor((step - start) / width)));
  // Per bin: the steps it holds and each series' values in it.
  const cells: { lo: number; hi: number; values: number[][]; nulls: number[] }[] = Array.from({ length: bins }, () => ({ lo: Infinity, hi: -Infinity, values: series.map(() => []), nulls: series.map(() => 0) }));
  series.forEach((s, k) => {
    for (const [step, v] of s.points) {
      const c = cells[binOf(step)]!;
      c.lo = Math.min(c.lo, step);
      c.hi = Math.max(c.hi, step);
      if (v === null) c.nulls[k]!++;
      else c.values[k]!.push(v);
    }
  });
  const out: string[] = [];
  cells.forEach((c, b) => {
    if (c.lo === Infinity) return;
    const head = c.lo === c.hi ? `step ${c.lo}` : `steps ${c.lo}–${c.hi} (mean)`;
    const lines = [head];
    series.forEach((s, k) => {
      const vs = c.values[k]!;
      if (vs.length > 0) {
        const v = s.agg === "max" ? Math.max(...vs) : s.agg === "min" ? Math.min(...vs) : vs.reduce((a, x) => a + x, 0) / vs.length;
        lines.push(`${s.label}: ${fmt(v)}`);
      } else if (c.nulls[k]! > 0) lines.push(`${s.label}: not finite`);
    });
    const xa = Math.max(left, sx(start + b * width)), xb = Math.min(W - M.right, sx(start + (b + 1) * width));
    out.push(`<rect class="hv" x="${r(xa)}" y="${M.top}" width="${r(Math.max(1, xb - xa))}" height="${PH}"><title>${escapeHtml(lines.join("\n"))}</title></rect>`);
  });
  return `<g>${out.join("")}</g>`;
}

/** Runs of consecutive finite points (a null breaks the line). */
function segments(points: readonly Point[]): [number, number][][] {
  const out: [number, number][][] = [];
  let cur: [number, number][] = [];
  for (const [s, v] of [...points].sort((a, b) => a[0] - b[0])) {
    if (v === null) {
      if (cur.length) out.push(cur);
      cur = [];
    } else cur.push([s, v]);
  }
  if (cur.length) out.push(cur);
  return out;
}

/** At most MAX_POINTS points: each bin keeps its min and max in step order, so peaks and dips stay visible. */
function reduce(seg: [number, number][]): [number, number][] {
  if (seg.length <= MAX_POINTS) return seg;
  const bins = MAX_POINTS / 2;
  const out: [number, number][] = [];
  for (let b = 0; b < bins; b++) {
    const part = seg.slice(Math.floor((b * seg.length) / bins), Math.floor(((b + 1) * seg.length) / bins));
    if (part.length === 0) continue;
    let lo = part[0]!, hi = part[0]!;
    for (const p of part) {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
    if (lo === hi) out.push(lo);
    else out.push(...(lo[0] < hi[0] ? [lo, hi] : [hi, lo]));
  }
  return out;
}

/** Exponential moving average with TensorBoard's debiasing; the weight grows with the series length. */
function ema(points: readonly Point[]): Point[] {
  const n = points.length;
  const w = 1 - 1 / Math.max(1, Math.min(20, n / 15));
  let acc = 0, count = 0;
  return [...points].sort((a, b) => a[0] - b[0]).map(([s, v]) => {
    if (v === null) return [s, null] as const;
    acc = acc * w + (1 - w) * v;
    count++;
    return [s, w === 0 ? v : acc / (1 - Math.pow(w, count))] as const;
  });
}

function pathData(pts: [number, number][], sx: (s: number) => number, sy: (v: number) => number): string {
  return pts.map(([s, v], i) => `${i === 0 ? "M" : "L"}${r(sx(s))} ${r(sy(v))}`).join("");
}

/** Runs of steps where both band edges are finite, as (step, lo, hi), binned like lines. */
function bandSegments(band: BandSpec): [number, number, number][][] {
  const lo = new Map(band.lo.map(([s, v]) => [s, v]));
  const rows = band.hi.map(([s, hi]) => [s, lo.get(s) ?? null, hi] as const).sort((a, b) => a[0] - b[0]);
  const out: [number, number, number][][] = [];
  let cur: [number, number, number][] = [];
  for (const [s, l, h] of rows) {
    if (l === null || h === null) {
      if (cur.length) out.push(cur);
      cur = [];
    } else cur.push([s, l, h]);
  }
  if (cur.length) out.push(cur);
  return out.map((seg) => {
    if (seg.length <= MAX_POINTS) return seg;
    const bins = MAX_POINTS;
    const binned: [number, number, number][] = [];
    for (let b = 0; b < bins; b++) {
      const part = seg.slice(Math.floor((b * seg.length) / bins), Math.floor(((b + 1) * seg.length) / bins));
      if (part.length === 0) continue;
      binned.push([part[Math.floor(part.length / 2)]![0], Math.min(...part.map((p) => p[1])), Math.max(...part.map((p) => p[2]))]);
    }
    return binned;
  });
}

/** Steps with any stacked value, each layer's value there (missing or non-finite = 0), and the totals. */
function stackTotals(stack: readonly LineSpec[]): { steps: number[]; layers: number[][]; totals: [number, number][] } {
  const steps = [...new Set(stack.flatMap((s) => s.points.filter(([, v]) => v !== null).map(([step]) => step)))].sort((a, b) => a - b);
  if (steps.length === 0) return { steps: [], layers: [], totals: [] };
  const layers = stack.map((s) => {
    const m = new Map(s.points.map(([step, v]) => [step, v]));
    return steps.map((step) => m.get(step) ?? 0);
  });
  const totals = steps.map((step, i) => [step, layers.reduce((a, l) => a + l[i]!, 0)] as [number, number]);
  return { steps, layers, totals };
}

/** Means of each layer over at most MAX_POINTS bins of steps. */
function binMeans(steps: number[], layers: number[][]): { steps: number[]; values: number[][] } {
  if (steps.length <= MAX_POINTS) return { steps, values: layers };
  const bins = MAX_POINTS;
  const outSteps: number[] = [];
  const values = layers.map(() => [] as number[]);
  for (let b = 0; b < bins; b++) {
    const a = Math.floor((b * steps.length) / bins), z = Math.floor(((b + 1) * steps.length) / bins);
    if (z <= a) continue;
    outSteps.push(steps[Math.floor((a + z) / 2)]!);
    layers.forEach((l, k) => values[k]!.push(l.slice(a, z).reduce((s, v) => s + v, 0) / (z - a)));
  }
  return { steps: outSteps, values };
}

function lastValue(points: readonly Point[]): number | undefined {
  let best: Point | undefined;
  for (const p of points) if (p[1] !== null && (best === undefined || p[0] >= best[0])) best = p;
  return best?.[1] ?? undefined;
}

/** 1, 2 or 5 times a power of ten, near `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

/** A y range widened to whole ticks (about five), and the tick step. */
export function niceDomain(lo: number, hi: number): [number, number, number] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1, 0.2];
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / 5);
  return [tidy(Math.floor(lo / step + 1e-9) * step), tidy(Math.ceil(hi / step - 1e-9) * step), step];
}

/**
 * A tick label with as many decimals as the tick step needs: exponent form when the whole axis is below 1e-3
 * (`maxAbs`, the largest |tick|), k/M above 1e4.
 */
export function formatTick(v: number, step: number, maxAbs = Math.abs(v)): string {
  if (Math.abs(v) < step * 1e-6) return "0";
  if (maxAbs < 1e-3) return trimExponent(v.toExponential(Math.max(0, Math.round(Math.log10(Math.abs(v) / step)))));
  if (Math.abs(v) >= 1e6 && step >= 1e5) return `${trimZeros((v / 1e6).toFixed(Math.max(0, -Math.floor(Math.log10(step / 1e6)))))}M`;
  if (Math.abs(v) >= 1e4 && step >= 1e3) return `${trimZeros((v / 1e3).toFixed(Math.max(0, -Math.floor(Math.log10(step / 1e3)))))}k`;
  const decimals = Math.min(10, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

function formatPercentTick(v: number, step: number, maxAbs: number): string {
  return `${formatTick(v * 100, step * 100, maxAbs * 100)}%`;
}

/** A value for read-outs: 4 significant digits, thousands grouped, exponent form when tiny. */
export function formatValue(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  if (a >= 1e-3) return String(Number(v.toPrecision(4)));
  return trimExponent(v.toExponential(2));
}

export function formatPercent(v: number): string {
  return `${Number((v * 100).toPrecision(3))}%`;
}

function trimZeros(s: string): string {
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

function trimExponent(s: string): string {
  const [m, e] = s.split("e");
  return `${trimZeros(m!)}e${Number(e)}`;
}

/** Drops float noise from a multiple of a tick step (0.6000000000000001 → 0.6). */
function tidy(v: number): number {
  return Number(v.toPrecision(12));
}

function r(v: number): number {
  return Math.round(v * 10) / 10;
}
