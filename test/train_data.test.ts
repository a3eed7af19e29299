/** The trainer's data layer: verl parquet → prompts, the seeded epoch sampler and its cursor, micro-batch packing. */
import { beforeAll, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadRlDataset, type RlDatasetOptions } from "../src/data/rl_dataset.ts";
import { EpochSampler, epochOrder } from "../src/data/sampler.ts";
import { packMicroBatches } from "../src/data/packing.ts";
import { writeVerlParquet, type VerlRow } from "../src/data/verl_parquet.ts";
import { RecallTokenizer } from "../src/data/tokenizer.ts";
import { initModel } from "../src/model/init.ts";
import { reCallPrompt } from "../src/rollout/chatml.ts";
import { WIKIPEDIA_SEARCH_ENV, WIKIPEDIA_SEARCH_FUNC_SCHEMAS } from "../src/rollout/templates.ts";

const FIXTURE = join(import.meta.dir, "../../shared/fixtures/toolstar_grpo_mix_test.parquet");
let dir: string;
let tok: RecallTokenizer;
const base: RlDatasetOptions = {
  promptKey: "question",
  maxPromptLength: 100_000,
  filterOverlongPrompts: true,
  truncation: "error",
  useReCall: true,
  promptTemplateName: "re_call_template_sys",
  searchUrl: "",
};

function row(i: number, over: Partial<VerlRow> = {}): VerlRow {
  return { data_source: "musique_re_call", question: `Who wrote book ${i}?`, ability: "re_call", ground_truth: `author ${i}`, index: i, split: "train", env: WIKIPEDIA_SEARCH_ENV, func_schemas: WIKIPEDIA_SEARCH_FUNC_SCHEMAS, ...over };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "recall-traindata-"));
  await initModel({ arch: "qwen2", preset: "tiny", outDir: join(dir, "m"), seed: 0 });
  tok = RecallTokenizer.load(join(dir, "m"));
});

test("a pyarrow-written verl parquet (Tool-Star) loads whole: questions, ground truths, data sources", async () => {
  const d = await loadRlDataset([FIXTURE], tok, base);
  expect(d.examples.length).toBe(180);
  const first = d.examples[0]!;
  expect(first.question).toBe("Who is older, William Henry Rodes Green or Eleanor Of Lancaster?");
  expect(first.groundTruth).toBe("Eleanor Of Lancaster");
  expect(first.dataSource).toBe("grpo_mix");
  expect(d.withoutTools).toBe(180);
  expect(first.where).toBe(`${FIXTURE} row 1`);
});

test("ReCall prompts: the system template with the row's schemas, the question, the assistant opener and <think>; search URL put into env", async () => {
  const file = join(dir, "musique.parquet");
  writeVerlParquet(file, [row(0), row(1, { data_source: "other" })]);
  const d = await loadRlDataset([file], tok, { ...base, searchUrl: "http://127.0.0.1:8000" });
  const ex = d.examples[0]!;
  // The tiny model's template is ChatML, so the prompt is exactly SPEC §1's.
  expect(ex.prompt).toBe(reCallPrompt("Who wrote book 0?", WIKIPEDIA_SEARCH_FUNC_SCHEMAS));
  expect(ex.promptIds).toEqual(tok.encode(ex.prompt, { addSpecialTokens: false }));
  expect(ex.env).toContain('url = "http://127.0.0.1:8000/search"');
  // Only *re_call rows get the URL (as ReCall does for MuSiQue).
  expect(d.examples[1]!.env).toContain("<search-url-placeholder>");
});

test("data.system_prompt: a system turn of the user's own, with the row's schemas put in; <think> still appended", async () => {
  const file = join(dir, "own.parquet");
  writeVerlParquet(file, [row(0, { func_schemas: '[{"name": "calc"}]' })]);
  const d = await loadRlDataset([file], tok, { ...base, systemPrompt: "Use calc. Tools: {func_schemas}" });
  expect(d.examples[0]!.prompt).toBe('<|im_start|>system\nUse calc. Tools: [{"name": "calc"}]<|im_end|>\n<|im_start|>user\nWho wrote book 0?<|im_end|>\n<|im_start|>assistant\n<think>');
});

