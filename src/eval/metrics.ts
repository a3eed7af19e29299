/**
 * FlashRAG's evaluation metrics (SPEC section 7) per item and averaged over items:
 * - `em`, `acc`, `f1`, `precision`, `recall` on SQuAD-normalised strings (src/reward/squad.ts);
 * - `retrieval_recall_top{k}`: 1 when any of the first k retrieved documents contains a gold answer.
 *   "Contains" is FlashRAG's `has_answer`: the text and the answer are NFD-normalised, split into DrQA
 *   tokens (runs of letters/digits/marks, or single other non-space characters), lowercased, and the
 *   answer's tokens must appear as a contiguous run in the document's.
 */
import { exactMatch, substringMatch, tokenScores } from "../reward/squad.ts";
import type { MetricName } from "./config.ts";

export interface DocLike {
  contents?: unknown;
  [k: string]: unknown;
}

const DRQA_TOKEN = /[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]/gu;

function drqaTokens(text: string): string[] {
  return (text.normalize("NFD").match(DRQA_TOKEN) ?? []).map((t) => t.toLowerCase());
}

/** FlashRAG `has_answer` (string match type). */
export function hasAnswer(golds: readonly string[], text: string): boolean {
  const doc = drqaTokens(text);
  for (const g of golds) {
    const a = drqaTokens(g);
    if (a.length === 0) continue;
    for (let i = 0; i + a.length <= doc.length; i++) {
      let ok = true;
      for (let j = 0; j < a.length && ok; j++) ok = doc[i + j] === a[j];
      if (ok) return true;
    }
  }
  return false;
}

export function docText(d: DocLike): string {
  if (typeof d.contents === "string") return d.contents;
  const title = typeof d.title === "string" ? d.title : "";
  const text = typeof d.text === "string" ? d.text : "";
  return title ? `${title}\n${text}` : text;
}

export function retrievalRecall(golds: readonly string[], docs: readonly DocLike[], k: number): number {
  return docs.slice(0, k).some((d) => hasAnswer(golds, docText(d))) ? 1 : 0;
}

export type ItemScores = Record<string, number>;

/** The per-item metric_score FlashRAG stores; `docs` only for methods that retrieve. */
export function scoreItem(pred: string, golds: readonly string[], metrics: readonly MetricName[], docs?: readonly DocLike[], recallTopK = 5): ItemScores {
  const out: ItemScores = {};
  const t = tokenScores(pred, golds);
  for (const m of metrics) {
    if (m === "em") out.em = exactMatch(pred, golds);
    else if (m === "acc") out.acc = substringMatch(pred, golds);
    else out[m] = t[m];
  }
  if (docs) out[`retrieval_recall_top${recallTopK}`] = retrievalRecall(golds, docs, recallTopK);
  return out;
}

/** The mean of each metric over items that have it. */
export function averageScores(items: readonly ItemScores[]): Record<string, number> {
  const sums = new Map<string, [number, number]>();
  for (const s of items) {
    for (const [k, v] of Object.entries(s)) {
      const cur = sums.get(k) ?? [0, 0];
      sums.set(k, [cur[0] + v, cur[1] + 1]);
    }
  }
  return Object.fromEntries([...sums].map(([k, [sum, n]]) => [k, sum / n]));
}
