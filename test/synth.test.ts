/**
 * `recall synth`: the procedural families are deterministic by seed, every sample verifies in the sandbox (and a
 * wrong one is rejected with its reason), golden traces get ReCall's full reward, the parquet reads back through
 * the trainer's loader (and pyarrow, when present) and the SFT rows are ReCall's exact text (and read by recall sft).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseMusiqueCommandLine, parseSynthCommandLine, type SynthSettings } from "../src/config/synth.ts";
import { loadRlDataset, type RlDatasetOptions } from "../src/data/rl_dataset.ts";
import { RecallTokenizer } from "../src/data/tokenizer.ts";
import { initModel } from "../src/model/init.ts";
import { reCallReward } from "../src/reward/re_call.ts";
import { reCallPrompt, reCallSystemPrompt, renderChatML, type ChatMessage } from "../src/rollout/chatml.ts";
import { WIKIPEDIA_SEARCH_ENV, WIKIPEDIA_SEARCH_FUNC_SCHEMAS } from "../src/rollout/templates.ts";
import { createLocalSandbox, type LocalSandbox } from "../src/sandbox/index.ts";
import { rowConversation } from "../src/sft/conversation.ts";
import { calcFamily } from "../src/synth/calc.ts";
import { dataSourceOf, FAMILIES, parseMix } from "../src/synth/families.ts";
import { chatmlMessages, sftFromRollouts } from "../src/synth/from_rollouts.ts";
import { CANDIDATES_FILE, runLlmSynth, type LlmSynthOptions } from "../src/synth/llm.ts";
import { prepareMusique } from "../src/synth/musique.ts";
import { OpenAIChatGenerator } from "../src/rollout/remote/openai.ts";
import { makeRng } from "../src/synth/random.ts";
import { knobsOf, runSynth, type SynthResult } from "../src/synth/run.ts";
import { conversationText, finalTurn } from "../src/synth/trace.ts";
import { flattenAnswer } from "../src/sandbox/flatten.ts";
import { fakeLlmServer } from "./fake_llm_server.ts";
import { runRecall } from "./harness.ts";
import type { Candidate, Sample } from "../src/synth/types.ts";
import { verifyCandidates, type VerifyOptions } from "../src/synth/verify.ts";

const FIXTURE = join(import.meta.dir, "../../shared/fixtures/toolstar_grpo_mix_test.parquet");
const NQ = join(import.meta.dir, "../../shared/fixtures/nq_sample_flashrag.jsonl");
let dir: string;
let sandbox: LocalSandbox;
let tok: RecallTokenizer;
/** One run over every family (2 hops, distractors, natural style), shared by several tests. */
let mixed: SynthResult;
const silent = () => {};

function settings(args: string[]): SynthSettings {
  return parseSynthCommandLine(args).settings;
}

const loaderOptions: RlDatasetOptions = {
  promptKey: "question",
  maxPromptLength: 100_000,
  filterOverlongPrompts: true,
  truncation: "error",
  useReCall: true,
  promptTemplateName: "re_call_template_sys",
  searchUrl: "",
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "recall-synth-"));
  sandbox = await createLocalSandbox({ workers: 2, resultLimit: 64 << 20 });
  await initModel({ arch: "qwen2", preset: "tiny", outDir: join(dir, "m"), seed: 0 });
  tok = RecallTokenizer.load(join(dir, "m"));
  mixed = await runSynth(settings(["--mix", "calc:1,lookup:1,search:1,units:1", "--n", "96", "--hops", "2", "--distractors", "2", "--seed", "3", "--out", join(dir, "mixed")]), {
    log: silent,
    executor: sandbox,
  });
}, 300_000);

afterAll(async () => {
  await sandbox?.close();
});

