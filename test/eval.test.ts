/**
 * Evaluation pieces without servers: dataset forms (FlashRAG jsonl, Bamboogle {question, answer}, JSON,
 * pyarrow parquet), malformed rows named by file and line, --limit/--seed, config layering (YAML then
 * flags), FlashRAG metrics incl. retrieval recall, output files (naming, Python float format, torn
 * items.jsonl lines), `eval score` on a FlashRAG-written folder, and the judge's reply parsing.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfigFile, resolveConfig } from "../src/eval/config.ts";
import { findDatasetFile, loadDataset, selectItems } from "../src/eval/dataset.ts";
import { parseJudgement } from "../src/eval/judge.ts";
import { averageScores, docHasAnswer, retrievalRecall, scoreItem } from "../src/eval/metrics.ts";
import { reCallPrediction, reSearchPrediction } from "../src/eval/methods.ts";
import { formatMetricValue, intermediateData, newRunDir, readItemRecords } from "../src/eval/output.ts";
import { formatReference, oneShotMessages, renderPrompt } from "../src/eval/prompts.ts";
import { scoreFolder } from "../src/eval/score.ts";
import { RecallError } from "../src/errors.ts";
import { runRecall } from "./harness.ts";

const FIX = `${import.meta.dir}/../../shared/fixtures`;
const tmp = mkdtempSync(join(tmpdir(), "recall-eval-unit-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("datasets", () => {
  test("Bamboogle {question, answer} form: ids assigned {split}_{row}", async () => {
    const items = await loadDataset(`${FIX}/bamboogle_test_qa.jsonl`, "test");
    expect(items.length).toBe(125);
    expect(items[0]).toEqual({ id: "test_0", question: "Who was president of the United States in the year that Citibank was founded?", golden_answers: ["james madison"], row: { answer: ["james madison"] } });
    expect(items[124]!.id).toBe("test_124");
  });
  test("FlashRAG form keeps ids and golden_answers", async () => {
    const items = await loadDataset(`${FIX}/nq_sample_flashrag.jsonl`, "test");
    expect(items.length).toBe(17);
    expect(items[2]).toEqual({ id: "test_2", rowId: "test_2", question: "which mode is used for short wave broadcast service", golden_answers: ["Olivia", "MFSK"] });
  });
  test("pyarrow parquet (verl form: reward_model.ground_truth)", async () => {
    const items = await loadDataset(`${FIX}/toolstar_grpo_mix_test.parquet`, "test");
    expect(items.length).toBe(180);
    expect(items[0]).toMatchObject({ question: "Who is older, William Henry Rodes Green or Eleanor Of Lancaster?", golden_answers: ["Eleanor Of Lancaster"] });
  });
  test("JSON list; data_dir/dataset_name/split lookup", async () => {
    mkdirSync(join(tmp, "data", "toy"), { recursive: true });
    writeFileSync(join(tmp, "data", "toy", "dev.json"), JSON.stringify([{ id: 7, question: "q", answers: "a", metadata: { type: "x" } }]));
    const file = findDatasetFile(join(tmp, "data"), "toy", "dev");
    expect(file.endsWith("dev.json")).toBe(true);
    expect(await loadDataset(file, "dev")).toEqual([{ id: "7", rowId: 7, question: "q", golden_answers: ["a"], metadata: { type: "x" }, row: { answers: "a" } }]);
    expect(() => findDatasetFile(join(tmp, "data"), "toy", "test")).toThrow(/no 'test' split for dataset 'toy'/);
  });
  test("other question/answer keys (Tool-Star aime25 `problem`, GAIA `Question`/`Final answer`); the row's fields are kept for intermediate_data.json", async () => {
    const f = join(tmp, "keys.jsonl");
    writeFileSync(f, '{"problem": "1+1?", "answer": "2", "source": "aime25"}\n{"task_id": "t1", "Question": "Capital?", "Final answer": "Paris", "Level": 1}\n');
    const items = await loadDataset(f, "test");
    expect(items[0]).toEqual({ id: "test_0", question: "1+1?", golden_answers: ["2"], row: { answer: "2", source: "aime25" } });
    expect(items[1]).toEqual({ id: "test_1", question: "Capital?", golden_answers: ["Paris"], row: { task_id: "t1", "Final answer": "Paris", Level: 1 } });
    const rec = (id: string) => [id, { id, status: "ok" as const, output: { pred: "p", prompt: "", final_response: "p", metric_score: { em: 0 } }, seconds: 0 }] as const;
    const data = intermediateData(items, new Map([rec("test_0"), rec("test_1")])) as Record<string, unknown>[];
    expect(Object.keys(data[0]!)).toEqual(["id", "question", "golden_answers", "answer", "source", "output"]);
    expect(data[1]).toMatchObject({ id: "test_1", question: "Capital?", "Final answer": "Paris", task_id: "t1", Level: 1 });
    // A row's own id keeps its type; parquet int64 values are written as numbers.
    const json = join(tmp, "ids.json");
    writeFileSync(json, JSON.stringify([{ id: 12, question: "q", golden_answers: ["a"] }]));
    const [it] = await loadDataset(json, "test");
    expect((intermediateData([it!], new Map([rec("12")])) as Record<string, unknown>[])[0]!.id).toBe(12);
    const pq = await loadDataset(`${FIX}/toolstar_grpo_mix_test.parquet`, "test");
    expect(() => JSON.stringify(intermediateData(pq.slice(0, 2), new Map([rec(pq[0]!.id), rec(pq[1]!.id)])))).not.toThrow();
  });
  test("malformed rows are named by file and line", async () => {
    const f = join(tmp, "bad.jsonl");
    writeFileSync(f, '{"question": "a", "answer": ["x"]}\n\n{"question": "b" "answer": []}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow(/bad\.jsonl:3: not valid JSON/);
    writeFileSync(f, '{"question": "a", "answer": ["x"]}\n{"answer": ["x"]}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow("bad.jsonl:2: row has no question string ('question', 'problem', 'Question') (row keys: answer)");
    writeFileSync(f, '{"question": "a", "gold": 1}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow(
      "bad.jsonl:1: row has no gold answers ('golden_answers', 'answer', 'answers', 'Final answer' or reward_model.ground_truth) (row keys: question, gold)",
    );
    writeFileSync(f, '{"id": "x", "question": "a", "answer": "1"}\n{"id": "x", "question": "b", "answer": "2"}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow(/id 'x' appears twice/);
  });
  test("--limit takes the first N; with --seed a fixed random N in file order", async () => {
    const items = await loadDataset(`${FIX}/bamboogle_test_qa.jsonl`, "test");
    expect(selectItems(items, 3, false).map((i) => i.id)).toEqual(["test_0", "test_1", "test_2"]);
    const a = selectItems(items, 10, true, 42).map((i) => i.id);
    expect(selectItems(items, 10, true, 42).map((i) => i.id)).toEqual(a);
    expect(selectItems(items, 10, true, 43).map((i) => i.id)).not.toEqual(a);
    expect(new Set(a).size).toBe(10);
    const idx = a.map((id) => Number(id.split("_")[1]));
    expect([...idx].sort((x, y) => x - y)).toEqual(idx);
  });
});

describe("config layering", () => {
  test("FlashRAG YAML keys, flags override, unknown keys kept", () => {
    const y = join(tmp, "eval_config.yaml");
    writeFileSync(y, "data_dir: /data\ndataset_name: hotpotqa\nsplit: dev\ntest_sample_num: 50\nrandom_sample: true\nseed: 2024\nretrieval_topk: 3\ngeneration_params:\n  max_tokens: 256\n  temperature: 0.7\nmetric_setting:\n  retrieval_recall_topk: 3\nmetrics: [em, f1, bleu]\ngpu_id: '0,1'\n");
    const cfg = resolveConfig(readConfigFile(y), { split: "test", max_new_tokens: "128" }, y);
    expect(cfg).toMatchObject({ data_dir: "/data", dataset_name: "hotpotqa", split: "test", limit: 50, random_sample: true, seed: 2024, retrieval_topk: 3, max_new_tokens: 128, temperature: 0.7, retrieval_recall_topk: 3, metrics: ["em", "f1"] });
    expect(cfg.extra).toMatchObject({ gpu_id: "0,1", unsupported_metrics: ["bleu"] });
    expect(cfg.save_note).toBe("re-call");
  });
  test("bad values name the flag or the file key", () => {
    expect(() => resolveConfig({}, { workers: "many" })).toThrow(/flag --workers expects a number, got 'many'/);
    expect(() => resolveConfig({ max_turns: 2.5 }, {}, "cfg.yaml")).toThrow(/'max_turns' in cfg.yaml expects an integer/);
    expect(() => resolveConfig({}, { method_name: "ircot" })).toThrow(RecallError);
    expect(() => resolveConfig({}, { apply_chat: "maybe" })).toThrow(/apply_chat expects true or false/);
  });
  test("--limit with --seed flag means a random subset", () => {
    expect(resolveConfig({}, { limit: "5", seed: "1" }).random_sample).toBe(true);
    expect(resolveConfig({ seed: 2024, test_sample_num: 5 }, {}).random_sample).toBe(false);
  });
});

describe("metrics", () => {
  test("per item and averaged", () => {
    const a = scoreItem("The Titan IIIE", ["Titan IIIE"], ["em", "acc", "f1", "precision", "recall"]);
    expect(a).toEqual({ em: 1, acc: 1, f1: 1, precision: 1, recall: 1 });
    const b = scoreItem("It was launched on a Titan IIIE rocket", ["Titan IIIE"], ["em", "acc", "f1"]);
    expect(b.em).toBe(0);
    expect(b.acc).toBe(1);
    expect(b.f1).toBeCloseTo(4 / 9, 12); // 7 tokens once "a" is dropped: p = 2/7, r = 1
    expect(averageScores([a, b]).em).toBe(0.5);
  });
  test("retrieval recall: FlashRAG's rule, normalised gold as a substring of the normalised passage", () => {
    expect(docHasAnswer(["James Madison"], "Citibank... president JAMES madison, 1812")).toBe(true);
    expect(docHasAnswer(["Madison"], "Madisonville")).toBe(true); // substring, not tokens
    expect(docHasAnswer(["20 June 1837"], "crowned on 20 June 1837s, she")).toBe(true);
    expect(docHasAnswer(["AT&T"], "sold to AT & T in 1994")).toBe(false); // "att" vs "at t"
    expect(docHasAnswer(["AT & T"], "sold to AT&T in 1994")).toBe(false);
    expect(docHasAnswer(["Röntgen"], "Wilhelm Conrad Röntgen won")).toBe(true);
    expect(docHasAnswer(["Rontgen"], "Wilhelm Conrad Röntgen won")).toBe(false); // no accent folding
    expect(docHasAnswer(["The"], "anything")).toBe(true); // normalises to "", which FlashRAG finds everywhere
    expect(docHasAnswer(["x"], "")).toBe(false);
    const docs = [{ contents: "nothing" }, { contents: "x James Madison y" }];
    expect(retrievalRecall(["james madison"], docs, 1)).toBe(0);
    expect(retrievalRecall(["james madison"], docs, 2)).toBe(1);
    expect(scoreItem("x", ["james madison"], ["em"], docs, 2)).toEqual({ em: 0, retrieval_recall_top2: 1 });
  });
  test("predictions: ReCall's last turn without <think>, ReSearch's <answer>", () => {
    const full = "<|im_start|>assistant\n<think> maybe \\boxed{wrong} </think> so \\boxed{James Madison}<|im_end|>";
    expect(reCallPrediction(full)).toBe("James Madison");
    expect(reCallPrediction("<|im_start|>assistant\n<think>\\boxed{x}</think> no box<|im_end|>")).toBe("");
    expect(reSearchPrediction("<think>\\boxed{a}</think> <answer> \\boxed{b} </answer>")).toBe("b");
  });
  test("re-call prediction at the turn cap: the last closed assistant turn, not the open <think> after the tool answers", () => {
    const prompt = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>";
    const turn = (t: string) => `${t}<|im_end|>\n<|im_start|>user\n<tool_response>c\nr\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>`;
    const capped = prompt + turn(" a </think> \\boxed{First} <tool_call>c</tool_call>") + turn(" b </think> so \\boxed{Second} <tool_call>c</tool_call>");
    expect(reCallPrediction(capped)).toBe("Second");
    expect(reCallPrediction(prompt + turn(" b </think> <tool_call>c</tool_call>"))).toBe("");
    expect(reCallPrediction(prompt + " open turn \\boxed{X}")).toBe(""); // no closed assistant turn
  });
  test("prompts: FlashRAG reference format and plain-text rendering", () => {
    const ref = formatReference([{ id: "1", contents: '"Citibank"\nFounded 1812.\nNew York.' }]);
    expect(ref).toBe('Doc 1(Title: "Citibank") Founded 1812.\nNew York.\n');
    const msgs = oneShotMessages("zero-shot", "who?");
    expect(renderPrompt(msgs, true)).toBe("<|im_start|>system\nAnswer the question based on your own knowledge. Only give me the answer and do not output any other words.<|im_end|>\n<|im_start|>user\nQuestion: who?<|im_end|>\n<|im_start|>assistant\n");
    expect(renderPrompt(oneShotMessages("naive", "who?"), false)).toBe("who?\nAnswer:");
    // FlashRAG's RAG system prompt: adjacent string literals, no space after "document."
    const rag = oneShotMessages("standard-rag", "who?", [{ id: "1", contents: "T\nx" }]);
    expect(rag[0]!.content).toBe(
      "Answer the question based on the given document.Only give me the answer and do not output any other words.\nThe following are given documents.\n\nDoc 1(Title: T) x\n",
    );
  });
});

describe("output files", () => {
  test("run folder name {dataset}_{YYYY_MM_DD_HH_MM}_{note}, no clobbering", () => {
    const now = new Date(2026, 0, 2, 3, 4);
    const a = newRunDir(join(tmp, "runs"), "bamboogle", "re-call", now);
    expect(a.endsWith("bamboogle_2026_01_02_03_04_re-call")).toBe(true);
    expect(newRunDir(join(tmp, "runs"), "bamboogle", "re-call", now).endsWith("_re-call_2")).toBe(true);
  });
  test("metric values as Python prints floats", () => {
    expect(formatMetricValue(1)).toBe("1.0");
    expect(formatMetricValue(0)).toBe("0.0");
    expect(formatMetricValue(0.432)).toBe("0.432");
    expect(formatMetricValue(1 / 3)).toBe("0.3333333333333333");
    expect(formatMetricValue(125, true)).toBe("125");
  });
  test("items.jsonl: latest record per id; a torn last line is ignored, a torn middle line is an error", () => {
    const d = join(tmp, "items");
    mkdirSync(d);
    const f = join(d, "items.jsonl");
    writeFileSync(f, JSON.stringify({ id: "a", status: "failed", seconds: 1 }) + "\n" + JSON.stringify({ id: "a", status: "ok", seconds: 1 }) + "\n");
    appendFileSync(f, '{"id": "b", "stat');
    const recs = readItemRecords(d);
    expect(recs.get("a")!.status).toBe("ok");
    expect(recs.has("b")).toBe(false);
    appendFileSync(f, "\n" + JSON.stringify({ id: "c", status: "ok", seconds: 1 }) + "\n");
    expect(() => readItemRecords(d)).toThrow(/items\.jsonl:3: corrupt record/);
  });
});

describe("eval score", () => {
  test("recomputes from a FlashRAG-written intermediate_data.json", () => {
    const d = join(tmp, "flashrag_run");
    mkdirSync(d);
    // The shape FlashRAG's Dataset.save writes (extra output fields are ignored).
    const data = [
      { id: "test_0", question: "q0", golden_answers: ["Wilhelm Conrad Röntgen"], output: { pred: "Wilhelm Röntgen", raw_pred: "Wilhelm Röntgen", metric_score: { em: 0 }, retrieval_result: [{ id: "9", contents: "Röntgen\nWilhelm Conrad Röntgen won" }] } },
      { id: "test_1", question: "q1", golden_answers: ["May 18, 2018"], output: { pred: "may 18 2018", metric_score: { em: 1 }, retrieval_result: [{ id: "3", contents: "nothing" }] } },
    ];
    writeFileSync(join(d, "intermediate_data.json"), JSON.stringify(data, null, 4));
    const r = scoreFolder(d, { metrics: ["em", "acc", "f1"], retrievalRecallTopK: 5, write: true });
    const m = Object.fromEntries(r.metrics.map(([k, v]) => [k, v]));
    expect(m.em).toBe(0.5);
    expect(m.acc).toBe(0.5);
    expect(m.f1).toBeCloseTo((0.8 + 1) / 2, 12);
    expect(m.retrieval_recall_top5).toBe(0.5);
    expect(m.items).toBe(2);
    const txt = readFileSync(join(d, "metric_score.txt"), "utf8");
    expect(txt).toContain("em: 0.5\n");
    expect(txt).toContain("items: 2\n");
  });
});

describe("judge reply parsing", () => {
  test("JSON, fenced JSON, loose, garbage", () => {
    expect(parseJudgement('{"rationale": "same", "judgement": "correct"}')).toEqual({ judgement: "correct", rationale: "same" });
    expect(parseJudgement('Sure.\n```json\n{"rationale": "no", "judgement": "Incorrect"}\n```')).toEqual({ judgement: "incorrect", rationale: "no" });
    expect(parseJudgement('rationale... "judgement": correct }').judgement).toBe("correct");
    expect(parseJudgement("I think so").judgement).toBe("unparsed");
  });
});

describe("recall eval CLI errors", () => {
  test("not a model folder; no generator; unsupported method; bare --apply_chat before a flag", () => {
    const local = runRecall(["eval", "--dataset_path", `${FIX}/nq_sample_flashrag.jsonl`, "--method_name", "naive", "--generator_model", "/models/qwen"]);
    expect(local.code).toBe(1);
    expect(local.stderr).toContain("--generator_model '/models/qwen' is not a model folder (no config.json)");
    expect(local.stderr).not.toContain("    at ");
    expect(runRecall(["eval", "--method_name", "naive"]).stderr).toContain("no generator");
    expect(runRecall(["eval", "--method_name", "ircot"]).stderr).toContain("'ircot' (FlashRAG's IRCoT pipeline) is not implemented");
    const bare = runRecall(["eval", "--apply_chat", "--method_name", "naive", "--sgl_remote_url", "127.0.0.1:9", "--dataset_path", join(tmp, "missing.jsonl")]);
    expect(bare.stderr).toContain("missing.jsonl' not found"); // got past flag parsing with method naive
    expect(runRecall(["eval", "--apply-chat", "perhaps"]).stderr).toContain("--apply_chat expects true or false");
  });
});
