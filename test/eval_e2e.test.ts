/**
 * `recall eval` end to end against real HTTP servers started in this test: one speaking SGLang's
 * `/generate`, one speaking OpenAI's `/v1/completions` (and `/v1/chat/completions` for zero-shot and
 * the judge), both scripted like a ReCall model (a wikipedia_search tool call, then a boxed answer
 * read from the tool response). Retrieval is a real BM25 index built from a corpus made here. The
 * FlashRAG output files are parsed back and checked; a server failing every third request, a server
 * that never answers some items, and a `./recall eval` child killed mid-run then resumed are covered.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { initModel } from "../src/model/init.ts";
import { buildBm25Index } from "../src/retrieval/index.ts";
import { PROJECT_ROOT } from "./harness.ts";

// Child processes, a Pyodide sandbox start (~7 s) and GPU work on lavapipe: more than bun's 5 s default.
setDefaultTimeout(120_000);

const FIX = `${import.meta.dir}/../../shared/fixtures`;
const N = 8; // Bamboogle items used
const tmp = mkdtempSync(join(tmpdir(), "recall-eval-e2e-"));
const corpusPath = join(tmp, "corpus.jsonl");
const indexPath = join(tmp, "bm25");
const datasetPath = join(tmp, "bamboogle_head.jsonl");

interface QA {
  question: string;
  answer: string[];
}
const bamboogle: QA[] = readFileSync(`${FIX}/bamboogle_test_qa.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l) as QA);
const head = bamboogle.slice(0, N);
// The corpus holds the answer for every item except those at odd-numbered multiples of 3 (so EM is not trivially 1).
const answerable = (i: number) => i % 3 !== 1;

beforeAll(() => {
  writeFileSync(datasetPath, head.map((q) => JSON.stringify(q)).join("\n") + "\n");
  const rows = head.flatMap((q, i) => (answerable(i) ? [{ id: `d${i}`, contents: `"Fact ${i}"\n${q.question} The answer is ${q.answer[0]}.` }] : []));
  rows.push({ id: "noise", contents: '"Noise"\nUnrelated text about rivers and mountains.' });
  writeFileSync(corpusPath, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  buildBm25Index({ corpusPath, indexPath, stopwords: ["the", "a", "of", "in", "was", "who", "what", "when"] });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------------
// The scripted "model": decides from the conversation so far, as a trained ReCall model would behave.

function questionOf(prompt: string): string {
  const m = /<\|im_start\|>user\n([\s\S]*?)<\|im_end\|>/.exec(prompt);
  return m ? m[1]! : (/User: ([\s\S]*?)\. Assistant:/.exec(prompt)?.[1] ?? "");
}

/** The item whose first turn also writes a call with broken JSON (ReCall's eval sends its failure text to the tool). */
const BROKEN_CALL_ITEM = 2;
const BROKEN_CALL = '<tool_call>\n{"name": "wikipedia_search", "arguments": {"query": "x"}\n</tool_call>\n';

/** Next turn of a ReCall model, and which stop ended it (EOS as SGLang reports it: the token id). */
function reCallTurn(prompt: string): { text: string; matched: string | number } {
  const q = questionOf(prompt);
  const responses = prompt.split("<tool_response>").length - 1;
  if (responses === 0) {
    const broken = q === head[BROKEN_CALL_ITEM]!.question ? BROKEN_CALL : "";
    return { text: ` I should look this up. </think>\n${broken}<tool_call>\n{"name": "wikipedia_search", "arguments": {"query": ${JSON.stringify(q)}, "top_n": 2}}\n</tool_call>`, matched: 151645 };
  }
  const found = /The answer is ([^\n]+?)\.(?:\n|$)/.exec(prompt.slice(prompt.lastIndexOf("<tool_response>")));
  return { text: ` I found it. </think> The answer is \\[ \\boxed{${found ? found[1] : "unknown"}} \\]`, matched: 151645 };
}

function reSearchTurn(prompt: string): { text: string; matched: string | number } {
  const response = prompt.slice(prompt.lastIndexOf("<|im_start|>assistant\n"));
  if (!response.includes("<result>")) return { text: `<think> need facts </think> <search> ${questionOf(prompt)} `, matched: "</search>" };
  const found = /The answer is ([^\n]+?)\.(?:\n|$)/.exec(prompt.slice(prompt.lastIndexOf("<result>")));
  return { text: ` <think> ok </think> <answer> The final answer is \\[ \\boxed{${found ? found[1] : "unknown"}} \\] </answer>`, matched: 151645 };
}

