/** The run's metrics log (append, merge, torn lines, resume truncation, non-finite values) and its HTML report. */
import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parse, stringify } from "yaml";
import { dirname, join } from "node:path";
import { RecallError } from "../src/errors.ts";
import { MetricsLog, readMetrics, summarize } from "../src/train/metrics.ts";
import { renderReport, writeReport } from "../src/train/report.ts";
import { formatTick, niceDomain } from "../src/train/report_chart.ts";
import { renderConversation } from "../src/train/report_rollouts.ts";
import { runRecall } from "./harness.ts";
import { transcript, writeSyntheticRun } from "./synthetic_run.ts";

const root = mkdtempSync(join(tmpdir(), "recall-report-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const fresh = () => mkdtempSync(join(root, "run-"));

describe("MetricsLog", () => {
  test("one line per append; lines of a step merge, later values winning; rows in step order", () => {
    const file = join(fresh(), "m.jsonl");
    const log = new MetricsLog(file);
    log.append(2, { a: 3 }, { epoch: 0, time: new Date("2025-01-01T00:00:02Z") });
    log.append(1, { a: 1, b: 5 }, { epoch: 0 });
    log.append(1, { b: 2, "val/test_score/x": 0.5 }, { epoch: 0, time: new Date("2025-01-01T00:00:01Z") });
    const text = readFileSync(file, "utf8");
    expect(text.split("\n").filter(Boolean).length).toBe(3);
    expect(JSON.parse(text.split("\n")[0]!)).toEqual({ step: 2, epoch: 0, time: "2025-01-01T00:00:02.000Z", a: 3 });
    const rows = readMetrics(file);
    expect(rows.map((r) => r.step)).toEqual([1, 2]);
    expect(rows[0]!.metrics).toEqual({ a: 1, b: 2, "val/test_score/x": 0.5 });
    expect(rows[0]!.time).toBe("2025-01-01T00:00:01.000Z");
    expect(rows[0]!.epoch).toBe(0);
  });

  test("non-finite numbers are written as null, undefined ones left out; the file stays plain JSON", () => {
    const file = join(fresh(), "nan.jsonl");
    const log = new MetricsLog(file);
    log.append(0, { nan: NaN, inf: Infinity, ninf: -Infinity, ok: 1.5, gone: undefined, none: null });
    const line = readFileSync(file, "utf8");
    expect(line).not.toMatch(/NaN|Infinity/);
    expect(JSON.parse(line)).toMatchObject({ nan: null, inf: null, ninf: null, ok: 1.5, none: null });
    expect("gone" in JSON.parse(line)).toBe(false);
    expect(readMetrics(file)[0]!.metrics).toEqual({ nan: null, inf: null, ninf: null, ok: 1.5, none: null });
  });

  test("step, epoch and time are not metric names; a bad step is refused", () => {
    const log = new MetricsLog(join(fresh(), "r.jsonl"));
    expect(() => log.append(1, { step: 2 })).toThrow(/reserved/);
    expect(() => log.append(-1, {})).toThrow(/non-negative integer/);
    expect(() => log.append(1.5, {})).toThrow(/non-negative integer/);
  });

  test("a torn last line is skipped by readers and removed by the next writer", () => {
    const file = join(fresh(), "torn.jsonl");
    const log = new MetricsLog(file);
    for (let s = 1; s <= 3; s++) log.append(s, { x: s });
    appendFileSync(file, '{"step": 4, "x": 4.0, "y"'); // killed mid-write
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2, 3]);
    const again = new MetricsLog(file);
    again.append(4, { x: 40 });
    expect(readFileSync(file, "utf8").endsWith('"x":40}\n')).toBe(true);
    expect(readMetrics(file).map((r) => [r.step, r.metrics.x])).toEqual([[1, 1], [2, 2], [3, 3], [4, 40]]);
  });

  test("a complete last line without its newline is kept (the writer adds the newline)", () => {
    const file = join(fresh(), "unterminated.jsonl");
    writeFileSync(file, '{"step": 1, "x": 1}\n{"step": 2, "x": 2}');
    new MetricsLog(file).append(3, { x: 3 });
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2, 3]);
  });

  test("a bad line that is not the last is refused naming file:line", () => {
    const file = join(fresh(), "bad.jsonl");
    writeFileSync(file, '{"step": 1, "x": 1}\n{"step": 2, "x"\n{"step": 3, "x": 3}\n');
    expect(() => readMetrics(file)).toThrow(RecallError);
    expect(() => readMetrics(file)).toThrow(`${file}:2: not a JSON line`);
    writeFileSync(file, '{"step": 1}\n{"x": 1}\n');
    expect(() => readMetrics(file)).toThrow(`${file}:2: 'step' must be a non-negative integer, got nothing`);
    writeFileSync(file, '[1, 2]\n{"step": 1}\n');
    expect(() => readMetrics(file)).toThrow(`${file}:1: not a JSON object`);
  });

  test("truncateAfter(N) keeps lines up to step N (validation lines included), drops a torn tail, and appends go on", () => {
    const file = join(fresh(), "resume.jsonl");
    const log = new MetricsLog(file);
    for (let s = 0; s <= 5; s++) {
      log.append(s, { x: s });
      if (s % 2 === 0) log.append(s, { "val/test_score/a": s / 10 });
    }
    appendFileSync(file, '{"step": 6, "x"');
    log.truncateAfter(3);
    const rows = readMetrics(file);
    expect(rows.map((r) => r.step)).toEqual([0, 1, 2, 3]);
    expect(rows[2]!.metrics).toEqual({ x: 2, "val/test_score/a": 0.2 });
    log.append(4, { x: 44 });
    expect(readMetrics(file).map((r) => r.metrics.x)).toEqual([0, 1, 2, 3, 44]);
    expect(readdirSync(dirname(file)).filter((f) => f.includes(".tmp"))).toEqual([]);
  });

  test("summarize: mean, max, min; NaN for none or when any value is NaN", () => {
    expect(summarize([1, 2, 6])).toEqual({ mean: 3, max: 6, min: 1 });
    expect(summarize([-0.5])).toEqual({ mean: -0.5, max: -0.5, min: -0.5 });
    const empty = summarize([]);
    expect([empty.mean, empty.max, empty.min].every(Number.isNaN)).toBe(true);
    expect(Number.isNaN(summarize([1, NaN, 3]).max)).toBe(true);
  });
});