test("every family's samples verify in the sandbox, with no verification rejects, and the outputs are written", () => {
  const all = [...mixed.train, ...mixed.test];
  expect(all.length).toBe(96);
  for (const f of ["calc", "lookup", "search", "units"]) expect(all.filter((s) => s.family === f).length).toBe(24);
  expect(mixed.rejects.filter((r) => r.stage === "verify")).toEqual([]);
  for (const f of ["train.parquet", "test.parquet", "sft.jsonl", "sft_test.jsonl", "stats.json", "rejects.jsonl", "corpus.jsonl", "bm25/recall-bm25.json"]) {
    expect(existsSync(join(mixed.outDir, f))).toBe(true);
  }
  const stats = JSON.parse(readFileSync(join(mixed.outDir, "stats.json"), "utf8"));
  expect(stats.samples).toEqual({ train: mixed.train.length, test: mixed.test.length });
  expect(stats.families.map((f: { name: string; test: number }) => [f.name, f.test])).toEqual([["calc", 2], ["lookup", 2], ["search", 2], ["units", 2]]);
  // 2 hops: two calls for calc, lookup and search; the second search query is built from the first answer.
  for (const s of all.filter((x) => x.family === "search")) {
    const [a, b] = s.golden.turns.map((t) => t.calls[0]!);
    expect(s.golden.turns.length).toBe(2);
    expect(String(b!.arguments.query).length).toBeGreaterThan(0);
    const firstAnswer = String(b!.arguments.query).replace(/ (city country|headquarters|company founded|city founded|capital)$/, "");
    expect(a!.result).toContain(firstAnswer);
  }
});

test("golden traces get ReCall's full reward; a wrong answer gets 0.1", () => {
  for (const s of [...mixed.train, ...mixed.test]) {
    const text = conversationText(s);
    expect(reCallReward({ text, groundTruth: s.groundTruth, dataSource: s.dataSource }).score).toBe(1);
    expect(reCallReward({ text: text.replace(`\\boxed{${s.golden.answer}}`, "\\boxed{qqq}"), groundTruth: s.groundTruth }).score).toBe(0.1);
  }
});

test("the same seed gives the same files, another seed other data", async () => {
  const args = (seed: string, out: string) => settings(["--mix", "calc,lookup,units", "--n", "30", "--seed", seed, "--out", join(dir, out)]);
  const a = await runSynth(args("5", "a"), { log: silent, executor: sandbox });
  const b = await runSynth(args("5", "b"), { log: silent, executor: sandbox });
  const c = await runSynth(args("6", "c"), { log: silent, executor: sandbox });
  for (const f of ["train.parquet", "test.parquet", "sft.jsonl", "sft_test.jsonl", "sft.parquet", "sft_test.parquet"]) {
    expect(Buffer.compare(readFileSync(join(a.outDir, f)), readFileSync(join(b.outDir, f)))).toBe(0);
  }
  expect(readFileSync(join(a.outDir, "sft.jsonl"), "utf8")).not.toBe(readFileSync(join(c.outDir, "sft.jsonl"), "utf8"));
  // Generators alone: the same stream gives the same candidates.
  const gen = await calcFamily.open({ knobs: knobsOf(settings(["--out", dir])), seed: 0, outDir: dir, log: silent });
  const draw = (seed: number) => Array.from({ length: 20 }, ((r) => () => gen.generate(r))(makeRng(seed)));
  expect(draw(1)).toEqual(draw(1));
  expect(draw(1)).not.toEqual(draw(2));
}, 120_000);