function turnFor(prompt: string): { text: string; matched: string | number } {
  if (prompt.includes("wikipedia search tool")) return reSearchTurn(prompt);
  if (prompt.includes("<tool_call>")) return reCallTurn(prompt);
  const ref = /The answer is ([^\n]+?)\.(?:\n|$)/.exec(prompt);
  return { text: ref ? ref[1]! : "I do not know", matched: 151645 };
}

interface Server {
  url: string;
  /** Requests per question, all requests. */
  perQuestion: Map<string, number>;
  requests: number;
  stop(): void;
}

function startServer(opts: { kind: "sglang" | "openai"; failEvery?: number; failQuestion?: string; delayMs?: number; strict?: boolean }): Server {
  const perQuestion = new Map<string, number>();
  const state = { requests: 0 };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const body = (await req.json()) as Record<string, unknown>;
      state.requests++;
      if (opts.failEvery && state.requests % opts.failEvery === 0) return new Response("overloaded", { status: 503 });
      if (opts.delayMs) await Bun.sleep(opts.delayMs);
      if (opts.kind === "sglang" && path === "/generate") {
        const prompt = body.text as string;
        const q = questionOf(prompt);
        perQuestion.set(q, (perQuestion.get(q) ?? 0) + 1);
        if (opts.failQuestion && q === opts.failQuestion) return new Response("boom", { status: 500 });
        const sp = body.sampling_params as Record<string, unknown>;
        if (sp.temperature !== 0 || sp.max_new_tokens !== 512) return new Response("bad sampling params", { status: 400 });
        const t = turnFor(prompt);
        return Response.json({ text: t.text, meta_info: { finish_reason: { type: "stop", matched: t.matched }, completion_tokens: 20, prompt_tokens: 100 } });
      }
      if (opts.kind === "openai" && path === "/v1/completions") {
        if (opts.strict && "skip_special_tokens" in body) return Response.json({ error: { message: "Unrecognized request argument supplied: skip_special_tokens" } }, { status: 400 });
        const prompt = body.prompt as string;
        const q = questionOf(prompt);
        perQuestion.set(q, (perQuestion.get(q) ?? 0) + 1);
        const t = turnFor(prompt);
        // vLLM: stop strings trimmed, stop_reason names a matched stop string, null for EOS.
        return Response.json({ choices: [{ index: 0, text: t.text, finish_reason: "stop", stop_reason: typeof t.matched === "string" ? t.matched : null }], usage: { prompt_tokens: 100, completion_tokens: 20 } });
      }
      if (opts.kind === "openai" && path === "/v1/chat/completions") {
        const messages = body.messages as { role: string; content: string }[];
        const user = messages[messages.length - 1]!.content;
        if (user.includes("ground-truth answers:")) {
          // The judge: correct when the prediction contains a gold answer (case-insensitive).
          const golds = JSON.parse(/ground-truth answers: (.*)\n/.exec(user)![1]!) as string[];
          const pred = /predicted answer: (.*)\n/.exec(user)![1]!.toLowerCase();
          const ok = golds.some((g) => pred.includes(g.toLowerCase()));
          const reply = ok ? '```json\n{"rationale": "matches", "judgement": "correct"}\n```' : '{"rationale": "differs", "judgement": "incorrect"}';
          return Response.json({ choices: [{ index: 0, message: { role: "assistant", content: reply }, finish_reason: "stop" }] });
        }
        return Response.json({ choices: [{ index: 0, message: { role: "assistant", content: "I do not know" }, finish_reason: "stop" }] });
      }
      return new Response("not found", { status: 404 });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    perQuestion,
    get requests() {
      return state.requests;
    },
    stop: () => void server.stop(true),
  };
}

