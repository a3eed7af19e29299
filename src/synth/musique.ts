/**
 * `recall synth musique`, what ReCall's `data/prepare_musique_recall.py` does: a FlashRAG QA folder (MuSiQue, or any
 * QA set with `question` and `golden_answers`) becomes verl parquet in ReCall's schema, every row carrying the
 * `wikipedia_search` tool (env with `<search-url-placeholder>`, which `recall train --search_url` fills in, and the
 * schema string). `train.*` → `train.parquet`, all rows; `dev.*` → `test.parquet`, `test_size` rows drawn with the
 * seed (ReCall draws 100 with Python's `random.seed(42)`; our draw is seeded too but not Python's sequence).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { writeVerlParquet, type VerlRow } from "../data/verl_parquet.ts";
import { RecallError } from "../errors.ts";
import { DATASET_EXTENSIONS, loadDataset, type EvalItem } from "../eval/dataset.ts";
import { WIKIPEDIA_SEARCH_ENV, WIKIPEDIA_SEARCH_FUNC_SCHEMAS } from "../rollout/templates.ts";
import { makeRng } from "./random.ts";

export interface MusiqueOptions {
  inputDir: string;
  outputDir: string;
  /** Rows of `dev` kept for `test.parquet` (all when larger than the file). */
  testSize: number;
  seed: number;
  dataSource: string;
  log: (line: string) => void;
}

function splitFile(dir: string, split: string): string | undefined {
  return DATASET_EXTENSIONS.map((ext) => join(dir, `${split}${ext}`)).find((p) => existsSync(p));
}

function rows(items: readonly EvalItem[], split: string, dataSource: string): VerlRow[] {
  return items.map((it, index) => ({
    data_source: dataSource,
    question: it.question,
    ability: "re_call",
    ground_truth: it.golden_answers,
    index,
    split,
    env: WIKIPEDIA_SEARCH_ENV,
    func_schemas: WIKIPEDIA_SEARCH_FUNC_SCHEMAS,
    extra: { id: it.id },
  }));
}

export async function prepareMusique(o: MusiqueOptions): Promise<{ train: number; test: number; files: string[] }> {
  const trainFile = splitFile(o.inputDir, "train");
  if (trainFile === undefined) throw new RecallError(`--input_dir '${o.inputDir}' has no train.jsonl (or train.json, train.parquet)`);
  const train = await loadDataset(trainFile, "train");
  mkdirSync(o.outputDir, { recursive: true });
  for (const it of train) if (it.golden_answers.length === 0) throw new RecallError(`${trainFile}: question '${it.id}' has no golden answers`);
  writeVerlParquet(join(o.outputDir, "train.parquet"), rows(train, "train", o.dataSource));
  o.log(`${train.length} rows from ${trainFile} → ${join(o.outputDir, "train.parquet")}`);
  const files = ["train.parquet"];
  const devFile = splitFile(o.inputDir, "dev");
  let test: EvalItem[] = [];
  if (devFile === undefined) o.log(`no dev file in ${o.inputDir}: no test.parquet`);
  else {
    const dev = await loadDataset(devFile, "dev");
    test = makeRng(o.seed).shuffle([...dev]).slice(0, o.testSize);
    for (const it of test) if (it.golden_answers.length === 0) throw new RecallError(`${devFile}: question '${it.id}' has no golden answers`);
    writeVerlParquet(join(o.outputDir, "test.parquet"), rows(test, "test", o.dataSource));
    o.log(`${test.length} of ${dev.length} rows from ${devFile} (seed ${o.seed}) → ${join(o.outputDir, "test.parquet")}`);
    files.push("test.parquet");
  }
  return { train: train.length, test: test.length, files };
}