test("the demo's calc task: operands 32-99, products of four digits, compact text in ReCall's exact format", async () => {
  const r = await runSynth(settings(["--mix", "calc", "--n", "40", "--calc_min", "32", "--calc_max", "99", "--calc_ops", "mul", "--style", "compact", "--system_prompt", "Use calc.", "--out", join(dir, "demo")]), {
    log: silent,
    executor: sandbox,
  });
  for (const s of [...r.train, ...r.test]) {
    const [a, b] = String(s.golden.turns[0]!.calls[0]!.arguments.expression).split("*").map(Number);
    expect(a).toBeGreaterThanOrEqual(32);
    expect(b).toBeLessThanOrEqual(99);
    expect(s.groundTruth).toMatch(/^\d{4}$/);
    expect(Number(s.groundTruth)).toBe(a! * b!);
  }
  const row = JSON.parse(readFileSync(join(r.outDir, "sft.jsonl"), "utf8").split("\n")[0]!);
  const s = r.train[0]!;
  const e = s.golden.turns[0]!.calls[0]!.arguments.expression as string;
  const call = `{"name": "calc", "arguments": {"expression": "${e}"}}`;
  // SPEC §1, written out by hand.
  expect(row.tools).toBeUndefined();
  expect(row.messages).toEqual([
    { role: "system", content: "Use calc." },
    { role: "user", content: s.question },
    { role: "assistant", content: `<think></think>\n<tool_call>\n${call}\n</tool_call>` },
    { role: "user", content: `<tool_response>${call}\nresult: \n${s.groundTruth}\n</tool_response>\n` },
    { role: "assistant", content: `<think></think>\n\\boxed{${s.groundTruth}}` },
  ]);
}, 120_000);

