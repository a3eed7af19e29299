/**
 * The rollout dumps of a run (`RUN/rollout/{train,val}_{step}.jsonl`, ReCall's rows plus recall's extras),
 * as the report shows them: per file a summary (count, mean score, how conversations ended) and its
 * best- and worst-scored sequence, rendered as a conversation with the system prompt folded, thoughts,
 * tool calls, tool responses and the boxed answer marked. Model output is untrusted: every piece of
 * text is escaped. Files are streamed line by line, so a dump of any size costs one pass and little memory.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { escapeHtml } from "../util/html.ts";
import { formatValue } from "./report_chart.ts";

export interface RolloutRow {
  data_source: string;
  sequences_str: string;
  ground_truth: unknown;
  score: number;
  reason?: string;
  uid?: string;
  num_turns?: number;
  tool_calls?: number;
  end?: string;
  response_length?: number;
}

export interface RolloutFile {
  split: "train" | "val";
  step: number;
  path: string;
}

export interface RolloutSummary {
  file: RolloutFile;
  rows: number;
  meanScore: number;
  /** Rows scoring above zero. */
  positive: number;
  ends: Map<string, number>;
  best?: RolloutRow;
  worst?: RolloutRow;
  /** Lines that could not be read, as `file:line: why` (a torn last line is not one). */
  problems: string[];
}

/** The dump files in `dir` (a run's `rollout/` or its `trainer.rollout_save_path`), in step order. */
export function listRolloutFiles(dir: string): RolloutFile[] {
  if (!existsSync(dir)) return [];
  const out: RolloutFile[] = [];
  for (const name of readdirSync(dir)) {
    const m = /^(train|val)_(\d+)\.jsonl$/.exec(name);
    if (m) out.push({ split: m[1] as "train" | "val", step: Number(m[2]), path: join(dir, name) });
  }
  return out.sort((a, b) => a.step - b.step || a.split.localeCompare(b.split));
}

// A report is rewritten every step; a dump does not change once written, so its summary is kept by size and
// mtime — only for the dumps the last report showed, so a long run does not pile up old samples in memory.
const cache = new Map<string, { size: number; mtimeMs: number; summary: RolloutSummary }>();

/** Summaries of `files`, reading only those not summarized by the previous call. */
export function summarizeRolloutFiles(files: readonly RolloutFile[]): RolloutSummary[] {
  const out = files.map(summarizeRolloutFile);
  const keep = new Set(files.map((f) => f.path));
  for (const key of cache.keys()) if (!keep.has(key)) cache.delete(key);
  return out;
}

/** One pass over a dump: count, mean score, ends, best and worst row. */
function summarizeRolloutFile(file: RolloutFile): RolloutSummary {
  const st = statSync(file.path);
  const hit = cache.get(file.path);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.summary;
  const s: RolloutSummary = { file, rows: 0, meanScore: NaN, positive: 0, ends: new Map(), problems: [] };
  let sum = 0;
  forEachLine(file.path, (line, lineNo, isLast) => {
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      if (!isLast) s.problems.push(`${file.path}:${lineNo}: not a JSON line`);
      return;
    }
    const why = rowProblem(row);
    if (why) {
      s.problems.push(`${file.path}:${lineNo}: ${why}`);
      return;
    }
    const r = row as RolloutRow;
    s.rows++;
    sum += r.score;
    if (r.score > 0) s.positive++;
    const end = typeof r.end === "string" ? r.end : "unknown";
    s.ends.set(end, (s.ends.get(end) ?? 0) + 1);
    // Best: the first of the highest; worst: the last of the lowest — two different rows even when all scores tie.
    if (!s.best || r.score > s.best.score) s.best = r;
    if (!s.worst || r.score <= s.worst.score) s.worst = r;
  });
  s.meanScore = s.rows > 0 ? sum / s.rows : NaN;
  cache.set(file.path, { size: st.size, mtimeMs: st.mtimeMs, summary: s });
  return s;
}