test("max_prompt_length: overlong prompts are dropped (filter on) or refused naming the row (truncation=error)", async () => {
  const file = join(dir, "long.parquet");
  writeVerlParquet(file, [row(0), row(1, { question: "x".repeat(5000) })]);
  const shortLen = (await loadRlDataset([file], tok, base)).examples[0]!.promptIds.length;
  const d = await loadRlDataset([file], tok, { ...base, maxPromptLength: shortLen + 10 });
  expect(d.examples.length).toBe(1);
  expect(d.dropped).toBe(1);
  await expect(loadRlDataset([file], tok, { ...base, maxPromptLength: shortLen + 10, filterOverlongPrompts: false })).rejects.toThrow(`${file} row 2: the prompt has`);
  const cut = await loadRlDataset([file], tok, { ...base, maxPromptLength: shortLen + 10, filterOverlongPrompts: false, truncation: "left" });
  expect(cut.examples[1]!.promptIds.length).toBe(shortLen + 10);
});

test("bad files and rows are refused with the file and row", async () => {
  const bad = join(dir, "bad.parquet");
  writeFileSync(bad, "not parquet");
  await expect(loadRlDataset([bad], tok, base)).rejects.toThrow(`${bad}: not a readable parquet file`);
  await expect(loadRlDataset([join(dir, "missing.parquet")], tok, base)).rejects.toThrow(`cannot read ${join(dir, "missing.parquet")}: no such file or folder`);
  const noSource = join(dir, "nosource.parquet");
  writeVerlParquet(noSource, [row(0), row(1, { data_source: "" })]);
  await expect(loadRlDataset([noSource], tok, base)).rejects.toThrow(`${noSource} row 2: 'data_source'`);
  await expect(loadRlDataset([FIXTURE], tok, { ...base, promptTemplateName: "nope" })).rejects.toThrow("data.prompt_template_name 'nope' is unknown");
});

test("several files concatenate in order", async () => {
  const a = join(dir, "a.parquet"), b = join(dir, "b.parquet");
  writeVerlParquet(a, [row(0), row(1)]);
  writeVerlParquet(b, [row(2)]);
  const d = await loadRlDataset([a, b], tok, base);
  expect(d.examples.map((e) => e.question)).toEqual(["Who wrote book 0?", "Who wrote book 1?", "Who wrote book 2?"]);
  expect(d.examples.map((e) => e.index)).toEqual([0, 1, 2]);
});

test("sampler: each epoch a seeded permutation, drop_last batches, a cursor resumes at the exact next batch", () => {
  const s = new EpochSampler(10, { batchSize: 3, shuffle: true, seed: 5 });
  expect(s.batchesPerEpoch).toBe(3);
  let cursor = { epoch: 0, batch: 0 };
  const seen: number[][] = [];
  for (let i = 0; i < 6; i++) {
    const r = s.take(cursor);
    seen.push(r.indices);
    cursor = r.next;
  }
  // Epoch 0's three batches are distinct prompts; epoch 1 is another permutation.
  expect(new Set(seen.slice(0, 3).flat()).size).toBe(9);
  expect(seen.slice(0, 3).flat()).toEqual(epochOrder(10, 5, 0, true).slice(0, 9));
  expect(seen.slice(3).flat()).toEqual(epochOrder(10, 5, 1, true).slice(0, 9));
  expect(epochOrder(10, 5, 0, true)).not.toEqual(epochOrder(10, 5, 1, true));
  // A fresh sampler at a saved cursor continues identically.
  const again = new EpochSampler(10, { batchSize: 3, shuffle: true, seed: 5 });
  expect(again.take({ epoch: 1, batch: 1 }).indices).toEqual(seen[4]!);
  expect(new EpochSampler(4, { batchSize: 2, shuffle: false, seed: 0 }).take({ epoch: 0, batch: 0 }).indices).toEqual([0, 1]);
  expect(() => new EpochSampler(2, { batchSize: 3, shuffle: true, seed: 0 })).toThrow("fewer than one batch");
});

test("packing: verl's Karmarkar–Karp partition into ⌈tokens / budget⌉ balanced micro-batches; fixed sizes otherwise", () => {
  const lengths = [50, 10, 40, 30, 20, 60, 5, 45];
  for (const budget of [60, 100, 1000]) {
    const parts = packMicroBatches(lengths, { maxTokens: budget });
    expect(parts.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    expect(parts.length).toBe(Math.min(lengths.length, Math.ceil(260 / budget)));
    for (const p of parts) expect([...p].sort((a, b) => a - b)).toEqual(p);
  }
  // Two parts of 260 tokens: the differencing method balances them exactly.
  const two = packMicroBatches(lengths, { maxTokens: 130 });
  expect(two.map((p) => p.reduce((acc, i) => acc + lengths[i]!, 0)).sort()).toEqual([130, 130]);
  expect(packMicroBatches(lengths, { maxSequences: 3 })).toEqual([[0, 1, 2], [3, 4, 5], [6, 7]]);
  expect(() => packMicroBatches(lengths, { maxTokens: 55 })).toThrow("does not fit the micro-batch token budget of 55");
});
