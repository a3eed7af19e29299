/**
 * FlashRAG's evaluation metrics (SPEC section 7) per item and averaged over items:
 * - `em`, `acc`, `f1`, `precision`, `recall` on SQuAD-normalised strings (src/reward/squad.ts);
 * - `retrieval_recall_top{k}`: 1 when any of the first k retrieved documents contains a gold answer.
 *   "Contains" is FlashRAG's `Retrieval_Recall` rule: the SQuAD-normalised gold is a substring of the
 *   SQuAD-normalised document text (no token boundaries: gold "1837" is in "1837s"; "AT&T" normalises
 *   to "att" and is not in "at t"). A gold that normalises to "" is in every document, as in FlashRAG.
 */
import { exactMatch, normalizeAnswer, substringMatch, tokenScores } from "../reward/squad.ts";
import type { MetricName } from "./config.ts";

export interface DocLike {
  contents?: unknown;
  [k: string]: unknown;
}

/** FlashRAG's retrieval hit: some normalised gold occurs in the normalised document text. */
export function docHasAnswer(golds: readonly string[], text: string): boolean {
  const doc = normalizeAnswer(text);
  return golds.some((g) => doc.includes(normalizeAnswer(g)));
}

export function docText(d: DocLike): string {
  if (typeof d.contents === "string") return d.contents;
  const title = typeof d.title === "string" ? d.title : "";
  const text = typeof d.text === "string" ? d.text : "";
  return title ? `${title}\n${text}` : text;
}

export function retrievalRecall(golds: readonly string[], docs: readonly DocLike[], k: number): number {
  return docs.slice(0, k).some((d) => docHasAnswer(golds, docText(d))) ? 1 : 0;
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