/** Runs `./recall` as a child process without blocking this process's servers. */
async function recall(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn([`${PROJECT_ROOT}/recall`, ...args], { cwd: tmp, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, stdout, stderr };
}

interface Intermediate {
  id: string;
  question: string;
  golden_answers: string[];
  output: { pred: string; final_response?: string; retrieval_result?: { id: string }[]; metric_score: Record<string, number>; turns?: number; tool_calls?: number; finish?: string; format_ok?: boolean; error?: string };
}

function readRun(dir: string) {
  const metrics = Object.fromEntries(
    readFileSync(join(dir, "metric_score.txt"), "utf8").trim().split("\n").map((l) => {
      const [k, v] = l.split(": ");
      return [k!, Number(v)];
    }),
  );
  const data = JSON.parse(readFileSync(join(dir, "intermediate_data.json"), "utf8")) as Intermediate[];
  const config = parse(readFileSync(join(dir, "config.yaml"), "utf8")) as Record<string, unknown>;
  return { metrics, data, config };
}

const dirOf = (stdout: string) => (JSON.parse(stdout) as { dir: string }).dir;
const expectedEm = head.filter((_, i) => answerable(i)).length / N;
const common = ["--dataset_path", datasetPath, "--index_path", indexPath, "--save_dir", join(tmp, "runs"), "--json"];

describe("re-call end to end", () => {
  test("SGLang /generate: tool call → BM25 → boxed answer; FlashRAG files parsed back", async () => {
    const s = startServer({ kind: "sglang" });
    try {
      const r = await recall(["eval", "--method_name", "re-call", "--sgl_remote_url", s.url.replace("http://", ""), "--generator_model", "/models/qwen-recall", ...common]);
      expect(r.stderr).not.toContain("ERROR");
      expect(r.code).toBe(0);
      const dir = dirOf(r.stdout);
      expect(dir).toMatch(/bamboogle_head|runs\/bamboogle_\d{4}_\d\d_\d\d_\d\d_\d\d_re-call$/);
      const { metrics, data, config } = readRun(dir);
      expect(metrics.em).toBeCloseTo(expectedEm, 12);
      expect(metrics.retrieval_recall_top5).toBeCloseTo(expectedEm, 12);
      expect(metrics.tool_calls_per_item).toBe((N + 1) / N);
      expect(metrics.tool_call_parse_failure_rate).toBe(1 / (N + 1));
      expect(metrics.turns_per_item).toBe(2);
      expect(metrics.format_failure_rate).toBe(1 / N); // the broken call fails the reward's format gate
      expect(metrics.items).toBe(N);
      expect(metrics.failed_items).toBe(0);
      expect(data.map((d) => d.id)).toEqual(head.map((_, i) => `test_${i}`));
      const first = data[0]!;
      expect(first.golden_answers).toEqual(["james madison"]);
      expect(first.output.pred).toBe("james madison");
      expect(first.output.metric_score).toMatchObject({ em: 1, f1: 1, acc: 1 });
      expect(first.output.final_response).toContain('<tool_response>{"name": "wikipedia_search", "arguments": {"query": "Who was president');
      expect(first.output.final_response).toContain("result: \n\"Fact 0\"");
      expect(first.output.final_response!.endsWith("\\]<|im_end|>")).toBe(true);
      expect(data[1]!.output.metric_score.em).toBe(0); // its passage is not in the corpus
      // ReCall's eval sends a broken call's failure text to the tool as Python: the sandbox's SyntaxError.
      expect(data[BROKEN_CALL_ITEM]!.output.final_response).toContain(
        '<tool_response>{"name": "wikipedia_search", "arguments": {"query": "x"}\nerror: \ninvalid syntax (<call>, line 1)\n</tool_response>\n<tool_response>{"name"',
      );
      expect(data[BROKEN_CALL_ITEM]!.output.metric_score.em).toBe(1);
      expect(config).toMatchObject({ method_name: "re-call", max_new_tokens: 512, max_tokens_per_turn: 512, max_turns: 5, temperature: 0, generator_model: "/models/qwen-recall" });
      expect(String(config.generator)).toContain("sglang");
      expect(s.requests).toBe(2 * N);
    } finally {
      s.stop();
    }
  });

  test("OpenAI /v1/completions (a strict server rejecting extensions), zero-shot via chat, then judge and score", async () => {
    const s = startServer({ kind: "openai", strict: true });
    try {
      const r = await recall(["eval", "--method_name", "re-call", "--openai_base_url", `${s.url}/v1`, "--model", "recall-7b", "--workers", "3", ...common]);
      expect(r.code).toBe(0);
      const dir = dirOf(r.stdout);
      const { metrics } = readRun(dir);
      expect(metrics.em).toBeCloseTo(expectedEm, 12);

      const j = await recall(["eval", "judge", "--input_dir", dir, "--base_url", s.url, "--model_name", "judge"]);
      expect(j.code).toBe(0);
      const rows = readFileSync(join(dir, "llm_judge.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { id: string; judgement: string });
      expect(rows.length).toBe(N);
      expect(rows.filter((x) => x.judgement === "correct").length).toBe(head.filter((_, i) => answerable(i)).length);
      expect(readFileSync(join(dir, "llm_judge_metric.txt"), "utf8")).toBe(`llm_judge_metric: ${expectedEm}\n`);

      const sc = await recall(["eval", "score", "--input_dir", dir, "--json"]);
      expect(sc.code).toBe(0);
      expect(JSON.parse(sc.stdout).em).toBeCloseTo(expectedEm, 12);

      const z = await recall(["eval", "--method_name", "zero-shot", "--openai_base_url", s.url, "--model", "m", "--openai_api", "chat", ...common]);
      expect(z.code).toBe(0);
      expect(readRun(dirOf(z.stdout)).metrics.em).toBe(0);

      // ReCall's run_eval means retrieve-then-generate by `naive`; recall's is the question alone, and says so.
      const n = await recall(["eval", "--method_name", "naive", "--openai_base_url", s.url, "--model", "m", "--openai_api", "chat", "--limit", "1", ...common]);
      expect(n.code).toBe(0);
      expect(n.stderr.replace(/\s+/g, " ")).toContain("ReCall's run_eval 'naive' retrieves first");
    } finally {
      s.stop();
    }
  });

  test("research and standard-rag over SGLang", async () => {
    const s = startServer({ kind: "sglang" });
    try {
      const rs = await recall(["eval", "--method_name", "research", "--sgl_remote_url", s.url, ...common]);
      expect(rs.code).toBe(0);
      const research = readRun(dirOf(rs.stdout));
      expect(research.metrics.em).toBeCloseTo(expectedEm, 12);
      expect(research.metrics.format_failure_rate).toBe(0);
      expect(research.data[0]!.output.final_response).toContain("</search> <result>\n\"Fact 0\"");
      const rag = await recall(["eval", "--method_name", "standard-rag", "--sgl_remote_url", s.url, ...common, "--retrieval_topk", "1"]);
      expect(rag.code).toBe(0);
      const std = readRun(dirOf(rag.stdout));
      expect(std.metrics.em).toBeCloseTo(expectedEm, 12);
      expect(std.data[0]!.output.retrieval_result!.length).toBe(1);
    } finally {
      s.stop();
    }
  });
});

describe("in-process sandbox and local engine", () => {
  test("re-call with ReCall's Python wikipedia_search in the real local sandbox equals the native tool, byte for byte", async () => {
    const s = startServer({ kind: "sglang" });
    try {
      const native = await recall(["eval", "--method_name", "re-call", "--sgl_remote_url", s.url, ...common, "--save_note", "native"]);
      const sandboxed = await recall(["eval", "--method_name", "re-call", "--sgl_remote_url", s.url, "--tool_backend", "sandbox", "--workers", "2", ...common, "--save_note", "sandbox"]);
      expect(sandboxed.stderr).not.toContain("ERROR");
      expect(native.code).toBe(0);
      expect(sandboxed.code).toBe(0);
      const a = readRun(dirOf(native.stdout));
      const b = readRun(dirOf(sandboxed.stdout));
      expect(b.data.map((d) => d.output.final_response)).toEqual(a.data.map((d) => d.output.final_response));
      expect(b.metrics).toEqual(a.metrics); // retrieval recall too: the passages come back through the recording retriever
      expect(String(b.config.tools)).toContain("local sandbox");
    } finally {
      s.stop();
    }
  });

  test("local WebGPU engine (--generator_model DIR): batched re-call, greedy and repeatable", async () => {
    const model = join(tmp, "tiny-model");
    await initModel({ arch: "qwen2", preset: "tiny", outDir: model, seed: 3 });
    const args = ["eval", "--method_name", "re-call", "--generator_model", model, "--limit", "3", "--max_tokens_per_turn", "12", "--workers", "3", ...common];
    const r1 = await recall(args);
    expect(r1.stderr).not.toContain("ERROR");
    expect(r1.code).toBe(0);
    const r2 = await recall(args);
    const a = readRun(dirOf(r1.stdout));
    const b = readRun(dirOf(r2.stdout));
    expect(a.metrics.items).toBe(3);
    expect(String(a.config.generator)).toContain("local");
    for (const d of a.data) {
      expect(d.output.turns).toBeGreaterThanOrEqual(1);
      expect(["answer", "truncated", "max_turns", "foreign_stop", "context_full"]).toContain(d.output.finish!);
    }
    expect(b.data.map((d) => d.output.final_response)).toEqual(a.data.map((d) => d.output.final_response));
  });
});

describe("failures", () => {
  test("a server failing every third request: retries carry the run through", async () => {
    const s = startServer({ kind: "sglang", failEvery: 3 });
    try {
      const r = await recall(["eval", "--method_name", "re-call", "--sgl_remote_url", s.url, "--retry_backoff", "0.01", ...common]);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as { dir: string; retries: number; failures: Record<string, number> };
      expect(out.retries).toBeGreaterThanOrEqual(Math.floor((2 * N) / 2) - 1);
      expect(out.failures).toEqual({});
      expect(readRun(out.dir).metrics.em).toBeCloseTo(expectedEm, 12);
    } finally {
      s.stop();
    }
  });

  test("an item that always fails is counted with its reason, exit 3; --resume retries only it", async () => {
    const bad = startServer({ kind: "sglang", failQuestion: head[2]!.question });
    let dir: string;
    try {
      const r = await recall(["eval", "--method_name", "re-call", "--sgl_remote_url", bad.url, "--retry_backoff", "0.01", "--max_retries", "2", ...common]);
      expect(r.code).toBe(3);
      const out = JSON.parse(r.stdout) as { dir: string; failures: Record<string, number> };
      expect(out.failures).toEqual({ "HTTP 500": 1 });
      expect(r.stderr).toContain("--resume");
      dir = out.dir;
      const { metrics, data } = readRun(dir);
      expect(metrics.items).toBe(N - 1);
      expect(metrics.failed_items).toBe(1);
      expect(data[2]!.output.error).toContain("HTTP 500");
      expect(bad.perQuestion.get(head[2]!.question)).toBe(3); // first try + 2 retries
    } finally {
      bad.stop();
    }
    const good = startServer({ kind: "sglang" });
    try {
      const r = await recall(["eval", "--resume", dir, "--sgl_remote_url", good.url, "--json"]);
      expect(r.code).toBe(0);
      expect(good.requests).toBe(2); // only the failed item ran again
      const { metrics } = readRun(dir);
      expect(metrics.items).toBe(N);
      expect(metrics.failed_items).toBe(0);
      expect(metrics.em).toBeCloseTo(expectedEm, 12);
    } finally {
      good.stop();
    }
  });

  test("resume after killing a real ./recall eval child mid-run", async () => {
    const s = startServer({ kind: "sglang", delayMs: 150 });
    try {
      const saveDir = join(tmp, "killed");
      mkdirSync(saveDir);
      const child = Bun.spawn([`${PROJECT_ROOT}/recall`, "eval", "--method_name", "re-call", "--sgl_remote_url", s.url, "--workers", "1", "--dataset_path", datasetPath, "--index_path", indexPath, "--save_dir", saveDir], {
        cwd: tmp,
        stdout: "ignore",
        stderr: "ignore",
      });
      // Wait until at least 2 items are recorded, then kill -9.
      let itemsFile = "";
      for (let i = 0; i < 400; i++) {
        await Bun.sleep(50);
        const glob = new Bun.Glob("*/items.jsonl");
        for (const f of glob.scanSync(saveDir)) itemsFile = join(saveDir, f);
        if (itemsFile && readFileSync(itemsFile, "utf8").trim().split("\n").length >= 2) break;
      }
      child.kill(9);
      await child.exited;
      const dir = itemsFile.slice(0, -"/items.jsonl".length);
      const doneBefore = readFileSync(itemsFile, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { id: string }).id);
      expect(doneBefore.length).toBeGreaterThanOrEqual(2);
      expect(doneBefore.length).toBeLessThan(N);
      expect(existsSync(join(dir, "intermediate_data.json"))).toBe(false);

      const before = new Map(s.perQuestion);
      const r = await recall(["eval", "--resume", dir, "--json"]);
      expect(r.code).toBe(0);
      const { metrics, data } = readRun(dir);
      expect(metrics.items).toBe(N);
      expect(metrics.em).toBeCloseTo(expectedEm, 12);
      expect(data.map((d) => d.id)).toEqual(head.map((_, i) => `test_${i}`));
      // Items finished before the kill were not asked for again.
      for (const id of doneBefore) {
        const q = head[Number(id.split("_")[1])]!.question;
        expect(s.perQuestion.get(q)).toBe(before.get(q));
      }
    } finally {
      s.stop();
    }
  });
});
