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
import { openChatTemplate } from "../src/eval/backends.ts";
import { parseEvalFlags, perSplitConfigs, readConfigFile, resolveConfig, resolveEvalRun, evalFileEntries, type EvalConfig } from "../src/eval/config.ts";
import { findDatasetFile, loadDataset, selectItems } from "../src/eval/dataset.ts";
import { parseJudgement } from "../src/eval/judge.ts";
import { averageScores, docHasAnswer, retrievalRecall, scoreItem } from "../src/eval/metrics.ts";
import { reCallPrediction, reSearchPrediction, runMethod } from "../src/eval/methods.ts";
import { tinyByteTokenizer } from "../src/data/tiny_tokenizer.ts";
import type { SamplingParams, TextGenerator } from "../src/rollout/generator.ts";
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
  test("--question_key/--answer_key name the fields (top level or a.b nested); a row without them is named with its keys", async () => {
    const f = join(tmp, "custom_keys.jsonl");
    writeFileSync(f, '{"query": "Who?", "label": {"gold": ["Ada", "A. Lovelace"]}, "question": "ignored", "answer": "ignored too"}\n');
    const items = await loadDataset(f, "dev", { question: "query", answer: "label.gold" });
    expect(items).toEqual([{ id: "dev_0", question: "Who?", golden_answers: ["Ada", "A. Lovelace"], row: { label: { gold: ["Ada", "A. Lovelace"] }, answer: "ignored too" } }]);
    await expect(loadDataset(f, "dev", { question: "prompt" })).rejects.toThrow(`${f}:1: row has no question string (--question_key 'prompt') (row keys: query, label, question, answer)`);
    await expect(loadDataset(f, "dev", { answer: "label.silver" })).rejects.toThrow(`${f}:1: row has no gold answers (--answer_key 'label.silver') (row keys: query, label, question, answer)`);
    const g = join(tmp, "no_keys.jsonl");
    writeFileSync(g, '{"query": "Who?"}\n');
    await expect(loadDataset(g, "dev")).rejects.toThrow("row has no question string ('question', 'problem', 'Question'; or pass --question_key) (row keys: query)");
    expect(resolveConfig({}, { question_key: "query", answer_key: "label.gold" })).toMatchObject({ question_key: "query", answer_key: "label.gold" });
  });
  test("malformed rows are named by file and line", async () => {
    const f = join(tmp, "bad.jsonl");
    writeFileSync(f, '{"question": "a", "answer": ["x"]}\n\n{"question": "b" "answer": []}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow(/bad\.jsonl:3: not valid JSON/);
    writeFileSync(f, '{"question": "a", "answer": ["x"]}\n{"answer": ["x"]}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow("bad.jsonl:2: row has no question string ('question', 'problem', 'Question'; or pass --question_key) (row keys: answer)");
    writeFileSync(f, '{"question": "a", "gold": 1}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow(
      "bad.jsonl:1: row has no gold answers ('golden_answers', 'answer', 'answers', 'Final answer' or reward_model.ground_truth; or pass --answer_key) (row keys: question, gold)",
    );
    writeFileSync(f, '{"id": "x", "question": "a", "answer": "1"}\n{"id": "x", "question": "b", "answer": "2"}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow(/id 'x' appears twice/);
  });
  test("bytes that are not UTF-8 are refused with file:line, not read as U+FFFD (issue 17.3)", async () => {
    const f = join(tmp, "latin1.jsonl");
    writeFileSync(f, Buffer.concat([Buffer.from('{"question": "q1", "answer": ["a"]}\n{"question": "q2", "answer": ["ans'), Buffer.from([0xff]), Buffer.from('2"]}\n')]));
    await expect(loadDataset(f, "test")).rejects.toThrow(`${f}:2: invalid UTF-8 (byte 0xff at offset 70)`);
    const j = join(tmp, "latin1.json");
    writeFileSync(j, Buffer.concat([Buffer.from('[{"question": "q\u00e9", "answer": ["caf'), Buffer.from([0xe9]), Buffer.from('"]}]')]));
    await expect(loadDataset(j, "test")).rejects.toThrow(`${j}:1: invalid UTF-8`);
  });
  test("an empty gold answer list is refused, naming the row (it would score 0 and pull the means down; issue 17.4)", async () => {
    const f = join(tmp, "nogold.jsonl");
    writeFileSync(f, '{"question": "q1", "golden_answers": ["a"]}\n{"question": "q2", "golden_answers": []}\n');
    await expect(loadDataset(f, "test")).rejects.toThrow(`${f}:2: the row's gold answer list is empty; every metric would score it 0`);
  });
  test("a dataset path that is a folder is named in one line (EISDIR)", async () => {
    const d = join(tmp, "folder.jsonl");
    mkdirSync(d, { recursive: true });
    await expect(loadDataset(d, "test")).rejects.toThrow(`cannot read ${d}: it is a folder, not a file (EISDIR)`);
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
    expect(cfg).toMatchObject({ data_dir: "/data", dataset_name: "hotpotqa", split: ["test"], limit: 50, random_sample: true, seed: 2024, retrieval_topk: 3, max_new_tokens: 128, temperature: 0.7, retrieval_recall_topk: 3, metrics: ["em", "f1"] });
    expect(cfg.extra).toMatchObject({ gpu_id: "0,1", unsupported_metrics: ["bleu"] });
    expect(cfg.save_note).toBe("re-call");
  });
  test("an unknown metric is refused (issue 17.13): a typo anywhere, a FlashRAG-only metric when asked for by flag", () => {
    expect(() => resolveConfig({}, { metrics: "em,bogus" })).toThrow("flag --metrics: unknown metric 'bogus'");
    expect(() => resolveConfig({}, { metrics: "em,bleu" })).toThrow("flag --metrics: unknown metric 'bleu' (FlashRAG's, not computed by recall)");
    const y = join(tmp, "typo_metrics.yaml");
    writeFileSync(y, "metrics: [em, f11]\n");
    expect(() => resolveConfig(readConfigFile(y), {}, y)).toThrow(`'metrics' in ${y}: unknown metric 'f11'`);
    expect(resolveConfig({}, { metrics: "f1,em" }).metrics).toEqual(["f1", "em"]);
  });
  test("bad values name the flag or the file key", () => {
    expect(() => resolveConfig({}, { workers: "many" })).toThrow(/flag --workers expects a number, got 'many'/);
    expect(() => resolveConfig({ max_turns: 2.5 }, {}, "cfg.yaml")).toThrow(/'max_turns' in cfg.yaml expects an integer/);
    expect(() => resolveConfig({}, { method_name: "ircot" })).toThrow(RecallError);
    expect(() => resolveConfig({}, { apply_chat: "maybe" })).toThrow(/apply_chat expects true or false/);
  });
  test("split: one name, a comma list, or a YAML list; each split gets its own config and run folder note", () => {
    expect(resolveConfig({}, {}).split).toEqual(["test"]);
    expect(resolveConfig({ split: "dev" }, {}).split).toEqual(["dev"]);
    const y = join(tmp, "splits.yaml");
    writeFileSync(y, 'split: ["dev", "test"]\nsave_note: exp\n');
    const cfg = resolveConfig(readConfigFile(y), {}, y);
    expect(cfg.split).toEqual(["dev", "test"]);
    expect(perSplitConfigs(cfg).map((c) => [c.split, c.save_note])).toEqual([[["dev"], "exp_dev"], [["test"], "exp_test"]]);
    expect(perSplitConfigs(resolveConfig({}, { split: "dev" })).map((c) => [c.split, c.save_note])).toEqual([[["dev"], "re-call"]]);
    expect(resolveConfig({}, { split: "dev,test" }).split).toEqual(["dev", "test"]);
    expect(() => resolveConfig({}, { split: "dev,test", dataset_path: "/d/x.jsonl" })).toThrow("flag --split lists 2 splits, but --dataset_path reads one file");
    expect(() => resolveConfig({}, { split: "dev,test", resume: "/runs/x" })).toThrow("--resume continues one run folder (one split); flag --split lists 2");
    expect(() => resolveConfig({}, { split: "[]" })).toThrow("flag --split names no split");
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

/** ReCall's scripts/evaluation/eval_config.yaml, generator part, as shipped. */
const RECALL_EVAL_YAML =
  'framework: sgl_remote\nsgl_remote_url: "your-sgl-remote-url"\nsandbox_url: "your-sandbox-url"\ngenerator_model: "the-model-local-path"\n' +
  "generator_max_input_len: 8192\ngeneration_params:\n  do_sample: False\n  max_tokens: 8192\nretrieval_topk: 5\nmetrics: [ 'em','f1','acc','precision','recall']\n";

/** A text generator that records what each request asked for and answers with a boxed answer. */
function recordingGenerator(): { gen: TextGenerator; asked: SamplingParams[]; prompts: string[] } {
  const asked: SamplingParams[] = [];
  const prompts: string[] = [];
  const gen: TextGenerator = {
    kind: "text",
    description: "recording",
    async complete(prompt, params) {
      asked.push(params);
      prompts.push(prompt);
      return { text: "I know it. </think> \\boxed{Ada}<|im_end|>", finishReason: "stop", matchedStop: "<|im_end|>" };
    },
  };
  return { gen, asked, prompts };
}

const retriever = { search: async () => ({ docs: [{ id: "1", contents: "Ada\nAda Lovelace wrote the first program." }] }) };
const item = { id: "test_0", question: "Who wrote the first program?", golden_answers: ["Ada"] };

async function budgetsOf(cfg: EvalConfig): Promise<number[]> {
  const { gen, asked } = recordingGenerator();
  await runMethod(item, cfg, { generator: gen, retriever });
  return asked.map((p) => p.maxNewTokens);
}

describe("token budgets (issue 11.9): what each method asks the server for", () => {
  const y = join(tmp, "recall_eval_config.yaml");
  writeFileSync(y, RECALL_EVAL_YAML);
  const withYaml = (flags: string[]) => resolveEvalRun([...evalFileEntries(readConfigFile(y), y), ...parseEvalFlags(flags).flags]);

  test("ReCall's eval_config.yaml: re-call and research turns ask for 512 (ReCall.run), one-shot methods for generator_max_input_len 8192 (FlashRAG's SGLang generator)", async () => {
    expect(await budgetsOf(withYaml(["--method_name", "re-call"]).cfg)).toEqual([512]);
    expect(await budgetsOf(withYaml(["--method_name", "research"]).cfg)).toEqual([512]);
    for (const m of ["naive", "zero-shot", "standard-rag"]) expect(await budgetsOf(withYaml(["--method_name", m]).cfg)).toEqual([8192]);
    expect(withYaml([]).cfg).toMatchObject({ max_new_tokens: 8192, max_tokens_per_turn: 512, temperature: 0 });
    expect(withYaml([]).cfg.extra).toMatchObject({ framework: "sgl_remote", generator_max_input_len: 8192 });
  });
  test("flags override: --max_new_tokens sets the one-shot answer, --max_tokens_per_turn the tool methods' turns; each names the other where it has no effect", async () => {
    expect(await budgetsOf(withYaml(["--method_name", "standard-rag", "--max_new_tokens", "64"]).cfg)).toEqual([64]);
    const reCall = withYaml(["--method_name", "re-call", "--max_new_tokens", "64"]);
    expect(await budgetsOf(reCall.cfg)).toEqual([512]);
    expect(reCall.notes).toEqual(["--max_new_tokens sets one-shot methods' answer budget; re-call asks for --max_tokens_per_turn (512) per turn"]);
    expect(await budgetsOf(withYaml(["--method_name", "re-call", "--max_tokens_per_turn", "300"]).cfg)).toEqual([300]);
    const naive = withYaml(["--method_name", "naive", "--max_tokens_per_turn", "300"]);
    expect(await budgetsOf(naive.cfg)).toEqual([8192]);
    expect(naive.notes).toEqual(["--max_tokens_per_turn applies to re-call and research; naive asks for --max_new_tokens (8192)"]);
    expect(withYaml(["--method_name", "naive"]).notes).toEqual([]);
  });
  test("other frameworks read generation_params (max_new_tokens before max_tokens); without a YAML both budgets are 512", async () => {
    expect(resolveConfig({}, {})).toMatchObject({ max_new_tokens: 512, max_tokens_per_turn: 512 });
    const vllm = join(tmp, "vllm.yaml");
    writeFileSync(vllm, "framework: vllm\ngenerator_max_input_len: 1024\ngeneration_params:\n  max_tokens: 32\n");
    expect(resolveConfig(readConfigFile(vllm), {}, vllm)).toMatchObject({ max_new_tokens: 32, max_tokens_per_turn: 512 });
    writeFileSync(vllm, "generation_params:\n  max_tokens: 32\n  max_new_tokens: 48\n");
    expect(resolveConfig(readConfigFile(vllm), {}, vllm).max_new_tokens).toBe(48);
    // A recorded config.yaml (--resume) holds max_new_tokens itself, which wins over the FlashRAG keys.
    writeFileSync(vllm, "framework: sgl_remote\ngenerator_max_input_len: 8192\nmax_new_tokens: 100\nmax_tokens_per_turn: 200\n");
    expect(resolveConfig(readConfigFile(vllm), {}, vllm)).toMatchObject({ max_new_tokens: 100, max_tokens_per_turn: 200 });
    // generation_params never sets the per-turn budget, whatever the framework.
    writeFileSync(vllm, "framework: vllm\ngeneration_params:\n  max_tokens: 8192\n");
    expect(await budgetsOf(resolveConfig({ ...readConfigFile(vllm), method_name: "re-call" }, {}, vllm))).toEqual([512]);
  });
});

describe("--chat_template model: one-shot prompts rendered by the model's own template", () => {
  const model = join(tmp, "qwen-tok");
  mkdirSync(model, { recursive: true });
  const files = tinyByteTokenizer();
  writeFileSync(join(model, "tokenizer.json"), JSON.stringify(files.tokenizer));
  writeFileSync(join(model, "tokenizer_config.json"), JSON.stringify(files.tokenizerConfig));

  test("naive gets Qwen2.5's default system message, as transformers' apply_chat_template(add_generation_prompt=True) writes it; chatml does not", async () => {
    const cfg = resolveConfig({}, { method_name: "naive", chat_template: "model", sgl_remote_url: "127.0.0.1:9", generator_model: model });
    const chatTemplate = openChatTemplate(cfg)!;
    const { gen, prompts } = recordingGenerator();
    const out = await runMethod(item, cfg, { generator: gen, chatTemplate });
    const expected =
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWho wrote the first program?<|im_end|>\n<|im_start|>assistant\n";
    expect(prompts).toEqual([expected]);
    expect(out.prompt).toBe(expected);
    const zero = resolveConfig({}, { method_name: "zero-shot", chat_template: "model", generator_model: model, sgl_remote_url: "127.0.0.1:9" });
    expect(openChatTemplate(zero)!(oneShotMessages("zero-shot", "Q?"))).toBe(renderPrompt(oneShotMessages("zero-shot", "Q?"), true)); // with a system message Qwen2.5's template is plain ChatML
    expect(openChatTemplate(resolveConfig({}, { method_name: "naive", generator_model: model }))).toBeUndefined(); // chatml (default)
    expect(openChatTemplate(resolveConfig({}, { method_name: "naive", chat_template: "model", apply_chat: "false", generator_model: model }))).toBeUndefined();
    expect(openChatTemplate(resolveConfig({}, { method_name: "re-call", chat_template: "model", generator_model: model }))).toBeUndefined();
  });
  test("errors: no tokenizer folder, a folder without a template, the chat API", () => {
    expect(() => openChatTemplate(resolveConfig({}, { method_name: "naive", chat_template: "model", sgl_remote_url: "127.0.0.1:9" }))).toThrow("--chat_template model needs the model's tokenizer: pass --generator_model DIR");
    const bare = join(tmp, "no-template");
    mkdirSync(bare, { recursive: true });
    writeFileSync(join(bare, "tokenizer.json"), JSON.stringify(files.tokenizer));
    expect(() => openChatTemplate(resolveConfig({}, { method_name: "naive", chat_template: "model", generator_model: bare, sgl_remote_url: "127.0.0.1:9" }))).toThrow(`--chat_template model: ${bare} has no chat template`);
    expect(() =>
      openChatTemplate(resolveConfig({}, { method_name: "naive", chat_template: "model", generator_model: model, openai_base_url: "http://h/v1", model: "m", openai_api: "chat" })),
    ).toThrow("--chat_template model renders raw prompts; with --openai_api chat the server applies the model's template");
    expect(() => resolveConfig({}, { chat_template: "jinja" })).toThrow("flag --chat_template must be one of chatml, model, got 'jinja'");
  });
});
