/**
 * Evaluation datasets as FlashRAG reads them: `{data_dir}/{dataset_name}/{split}.jsonl` (or `.json`,
 * `.parquet`), or one file given directly. Rows are `{id, question, golden_answers, metadata?}`;
 * `answer`/`answers` (Tool-Star's `{"question", "answer": [...]}` form) and verl's
 * `reward_model.ground_truth` are accepted as the gold field, and `problem` (Tool-Star's aime25) or
 * `Question` (GAIA) as the question; `--question_key`/`--answer_key` name other fields (`a.b` for a nested one).
 * Rows without an `id` get `{split}_{row}`. The row's other fields
 * are kept (`row`) so that intermediate_data.json can carry them, as the row had them.
 * A malformed row is reported with its file and line (JSONL) or row number.
 */
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { RecallError, errorMessage } from "../errors.ts";
import { mulberry32 } from "../util/prng.ts";
import { jsonSafe, readDataRows } from "../data/rows.ts";

export interface EvalItem {
  id: string;
  question: string;
  golden_answers: string[];
  metadata?: Record<string, unknown>;
  /** The row's fields besides the ones above, as read (parquet int64 values as numbers or strings). */
  row?: Record<string, unknown>;
  /** The row's own `id` value, when it had one (its type kept). */
  rowId?: unknown;
  /** verl rows that carry their own tools (`extra_info.func_schemas` + `env`): re-call runs those, not wikipedia_search. */
  tools?: { funcSchemas: string; env: string };
}

/** Question fields, first found wins. */
export const QUESTION_KEYS = ["question", "problem", "Question"] as const;
/** Gold-answer fields, first found wins (then verl's reward_model.ground_truth). */
export const GOLD_KEYS = ["golden_answers", "answer", "answers", "Final answer"] as const;
const ITEM_KEYS = new Set(["id", "golden_answers", "metadata", "output", ...QUESTION_KEYS]);

/** The fields a dataset's question and gold answers are read from, when not the common ones. */
export interface RowKeys {
  question?: string;
  answer?: string;
}