test("sft.jsonl: rendered as ChatML it is the rollout text; recall sft reads it to the same turns", () => {
  const rows = readFileSync(join(mixed.outDir, "sft.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(rows.length).toBe(mixed.train.length);
  const keys = { messagesKey: "messages", toolsKey: "tools", promptKey: "prompt", responseKey: "response" };
  rows.forEach((row, i) => {
    const s = mixed.train[i]!;
    expect(row.id).toBe(s.id);
    const withSystem: ChatMessage[] = [{ role: "system", content: reCallSystemPrompt(s.funcSchemas) }, ...row.messages];
    expect(renderChatML(withSystem, false)).toBe(conversationText(s) + "\n");
    expect(rowConversation(row, keys, `sft.jsonl row ${i + 1}`).messages).toEqual(withSystem);
  });
  const turn = mixed.train.find((s) => s.family === "lookup")!;
  expect(conversationText(turn)).toContain(`<|im_end|>\n<|im_start|>user\n<tool_response>{"name": "lookup", "arguments": {"key": "`);
});

test("the parquet reads back through the trainer's loader with ReCall's prompts; a Tool-Star row goes the same path", async () => {
  const d = await loadRlDataset([join(mixed.outDir, "train.parquet"), FIXTURE], tok, loaderOptions);
  const ours = d.examples.slice(0, mixed.train.length);
  expect(d.examples.length).toBe(mixed.train.length + 180);
  ours.forEach((ex, i) => {
    const s = mixed.train[i]!;
    expect(ex.question).toBe(s.question);
    expect(ex.prompt).toBe(reCallPrompt(s.question, s.funcSchemas));
    expect(ex.groundTruth).toBe(s.groundTruth);
    expect(ex.dataSource).toBe(dataSourceOf(s.family));
    expect(ex.env).toBe(s.env);
    expect(ex.extraInfo.split).toBe("train");
    expect(JSON.parse(ex.extraInfo.golden as string)).toEqual(s.golden);
  });
  const test_ = await loadRlDataset([join(mixed.outDir, "test.parquet")], tok, { ...loaderOptions, searchUrl: "http://127.0.0.1:9" });
  expect(test_.examples.map((e) => e.question)).toEqual(mixed.test.map((s) => s.question));
  const search = test_.examples.find((e) => e.dataSource === "re_call_synth_search")!;
  expect(search.env).toContain('url = "http://127.0.0.1:9/search"');
});

test("search rows without distractors carry ReCall's wikipedia_search env and schema verbatim", async () => {
  const r = await runSynth(settings(["--mix", "search", "--n", "6", "--kb_entities", "40", "--out", join(dir, "search")]), { log: silent, executor: sandbox });
  for (const s of [...r.train, ...r.test]) {
    expect(s.env).toBe(WIKIPEDIA_SEARCH_ENV);
    expect(s.funcSchemas).toBe(WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
  }
  const corpus = readFileSync(join(r.outDir, "corpus.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(corpus.length).toBeGreaterThan(40);
  expect(corpus[0].contents).toMatch(/^"[^"]+"\n/);
}, 120_000);

test("verification rejects a wrong result, an answer that does not follow, broken tool code; batched and per-call agree", async () => {
  const good = [...mixed.train].filter((s) => s.family !== "search").slice(0, 6);
  const clone = (s: Sample): Candidate => JSON.parse(JSON.stringify(s));
  const wrongResult = clone(good[0]!);
  wrongResult.golden.turns[0]!.calls[0]!.result += "0";
  const wrongAnswer = clone(good[1]!);
  wrongAnswer.golden.answer = "zzz";
  wrongAnswer.golden.finalText = "\\boxed{zzz}";
  wrongAnswer.groundTruth = "zzz";
  const brokenEnv = clone(good[2]!);
  brokenEnv.env = "def broken(:\n";
  const hanging = clone(good[3]!);
  hanging.env += "\nwhile True:\n    pass\n";
  const candidates = [...good.slice(4), wrongResult, wrongAnswer, brokenEnv, hanging];
  const base: VerifyOptions = { executor: sandbox, mode: "batched", batchSize: 16, callTimeout: 2, envFor: (c) => c.env, dataSourceOf: (c) => dataSourceOf(c.family) };
  for (const mode of ["batched", "per_call"] as const) {
    const v = await verifyCandidates(candidates, { ...base, mode });
    expect(v.slice(0, 2)).toEqual([{ ok: true }, { ok: true }]);
    const reasons = v.slice(2).map((x) => (x.ok ? "ok" : x.reason));
    expect(reasons[0]).toMatch(/^golden call 1 .* returned "result: \\n.*", the trace says/);
    expect(reasons[1]).toMatch(/final answer 'zzz' does not follow/);
    expect(reasons[2]).toMatch(/golden call 1 .* returned "error: \\ninvalid syntax/);
    expect(reasons[3]).toMatch(/golden call 1 .* returned "error: execution timed out"/);
  }
}, 120_000);

test("the batched driver flattens every kind of answer as the per-call path does (result types, printed output, errors)", async () => {
  // Tools returning each JSON type, printing, raising; the trace results come from the per-call path (flatten.ts).
  const env = [
    "import math",
    "def kind(k: str):",
    "    if k == 'dict': return {'b': [1, 2.0, None, True], 'a': {'x': 'é'}}",
    "    if k == 'float': return 2.0",
    "    if k == 'big': return 12345678901234567890",
    "    if k == 'tuple': return (1, 'two')",
    "    if k == 'false': return False",
    "    if k == 'empty': return ''",
    "    if k == 'zero': return 0",
    "    if k == 'none': return None",
    "    if k == 'print':",
    "        print('hello  ')",
    "        return [3]",
    "    if k == 'nan': return math.nan",
    "    if k == 'raise': raise KeyError(k)",
    "    return '  padded \\n text  '",
    "def done():",
    "    return 'ok'",
    "",
  ].join("\n");
  const schemas = JSON.stringify(["kind", "done"].map((name) => ({ type: "function", function: { name, description: name, parameters: { type: "object", properties: {}, required: [] } } })));
  const kinds = ["dict", "float", "big", "tuple", "false", "empty", "zero", "none", "print", "nan", "raise", "text"];
  const base: VerifyOptions = { executor: sandbox, mode: "per_call", batchSize: 64, callTimeout: 5, envFor: (c) => c.env, dataSourceOf: () => "re_call_synth_test" };
  const candidates: Candidate[] = kinds.map((k) => ({
    family: "test",
    question: `What does kind ${k} give?`,
    env,
    funcSchemas: schemas,
    groundTruth: "ok",
    golden: {
      turns: [{ think: " ", calls: [{ name: "kind", arguments: { k }, result: "" }] }, { think: " ", calls: [{ name: "done", arguments: {}, result: "result: \nok" }] }],
      ...finalTurn("natural", "ok", "Done."),
    },
    meta: {},
  }));
  // The per-call answers, as a rollout would see them, become the trace.
  for (const c of candidates) {
    const call = c.golden.turns[0]!.calls[0]!;
    call.result = flattenAnswer(await sandbox.execute({ env, call: `kind(k=${JSON.stringify(call.arguments.k)})`, timeout: 5 }));
  }
  const results = candidates.map((c) => c.golden.turns[0]!.calls[0]!.result);
  expect(results).toContain("result: \n{'b': [1, 2.0, None, True], 'a': {'x': 'é'}}");
  expect(results).toContain("result: \n[3]\noutput: \nhello");
  expect(results).toContain("error: \n'raise'");
  for (const mode of ["per_call", "batched"] as const) expect(await verifyCandidates(candidates, { ...base, mode })).toEqual(candidates.map(() => ({ ok: true })));
  // And a changed result is caught by the driver's own comparison.
  const changed = JSON.parse(JSON.stringify(candidates[0]!)) as Candidate;
  changed.golden.turns[0]!.calls[0]!.result = "result: \n{}";
  const [v] = await verifyCandidates([changed], { ...base, mode: "batched" });
  expect(v).toEqual({ ok: false, reason: expect.stringContaining(`returned ${JSON.stringify(results[0])}, the trace says "result: \\n{}"`) });
}, 120_000);

test("--mix splits n by weight; bad flags and values are refused naming them", () => {
  expect(parseMix(["calc:0.4", "lookup:0.3", "search:0.3"], 10, "--mix").map((e) => [e.family.name, e.count])).toEqual([["calc", 4], ["lookup", 3], ["search", 3]]);
  expect(parseMix(["calc", "units"], 5, "--mix").map((e) => e.count)).toEqual([3, 2]);
  expect(Object.keys(FAMILIES)).toEqual(["calc", "lookup", "search", "units"]);
  expect(() => parseSynthCommandLine(["--out", dir, "--nn", "3"])).toThrow("unknown flag '--nn'");
  expect(() => parseSynthCommandLine(["--out", dir, "--hops", "9"])).toThrow("flag --hops must be in [1, 3], got 9");
  expect(() => parseSynthCommandLine(["--out", dir, "--n", "x"])).toThrow("flag --n expects a number");
  expect(() => parseSynthCommandLine(["--out", dir, "--calc_ops", "mul,pow"])).toThrow("flag --calc_ops: unknown operation 'pow'");
  expect(() => parseSynthCommandLine(["--n", "3"])).toThrow("pass --out DIR");
  expect(() => parseMix(["calk"], 3, "flag --mix")).toThrow("flag --mix: unknown family 'calk' (did you mean 'calc'?)");
  expect(() => parseMix(["calc:0"], 3, "flag --mix")).toThrow("flag --mix: 'calc:0' must be FAMILY or FAMILY:WEIGHT with a weight > 0");
});

test("through the CLI: a bad flag or value is one line naming it, exit 1; --json prints stats; subcommands dispatch", () => {
  const bad = runRecall(["synth", "--out", join(dir, "cli"), "--nn", "3"]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain("unknown flag '--nn'");
  expect(bad.stderr).not.toContain("    at ");
  const hops = runRecall(["synth", "--out", join(dir, "cli"), "--hops", "0"]);
  expect(hops.code).toBe(1);
  expect(hops.stderr).toContain("flag --hops must be in [1, 3], got 0");
  const mix = runRecall(["synth", "--mix", "calk", "--out", join(dir, "cli")]);
  expect(mix.code).toBe(1);
  expect(mix.stderr).toContain("unknown family 'calk' (did you mean 'calc'?)");
  const ok = runRecall(["synth", "--mix", "calc", "--n", "4", "--json", "--workers", "1", "--out", join(dir, "cli")]);
  expect(ok.code).toBe(0);
  expect(JSON.parse(ok.stdout).samples).toEqual({ train: 3, test: 1 });
  const sub = runRecall(["synth", "musique", "--output_dir", join(dir, "cli")]);
  expect(sub.code).toBe(1);
  expect(sub.stderr).toContain("pass --input_dir DIR");
  const llm = runRecall(["synth", "llm", "--model", "m", "--out", join(dir, "cli")]);
  expect(llm.stderr).toContain("pass --api_base URL");
}, 120_000);

test("recall synth musique: FlashRAG rows become ReCall's MuSiQue parquet (list ground truths, wikipedia_search tool)", async () => {
  const lines = readFileSync(NQ, "utf8").trim().split("\n");
  const input = join(dir, "nq");
  mkdirSync(input, { recursive: true });
  writeFileSync(join(input, "train.jsonl"), lines.slice(0, 6).join("\n") + "\n");
  writeFileSync(join(input, "dev.jsonl"), lines.slice(6).join("\n") + "\n");
  const out = join(dir, "nq_re_call");
  const r = await prepareMusique({ inputDir: input, outputDir: out, testSize: 3, seed: 42, dataSource: "musique_re_call", log: silent });
  expect(r).toEqual({ train: 6, test: 3, files: ["train.parquet", "test.parquet"] });
  const d = await loadRlDataset([join(out, "train.parquet")], tok, { ...loaderOptions, searchUrl: "http://127.0.0.1:8000" });
  d.examples.forEach((ex, i) => {
    const row = JSON.parse(lines[i]!);
    expect(ex.question).toBe(row.question);
    expect(ex.groundTruth).toEqual(row.golden_answers);
    expect(ex.dataSource).toBe("musique_re_call");
    expect(ex.funcSchemas).toBe(WIKIPEDIA_SEARCH_FUNC_SCHEMAS);
    expect(ex.env).toBe(WIKIPEDIA_SEARCH_ENV.replace("<search-url-placeholder>", "http://127.0.0.1:8000"));
    expect(ex.extraInfo.id).toBe(row.id);
  });
  const t = await loadRlDataset([join(out, "test.parquet")], tok, loaderOptions);
  expect(t.examples.length).toBe(3);
  const devQuestions = lines.slice(6).map((l) => JSON.parse(l).question);
  for (const ex of t.examples) expect(devQuestions).toContain(ex.question);
  expect(() => parseMusiqueCommandLine(["--output_dir", out])).toThrow("pass --input_dir DIR");
  expect(() => parseMusiqueCommandLine(["--input_dir", input, "--output_dir", out, "--test_size", "0"])).toThrow("flag --test_size must be >= 1, got 0");
  await expect(prepareMusique({ inputDir: mkdtempSync(join(dir, "empty-")), outputDir: out, testSize: 3, seed: 42, dataSource: "musique_re_call", log: silent })).rejects.toThrow("has no train.jsonl");
});

test("recall synth sft-from-rollouts: passing, complete rollouts become SFT conversations, best per prompt", () => {
  const run = join(dir, "run");
  mkdirSync(join(run, "rollout"), { recursive: true });
  const samples = mixed.train.slice(0, 4);
  const row = (s: Sample, score: number, text = conversationText(s)) => JSON.stringify({ data_source: s.dataSource, sequences_str: text, ground_truth: s.groundTruth, score, reason: "" });
  writeFileSync(
    join(run, "rollout", "train_1.jsonl"),
    [row(samples[0]!, 1), row(samples[0]!, 1), row(samples[1]!, 0.1), row(samples[2]!, 1, conversationText(samples[2]!).slice(0, -10))].join("\n") + "\n",
  );
  writeFileSync(join(run, "rollout", "val_1.jsonl"), row(samples[3]!, 1) + "\n");
  const out = join(dir, "rft.jsonl");
  const r = sftFromRollouts({ inputs: [run], output: out, minScore: 1, maxPerPrompt: 1, split: "train", log: silent });
  expect(r).toEqual({ read: 4, kept: 1, skipped: { "score below 1": 1, "does not end with <|im_end|> (cut off)": 1, "over 1 per prompt": 1 } });
  const kept = JSON.parse(readFileSync(out, "utf8").trim());
  expect(renderChatML(kept.messages, false)).toBe(conversationText(samples[0]!) + "\n");
  expect(rowConversation(kept, { messagesKey: "messages", toolsKey: "tools", promptKey: "prompt", responseKey: "response" }, "rft").messages).toEqual(kept.messages);
  expect(sftFromRollouts({ inputs: [run], output: out, minScore: 0, maxPerPrompt: 0, split: "all", log: silent }).kept).toBe(4);
  expect(chatmlMessages("<|im_start|>user\nhi<|im_end|>")).toBe("no final assistant turn");
});

test("recall synth llm: scripted server — good samples verified, each broken answer rejected with its reason, a rerun resumes", async () => {
  const fake = fakeLlmServer();
  try {
    const out = join(dir, "llm");
    const opts: LlmSynthOptions = {
      generator: new OpenAIChatGenerator(fake.url, { model: "fake", http: { timeoutMs: 10_000, retries: 0, backoffMs: 10, maxBackoffMs: 10 } }),
      executor: sandbox,
      outDir: out,
      n: 100,
      nDomains: 5,
      tasksPerDomain: 4,
      seed: 0,
      testRatio: 0.5,
      concurrency: 2,
      temperature: 0.7,
      maxTokens: 1000,
      callTimeout: 1,
      systemPrompt: "",
      settings: {},
      log: silent,
    };
    const r = await runLlmSynth(opts);
    expect([r.accepted, r.rejected]).toEqual([2, 6]);
    expect(r.tokens).toEqual({ prompt: 50, completion: 100 });
    const records = readFileSync(join(out, CANDIDATES_FILE), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const reasons = records.filter((x) => x.status === "rejected").map((x) => x.reason as string).sort();
    expect(reasons.length).toBe(6);
    expect(reasons.some((x) => x.startsWith("proposal: malformed JSON"))).toBe(true);
    expect(reasons.some((x) => x.startsWith("duplicate of an accepted task"))).toBe(true);
    expect(reasons.some((x) => x === "task: call 1 names 'nope', which is not in func_schemas")).toBe(true);
    expect(reasons.some((x) => /^call 1 .* failed: "error: \\ninvalid syntax/.test(x))).toBe(true);
    expect(reasons.some((x) => /^call 1 .* failed: "error: execution timed out"/.test(x))).toBe(true);
    expect(reasons.some((x) => x.startsWith("the answer '7' is not in the last result"))).toBe(true);
    const samples = [...r.train, ...r.test];
    expect(samples.map((x) => x.groundTruth).sort()).toEqual(["12", "5"]);
    const two = samples.find((x) => x.groundTruth === "12")!;
    expect(two.golden.turns.map((t) => t.calls[0]!.result)).toEqual(["result: \n3", "result: \n12"]);
    for (const x of samples) expect(reCallReward({ text: conversationText(x), groundTruth: x.groundTruth, dataSource: x.dataSource }).score).toBe(1);
    expect(existsSync(join(out, "train.parquet")) && existsSync(join(out, "sft.jsonl"))).toBe(true);

    // A rerun finds every domain done: no request at all, the same samples.
    const before = fake.hits.length;
    const again = await runLlmSynth(opts);
    expect(fake.hits.length).toBe(before);
    expect([...again.train, ...again.test].map((x) => x.question).sort()).toEqual(samples.map((x) => x.question).sort());

    // A run killed after its first domains: the file holds whole domains only, the rest are asked for again.
    const lines = readFileSync(join(out, CANDIDATES_FILE), "utf8").trim().split("\n");
    const firstDomainEnd = lines.findIndex((l) => JSON.parse(l).type === "domain");
    writeFileSync(join(out, CANDIDATES_FILE), lines.slice(0, firstDomainEnd + 1).join("\n") + "\n");
    const resumed = await runLlmSynth(opts);
    expect(fake.hits.length).toBe(before + 4);
    expect([...resumed.train, ...resumed.test].length).toBe(2);
  } finally {
    fake.stop();
  }
}, 120_000);

test("pyarrow reads our parquet back identically (skips without pyarrow)", () => {
  // A venv of this machine when present (CI has none: only paths that exist are tried), else the system python3.
  const candidates = ["/work/venv/bin/python", "python3"].filter((p) => !p.startsWith("/") || existsSync(p));
  const python = candidates.find((p) => Bun.spawnSync([p, "-c", "import pyarrow"], { stderr: "ignore" }).exitCode === 0);
  if (python === undefined) {
    console.warn("skipped: no python with pyarrow");
    return;
  }
  const file = join(mixed.outDir, "train.parquet");
  const script = "import sys, json, pyarrow.parquet as pq\nt = pq.read_table(sys.argv[1])\nprint(json.dumps({'schema': str(t.schema), 'rows': t.to_pylist()}))";
  const out = Bun.spawnSync([python, "-c", script, file], { stderr: "pipe" });
  expect(out.stderr.toString()).toBe("");
  const got = JSON.parse(out.stdout.toString()) as { schema: string; rows: Record<string, unknown>[] };
  expect(got.schema).toContain("reward_model: struct<ground_truth: string, style: string>");
  expect(got.schema).toContain("extra_info: struct<index: int64, split: string, env: string, func_schemas: string, id: string, family: string, g");
  expect(got.schema).toContain("child 6, golden: string");
  expect(got.rows).toEqual(
    mixed.train.map((s, index) => ({
      data_source: s.dataSource,
      question: s.question,
      ability: "re_call",
      reward_model: { ground_truth: s.groundTruth, style: "rule" },
      extra_info: { index, split: "train", env: s.env, func_schemas: s.funcSchemas, id: s.id, family: s.family, golden: JSON.stringify(s.golden) },
    })),
  );
  // SFT parquet: the JSONL's rows, messages as list<struct<role, content>>, tools as JSON text.
  const sft = Bun.spawnSync([python, "-c", script, join(mixed.outDir, "sft.parquet")], { stderr: "pipe" });
  const sq = JSON.parse(sft.stdout.toString()) as { schema: string; rows: { tools: string }[] };
  expect(sq.schema).toContain("messages: list<element: struct<role: string, content: string>>");
  const jsonl = readFileSync(join(mixed.outDir, "sft.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(sq.rows.map((r) => ({ ...r, tools: JSON.parse(r.tools) }))).toEqual(jsonl);
  // List ground truths (the musique converter's) are pyarrow's list<string>.
  const musique = Bun.spawnSync([python, "-c", script, join(dir, "nq_re_call", "train.parquet")], { stderr: "pipe" });
  const m = JSON.parse(musique.stdout.toString()) as { schema: string; rows: { reward_model: { ground_truth: string[] } }[] };
  expect(m.schema).toContain("reward_model: struct<ground_truth: list<element: string>, style: string>");
  const golds = readFileSync(NQ, "utf8").trim().split("\n").slice(0, 6).map((l) => JSON.parse(l).golden_answers);
  expect(m.rows.map((r) => r.reward_model.ground_truth)).toEqual(golds);
});