const CHARTS = ["score", "val", "advantages", "length", "clip", "tools", "failures", "entropy", "kl", "clipfrac", "pg_loss", "grad_norm", "lr", "throughput", "timing"];
const HOSTILE = {
  data_source: "evil<script>alert(1)</script>",
  sequences_str: "<|im_start|>system\n<style>body{display:none}</style><|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n<think><script>alert('pwn')</script></think>\n" +
    "<tool_call>\n{\"name\": \"x\\\"><img src=x onerror=alert(2)>\", \"arguments\": {}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response><iframe src=//evil></iframe>\n</tool_response>\n<|im_end|>\n" +
    "<|im_start|>assistant\n<think>ok</think> \\boxed{<img src=x onerror=alert(1)>}<|im_end|>",
  ground_truth: "<b>gt</b>",
  score: 2,
  reason: "<a href=\"javascript:alert(1)\">r</a>",
};

describe("report.html", () => {
  const dir = join(fresh(), "qwen-grpo-run");
  writeSyntheticRun(dir, { steps: 40, extraRows: [HOSTILE] });
  appendFileSync(join(dir, "metrics.jsonl"), JSON.stringify({ step: 40, "custom/my_metric": 0.25 }) + "\n");
  const path = writeReport(dir, { now: new Date("2025-06-01T12:00:00Z") });
  const html = readFileSync(path, "utf8");

  test("written atomically as RUN/report.html: one self-contained page (no script, no external resources)", () => {
    expect(path).toBe(join(dir, "report.html"));
    expect(readdirSync(dir).filter((f) => f.includes(".tmp"))).toEqual([]);
    expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link|<img|<iframe|@import|url\(|src=["']?http|href=["']?(https?:|javascript:)/i);
  });

  test("has every chart, with axes, ticks, units, grid and hover read-outs", () => {
    for (const id of CHARTS) expect(html).toContain(`id="chart-${id}"`);
    const score = html.slice(html.indexOf('id="chart-score"'), html.indexOf("</figure>", html.indexOf('id="chart-score"')));
    expect(score).toContain('class="axis"');
    expect(score).toContain('class="grid"');
    expect(score).toContain(">step</text>");
    expect(score).toContain(">score</text>");
    expect(score).toMatch(/<title>step 40\nmean: 0\.\d+\nmin–max \(max\): 1\nmin–max \(min\): 0<\/title>/);
    expect(score).toContain('class="band"');
    expect(score).toContain("step 24: step skipped (non-finite loss or gradients)");
    expect(html).toMatch(/id="chart-val"[\s\S]*musique_re_call[\s\S]*syntool_re_call/);
    expect(html).toContain(">tokens / s</text>");
    expect(html).toContain("update_actor");
    expect(html).toContain("pg_loss was not finite");
    // A metric no built-in chart knows still gets one.
    expect(html).toContain("custom/my_metric");
  });

  test("header: run name, settings from config.yaml, progress and last update", () => {
    expect(html).toContain("<h1>qwen-grpo-run</h1>");
    expect(html).toContain("re_call / qwen2.5-7b-grpo");
    expect(html).toContain("Qwen/Qwen2.5-7B-Instruct");
    expect(html).toContain("<span>lr</span>1e-6");
    expect(html).toContain("step <b>40</b> of 100");
    expect(html).toContain("<span>KL coef</span>0.001");
    expect(html).toContain("<span>KL type</span>low_var_kl");
    expect(html).toMatch(/last update <b>2025-06-01 \d\d:\d\d UTC<\/b>/);
  });

  test("samples: best and worst of the newest dumps, conversation marked up, model output escaped", () => {
    expect(html).toContain("Train step 40");
    expect(html).toContain("Train step 38");
    expect(html).toContain("Validation step 40");
    expect(html).toContain('<details class="turn system">');
    expect(html).toContain('class="box call"');
    expect(html).toContain('class="box resp"');
    expect(html).toContain('<mark class="boxed" title="final answer">\\boxed{Steven Spielberg}</mark>');
    expect(html).toContain("&lt;script&gt;alert(&#39;pwn&#39;)&lt;/script&gt;");
    expect(html).toContain("evil&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
    expect(html).toContain("&lt;iframe src=//evil&gt;&lt;/iframe&gt;");
    expect(html).toContain("&lt;style&gt;body{display:none}&lt;/style&gt;");
    expect(html).toContain("&lt;a href=&quot;javascript:alert(1)&quot;&gt;r&lt;/a&gt;");
  });

  test("with the KL loss off, the header says so instead of showing verl's unused KL defaults", () => {
    const d = join(fresh(), "no-kl");
    writeSyntheticRun(d, { steps: 3 });
    const tree = parse(readFileSync(join(d, "config.yaml"), "utf8"));
    tree.actor_rollout_ref.actor.use_kl_loss = false;
    writeFileSync(join(d, "config.yaml"), stringify(tree));
    const page = renderReport(d);
    expect(page).toContain("<span>KL coef</span>off");
    expect(page).not.toContain("<span>KL type</span>");
  });

  test("a report for a run with only some metrics draws those and lists the rest as not logged", () => {
    const d = fresh();
    const log = new MetricsLog(join(d, "metrics.jsonl"));
    for (let s = 1; s <= 5; s++) log.append(s, { "critic/score/mean": s / 10, "actor/entropy": s === 3 ? NaN : 1 - s / 10 });
    const page = renderReport(d);
    expect(page).toContain('id="chart-score"');
    expect(page).toContain('id="chart-entropy"');
    expect(page).not.toContain('id="chart-kl"');
    expect(page).toMatch(/Not logged in this run: .*KL divergence/);
    expect(page).toContain("entropy: not finite");
    expect(page).toContain("No rollout dumps");
  });

  test("an empty run (metrics.jsonl with no lines yet) gives a page that says so", () => {
    const d = fresh();
    writeFileSync(join(d, "metrics.jsonl"), "");
    const page = readFileSync(writeReport(d), "utf8");
    expect(page).toContain("No steps logged yet");
    expect(page).not.toContain('class="card chart"');
  });

  test("a rollout dump with a bad line shows a warning naming file:line; a torn last line is skipped", () => {
    const d = fresh();
    writeSyntheticRun(d, { steps: 12, dumpSteps: [12], rowsPerDump: 3 });
    const dump = join(d, "rollout", "train_12.jsonl");
    const rows = readFileSync(dump, "utf8").trimEnd().split("\n");
    writeFileSync(dump, [rows[0], "{oops", rows[1], JSON.stringify({ sequences_str: "x", score: "high" }), rows[2]].join("\n") + '\n{"data_source": "a", "seq');
    const page = renderReport(d);
    expect(page).toContain(`2 unreadable lines: ${dump}:2: not a JSON line; ${dump}:4: &#39;score&#39; is not a finite number`);
    expect(page).toContain("3 sequences");
  });

  test("when every sequence of a dump ties, the first and the last are shown, not a 'best' and 'worst'", () => {
    const d = fresh();
    const rows = [1, 2, 3].map((i) => JSON.stringify({ data_source: "s", sequences_str: transcript(`question ${i}`, 0, "x"), ground_truth: "y", score: 0, reason: "f1 0" }));
    writeFileSync(join(d, "metrics.jsonl"), '{"step": 1, "critic/score/mean": 0}\n');
    mkdirSync(join(d, "rollout"));
    writeFileSync(join(d, "rollout", "train_1.jsonl"), rows.join("\n") + "\n");
    const page = renderReport(d);
    expect(page).toContain("All 3 sequences scored 0: the first and the last are shown.");
    expect(page).toContain("question 1");
    expect(page).toContain("question 3");
    expect(page).not.toContain("question 2");
    expect(page).not.toContain('class="which best"');
  });

  test("1,000 steps stay small: lines are reduced to a few hundred points", () => {
    const d = fresh();
    writeSyntheticRun(d, { steps: 1000, dumpSteps: [999, 1000] });
    const t0 = performance.now();
    const page = renderReport(d);
    const ms = performance.now() - t0;
    expect(page.length).toBeLessThan(1_000_000);
    const longest = Math.max(...[...page.matchAll(/ d="([^"]+)"/g)].map((m) => m[1]!.split("L").length));
    expect(longest).toBeLessThanOrEqual(321);
    expect(ms).toBeLessThan(10_000);
  });
});

describe("conversation rendering", () => {
  test("turns, thoughts, tool calls and responses, the boxed answer, a cut-off last turn", () => {
    const html = renderConversation(transcript("Who?", 1, "X", "truncated"));
    expect(html).toContain('<div class="turn user"><span class="role">user</span><div class="text">Who?</div></div>');
    expect(html).toContain('tool call · <b>wikipedia_search</b></span><pre>{&quot;query&quot;:&quot;Who? part 1&quot;}</pre>');
    expect(html).toContain('<div class="echo" title="the call this answers">');
    expect(html).toContain("Passage 1: some retrieved text");
    expect(html).toContain('<span class="think">');
    expect(html).not.toContain("boxed");
  });

  test("a call that is not JSON is shown as written; nested braces stay inside the boxed mark", () => {
    const html = renderConversation("<|im_start|>assistant\n<tool_call>search(q)</tool_call> \\boxed{\\frac{1}{2}} then<|im_end|>");
    expect(html).toContain("tool call (not a JSON call)</span><pre>search(q)</pre>");
    expect(html).toContain('<mark class="boxed" title="final answer">\\boxed{\\frac{1}{2}}</mark> then');
  });
});

describe("chart scales", () => {
  test("nice y domains and tick labels", () => {
    expect(niceDomain(0.13, 0.58)).toEqual([0.1, 0.6, 0.1]);
    expect(niceDomain(0, 4012)).toEqual([0, 5000, 1000]);
    const [lo, hi] = niceDomain(5, 5);
    expect(lo < 5 && hi > 5).toBe(true);
    expect(formatTick(0.000002, 0.000002)).toBe("2e-6");
    expect(formatTick(0.25, 0.05)).toBe("0.25");
    expect(formatTick(20000, 5000)).toBe("20k");
    expect(formatTick(3, 1)).toBe("3");
    // A tiny step on large values (entropy that barely moves) stays in fixed notation.
    expect(formatTick(5.75235, 0.00005, 5.76)).toBe("5.75235");
    expect(formatTick(1.2e-7, 2e-8, 1.4e-7)).toBe("1.2e-7");
  });
});

describe("recall report", () => {
  test("writes the report and prints its path", () => {
    const d = fresh();
    writeSyntheticRun(d, { steps: 3, dumpSteps: [3] });
    const r = runRecall(["report", d]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(join(d, "report.html"));
    expect(readFileSync(join(d, "report.html"), "utf8")).toContain('id="chart-score"');
  });

  test("a folder without metrics.jsonl: one line, exit 1", () => {
    const d = fresh();
    const r = runRecall(["report", d]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${d}: no metrics.jsonl here (not a training run folder?)`);
    expect(r.stderr).not.toContain("    at ");
    expect(runRecall(["report"]).stderr).toContain("give the run folder: recall report RUN_DIR");
  });
});
