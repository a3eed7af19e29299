/**
 * Reading an `intermediate_data.json` back — one written by `recall eval` or by FlashRAG itself — for
 * `recall eval score` and `recall eval judge`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RecallError, errorMessage } from "../errors.ts";
import { INTERMEDIATE_FILE } from "./output.ts";
import type { DocLike } from "./metrics.ts";

export interface StoredItem {
  id: string;
  question: string;
  golden_answers: string[];
  pred: string;
  retrieval_result?: DocLike[];
  /** Set when the run recorded this item as failed. */
  error?: string;
}

export function readIntermediate(inputDir: string): { file: string; items: StoredItem[] } {
  const file = existsSync(inputDir) && inputDir.endsWith(".json") ? inputDir : join(inputDir, INTERMEDIATE_FILE);
  if (!existsSync(file)) throw new RecallError(`no ${INTERMEDIATE_FILE} in '${inputDir}'`, { hint: "--input_dir is an output folder of 'recall eval' or FlashRAG" });
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new RecallError(`${file}: not valid JSON (${errorMessage(e)})`);
  }
  if (!Array.isArray(v)) throw new RecallError(`${file}: expected a JSON list of items`);
  const items = v.map((raw, i): StoredItem => {
    const at = `${file} item ${i + 1}`;
    if (raw === null || typeof raw !== "object") throw new RecallError(`${at}: not an object`);
    const r = raw as Record<string, unknown>;
    const out = (r.output ?? {}) as Record<string, unknown>;
    const golds = r.golden_answers;
    if (!Array.isArray(golds)) throw new RecallError(`${at}: no 'golden_answers' list`);
    const pred = out.pred;
    const item: StoredItem = {
      id: r.id === undefined ? String(i) : String(r.id),
      question: typeof r.question === "string" ? r.question : "",
      golden_answers: golds.map(String),
      pred: typeof pred === "string" ? pred : pred === null || pred === undefined ? "" : String(pred),
    };
    if (Array.isArray(out.retrieval_result)) item.retrieval_result = out.retrieval_result as DocLike[];
    if (typeof out.error === "string") item.error = out.error;
    return item;
  });
  return { file, items };
}