/** A row's field by name: the key itself, else a dotted path into nested objects (`reward_model.ground_truth`). */
function field(r: Record<string, unknown>, key: string): unknown {
  if (Object.hasOwn(r, key)) return r[key];
  let v: unknown = r;
  for (const part of key.split(".")) {
    if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

export const DATASET_EXTENSIONS = [".jsonl", ".json", ".parquet"] as const;

/** The file for `data_dir/dataset_name/split`, or a RecallError listing where it looked. */
export function findDatasetFile(dataDir: string, datasetName: string, split: string): string {
  const tried = DATASET_EXTENSIONS.map((ext) => join(dataDir, datasetName, `${split}${ext}`));
  const hit = tried.find((p) => existsSync(p));
  if (!hit) {
    throw new RecallError(`no '${split}' split for dataset '${datasetName}' under --data_dir '${dataDir}'`, {
      hint: `looked for ${tried.join(", ")}; or pass --dataset_path FILE`,
    });
  }
  return hit;
}

function toText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return String(v);
  return undefined;
}

/** One raw row → an EvalItem; `at` says where it came from for errors. */
export function rowToItem(row: unknown, index: number, split: string, at: string, rowKeys: RowKeys = {}): EvalItem {
  if (row === null || typeof row !== "object" || Array.isArray(row)) throw new RecallError(`${at}: expected a JSON object row, got ${JSON.stringify(row)?.slice(0, 80)}`);
  const r = row as Record<string, unknown>;
  const keys = Object.keys(r);
  const found = `(row keys: ${keys.join(", ") || "none"})`;
  const present = (k: string) => field(r, k) !== undefined && field(r, k) !== null;
  const qKey = rowKeys.question !== undefined ? (present(rowKeys.question) ? rowKeys.question : undefined) : QUESTION_KEYS.find(present);
  const question = qKey === undefined ? undefined : toText(field(r, qKey));
  if (question === undefined) {
    const wanted = rowKeys.question !== undefined ? `--question_key '${rowKeys.question}'` : `${QUESTION_KEYS.map((k) => `'${k}'`).join(", ")}; or pass --question_key`;
    throw new RecallError(`${at}: row has no question string (${wanted}) ${found}`);
  }
  const rm = r.reward_model as Record<string, unknown> | undefined;
  let gold: unknown;
  if (rowKeys.answer !== undefined) gold = field(r, rowKeys.answer);
  else {
    const gKey = GOLD_KEYS.find(present);
    gold = gKey !== undefined ? r[gKey] : rm && typeof rm === "object" ? rm.ground_truth : undefined;
  }
  if (gold === undefined || gold === null) {
    const wanted = rowKeys.answer !== undefined ? `--answer_key '${rowKeys.answer}'` : `${GOLD_KEYS.map((k) => `'${k}'`).join(", ")} or reward_model.ground_truth; or pass --answer_key`;
    throw new RecallError(`${at}: row has no gold answers (${wanted}) ${found}`);
  }
  const list = Array.isArray(gold) ? gold : [gold];
  const golden = list.map(toText);
  if (golden.some((g) => g === undefined)) throw new RecallError(`${at}: gold answers must be strings, got ${JSON.stringify(gold).slice(0, 80)}`);
  // An empty list would score 0 on every metric and pull the means down without a word: refused (see README, recall eval).
  if (golden.length === 0) {
    throw new RecallError(`${at}: the row's gold answer list is empty; every metric would score it 0`, { hint: "give the row its answers, or remove it from the dataset" });
  }
  const idRaw = r.id ?? (r.extra_info as Record<string, unknown> | undefined)?.id;
  const id = toText(idRaw) ?? `${split}_${index}`;
  const item: EvalItem = { id, question, golden_answers: golden as string[] };
  if (r.metadata !== undefined && r.metadata !== null && typeof r.metadata === "object") item.metadata = r.metadata as Record<string, unknown>;
  if (r.id !== undefined && r.id !== null) item.rowId = jsonSafe(r.id);
  const extra = r.extra_info as Record<string, unknown> | undefined;
  if (extra && typeof extra === "object" && typeof extra.func_schemas === "string" && extra.func_schemas !== "") {
    item.tools = { funcSchemas: extra.func_schemas, env: typeof extra.env === "string" ? extra.env : "" };
  }
  const rest = keys.filter((k) => !ITEM_KEYS.has(k) && k !== qKey);
  if (rest.length > 0) item.row = Object.fromEntries(rest.map((k) => [k, jsonSafe(r[k])]));
  return item;
}

function checkUniqueIds(items: EvalItem[], file: string): void {
  const seen = new Map<string, number>();
  items.forEach((it, i) => {
    const j = seen.get(it.id);
    if (j !== undefined) throw new RecallError(`${file}: id '${it.id}' appears twice (rows ${j + 1} and ${i + 1}); ids must be unique`);
    seen.set(it.id, i);
  });
}

/** Reads a dataset file (by extension). */
export async function loadDataset(file: string, split: string, rowKeys: RowKeys = {}): Promise<EvalItem[]> {
  if (!existsSync(file)) throw new RecallError(`dataset file '${file}' not found`);
  const items = (await readDataRows(file)).map((row, i) => rowToItem(row.value, i, split, row.where, rowKeys));
  if (items.length === 0) throw new RecallError(`${file}: no rows`);
  checkUniqueIds(items, basename(file));
  return items;
}

/** The first `limit` items, or with `random` a seeded random subset of that size (kept in file order). */
export function selectItems(items: EvalItem[], limit: number | undefined, random: boolean, seed = 0): EvalItem[] {
  if (limit === undefined || limit >= items.length) return items;
  if (!random) return items.slice(0, limit);
  const r = mulberry32(seed);
  const idx = items.map((_, i) => i);
  for (let i = 0; i < limit; i++) {
    const j = i + Math.floor(r() * (idx.length - i));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx.slice(0, limit).sort((a, b) => a - b).map((i) => items[i]!);
}