function rowProblem(row: unknown): string | undefined {
  if (typeof row !== "object" || row === null || Array.isArray(row)) return "not a JSON object";
  const r = row as Record<string, unknown>;
  if (typeof r.sequences_str !== "string") return "'sequences_str' is not a string";
  if (typeof r.score !== "number" || !Number.isFinite(r.score)) return "'score' is not a finite number";
  if (r.data_source !== undefined && typeof r.data_source !== "string") return "'data_source' is not a string";
  return undefined;
}

/** Streams a file's lines (UTF-8 split at newline bytes, which never occur inside a multi-byte character). */
function forEachLine(path: string, fn: (line: string, lineNo: number, isLast: boolean) => void): void {
  const fd = openSync(path, "r");
  try {
    const chunk = Buffer.alloc(1 << 22);
    let carry = Buffer.alloc(0);
    let lineNo = 0;
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      const buf = carry.length ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let start = 0;
      for (let nl = buf.indexOf(0x0a, start); nl >= 0; nl = buf.indexOf(0x0a, start)) {
        lineNo++;
        const line = buf.toString("utf8", start, nl);
        if (line.trim() !== "") fn(line, lineNo, false);
        start = nl + 1;
      }
      carry = Buffer.from(buf.subarray(start));
    }
    // A last line without its newline may be a write in progress or cut by a kill.
    if (carry.length && carry.toString("utf8").trim() !== "") fn(carry.toString("utf8"), lineNo + 1, true);
  } finally {
    closeSync(fd);
  }
}

const END_LABELS: Record<string, string> = {
  answer: "answered",
  max_turns: "turn cap",
  response_budget: "length cap",
  context_full: "context full",
  truncated: "turn cut",
  foreign_stop: "stray stop",
};

/** One dump's block: its summary line and the best and worst sequences side by side. */
export function renderRolloutSummary(s: RolloutSummary, open: boolean): string {
  const title = `${s.file.split === "train" ? "Train" : "Validation"} step ${s.file.step}`;
  const ends = [...s.ends.entries()].sort((a, b) => b[1] - a[1])
    .map(([e, n]) => `<span class="end end-${cssName(e)}">${escapeHtml(END_LABELS[e] ?? e)} ${Math.round((100 * n) / s.rows)}%</span>`).join(" ");
  const stats = s.rows === 0
    ? `<span class="muted">no readable rows</span>`
    : `${s.rows.toLocaleString("en-US")} sequences · mean score <b>${escapeHtml(formatValue(s.meanScore))}</b> · ${Math.round((100 * s.positive) / s.rows)}% above 0 · ${ends}`;
  const problems = s.problems.length
    ? `<div class="warn">${s.problems.length} unreadable line${s.problems.length > 1 ? "s" : ""}: ${s.problems.slice(0, 3).map(escapeHtml).join("; ")}${s.problems.length > 3 ? " …" : ""}</div>`
    : "";
  const samples: string[] = [];
  const tie = s.best !== undefined && s.worst !== undefined && s.best.score === s.worst.score;
  if (s.best) samples.push(renderSample(tie ? "first" : "best", s.best));
  if (s.worst && s.worst !== s.best) samples.push(renderSample(tie ? "last" : "worst", s.worst));
  if (tie && s.rows > 1) samples.unshift(`<p class="muted tie">All ${s.rows.toLocaleString("en-US")} sequences scored ${escapeHtml(formatValue(s.best!.score))}: the first and the last are shown.</p>`);
  return `<details class="step"${open ? " open" : ""}><summary><span class="step-title">${title}</span><span class="stats">${stats}</span></summary>` +
    `${problems}<div class="samples">${samples.join("")}</div></details>`;
}

function renderSample(which: string, row: RolloutRow): string {
  const meta: string[] = [];
  meta.push(`<span class="score ${row.score > 0 ? "good" : "bad"}">score ${escapeHtml(formatValue(row.score))}</span>`);
  if (row.data_source) meta.push(`<span class="chip">${escapeHtml(row.data_source)}</span>`);
  if (typeof row.num_turns === "number") meta.push(`<span class="chip">${row.num_turns} turn${row.num_turns === 1 ? "" : "s"}</span>`);
  if (typeof row.tool_calls === "number") meta.push(`<span class="chip">${row.tool_calls} tool call${row.tool_calls === 1 ? "" : "s"}</span>`);
  if (typeof row.response_length === "number") meta.push(`<span class="chip">${row.response_length.toLocaleString("en-US")} tokens</span>`);
  if (typeof row.end === "string") meta.push(`<span class="end end-${cssName(row.end)}">${escapeHtml(END_LABELS[row.end] ?? row.end)}</span>`);
  const gt = typeof row.ground_truth === "string" ? row.ground_truth : JSON.stringify(row.ground_truth) ?? "";
  const facts = `<dl><dt>ground truth</dt><dd>${escapeHtml(clip(gt, 600))}</dd>` +
    (row.reason ? `<dt>reward</dt><dd>${escapeHtml(clip(String(row.reason), 600))}</dd>` : "") + `</dl>`;
  return `<article class="sample"><header><span class="which ${which === "worst" ? "worst" : which === "best" ? "best" : "plain"}">${escapeHtml(which)}</span>${meta.join("")}</header>` +
    `${facts}<div class="convo">${renderConversation(row.sequences_str)}</div></article>`;
}

/**
 * A ChatML transcript (prompt + response, special tokens kept) as HTML: the system turn folded, the
 * question, assistant turns with thoughts, tool calls and the boxed answer marked, tool responses.
 */
export function renderConversation(text: string): string {
  const out: string[] = [];
  const turns = text.split("<|im_start|>");
  if (turns[0]!.trim() !== "") out.push(`<div class="turn raw">${escapeHtml(clip(turns[0]!, 4000))}</div>`);
  for (const turn of turns.slice(1)) {
    const nl = turn.indexOf("\n");
    const role = nl >= 0 ? turn.slice(0, nl) : turn;
    let body = nl >= 0 ? turn.slice(nl + 1) : "";
    // What ended the turn: <|im_end|> (then only whitespace before the next turn), or nothing when cut off.
    const endAt = body.indexOf("<|im_end|>");
    let after = "";
    if (endAt >= 0) {
      after = body.slice(endAt + "<|im_end|>".length);
      body = body.slice(0, endAt);
    }
    const eot = /(<\|endoftext\|>)+\s*$/.exec(body);
    if (eot) body = body.slice(0, eot.index);
    const ending = endAt >= 0 ? "" : eot ? `<span class="tok">&lt;|endoftext|&gt;</span>` : "";
    if (role === "system") {
      out.push(`<details class="turn system"><summary>system prompt · ${body.length.toLocaleString("en-US")} characters</summary><pre>${escapeHtml(clip(body, 20000))}</pre></details>`);
    } else if (role === "user" && body.includes("<tool_response>")) {
      out.push(`<div class="turn tool">${renderToolResponses(body)}</div>`);
    } else if (role === "user") {
      out.push(`<div class="turn user"><span class="role">user</span><div class="text">${escapeHtml(clip(body, 6000))}</div></div>`);
    } else if (role === "assistant") {
      out.push(`<div class="turn assistant"><span class="role">assistant</span><div class="text">${renderAssistant(body)}${ending}</div></div>`);
    } else {
      out.push(`<div class="turn raw"><span class="role">${escapeHtml(clip(role, 80))}</span><div class="text">${escapeHtml(clip(body, 6000))}</div></div>`);
    }
    if (after.trim() !== "") out.push(`<div class="turn raw"><span class="role">after turn end</span><div class="text">${escapeHtml(clip(after, 2000))}</div></div>`);
  }
  return out.join("");
}

function renderToolResponses(body: string): string {
  const parts: string[] = [];
  const re = /<tool_response>([\s\S]*?)(<\/tool_response>|$)/g;
  let last = 0;
  for (let m = re.exec(body); m; m = re.exec(body)) {
    const before = body.slice(last, m.index);
    if (before.trim() !== "") parts.push(`<div class="text">${escapeHtml(clip(before, 2000))}</div>`);
    const [echo, result] = splitCallEcho(m[1]!.replace(/^\n+|\n+$/g, ""));
    const echoHtml = echo ? `<div class="echo" title="the call this answers">${escapeHtml(clip(echo, 300))}</div>` : "";
    parts.push(`<div class="box resp"><span class="label">tool response</span>${echoHtml}<pre>${escapeHtml(clip(result, 4000))}</pre></div>`);
    last = m.index + m[0].length;
    if (m[0].length === 0) break;
  }
  const rest = body.slice(last);
  if (rest.trim() !== "") parts.push(`<div class="text">${escapeHtml(clip(rest, 2000))}</div>`);
  return parts.join("");
}

/** An assistant turn: <think> … </think> dimmed, <tool_call> boxes (JSON pretty-printed), \boxed{…} highlighted. */
function renderAssistant(body: string): string {
  const out: string[] = [];
  const re = /<think>|<\/think>|<tool_call>([\s\S]*?)(<\/tool_call>|$)/g;
  let last = 0;
  let inThink = false;
  const flush = (text: string) => {
    if (text === "") return;
    const html = markBoxed(clip(text, 8000));
    out.push(inThink ? `<span class="think">${html}</span>` : html);
  };
  for (let m = re.exec(body); m; m = re.exec(body)) {
    flush(body.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[0] === "<think>") {
      inThink = true;
      out.push(`<span class="tag">think</span>`);
    } else if (m[0] === "</think>") {
      inThink = false;
      out.push(`<span class="tag">/think</span>`);
    } else {
      out.push(renderToolCall(m[1]!.trim(), m[2] !== ""));
    }
    if (m[0].length === 0) break;
  }
  flush(body.slice(last));
  return out.join("");
}

/** Escapes text and wraps each balanced \boxed{…} in a highlighted mark. */
function markBoxed(text: string): string {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    const at = text.indexOf("\\boxed{", i);
    if (at < 0) break;
    let depth = 0, j = at + "\\boxed".length;
    for (; j < text.length; j++) {
      if (text[j] === "{") depth++;
      else if (text[j] === "}" && --depth === 0) break;
    }
    if (j >= text.length) break; // unbalanced: leave as text
    out.push(escapeHtml(text.slice(i, at)));
    out.push(`<mark class="boxed" title="final answer">${escapeHtml(text.slice(at, j + 1))}</mark>`);
    i = j + 1;
  }
  out.push(escapeHtml(text.slice(i)));
  return out.join("");
}

/** A call as `name` + its arguments (one line when short); text that is not a JSON call is shown as written. */
function renderToolCall(text: string, closed: boolean): string {
  let name: string | undefined, body = text;
  try {
    const call = JSON.parse(text) as unknown;
    if (typeof call === "object" && call !== null && typeof (call as { name?: unknown }).name === "string") {
      name = (call as { name: string }).name;
      const args = (call as { arguments?: unknown }).arguments ?? {};
      const flat = JSON.stringify(args);
      body = flat.length <= 110 ? flat : JSON.stringify(args, null, 2);
    } else body = JSON.stringify(call, null, 2);
  } catch {
    // Not JSON: the model's text is what matters (a parse failure is itself worth seeing).
  }
  const label = `tool call${name !== undefined ? ` · <b>${escapeHtml(name)}</b>` : " (not a JSON call)"}${closed ? "" : " (unclosed)"}`;
  return `<div class="box call"><span class="label">${label}</span><pre>${escapeHtml(clip(body, 4000))}</pre></div>`;
}

/** ReCall's tool response repeats the call's JSON text on its first line(s) before the result: split it off. */
function splitCallEcho(text: string): [echo: string, result: string] {
  if (!text.startsWith("{")) return ["", text];
  let at = text.indexOf("\n");
  for (let tries = 0; at >= 0 && tries < 20; tries++, at = text.indexOf("\n", at + 1)) {
    try {
      JSON.parse(text.slice(0, at));
      return [text.slice(0, at), text.slice(at + 1)];
    } catch {
      // the call's text goes on past this newline
    }
  }
  return ["", text];
}

/** Long text keeps its head and tail around a note of what was left out. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor(max * 0.7), tail = max - head;
  return `${text.slice(0, head)}\n[… ${(text.length - head - tail).toLocaleString("en-US")} characters not shown …]\n${text.slice(text.length - tail)}`;
}

function cssName(s: string): string {
  return s.replace(/[^a-z0-9_-]/gi, "_");
}
