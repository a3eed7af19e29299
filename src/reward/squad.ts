/**
 * SQuAD-style answer comparison as ReCall's reward and FlashRAG's metrics compute it: normalise (lowercase,
 * drop ASCII punctuation, drop the words a/an/the, collapse whitespace), then exact match, substring match
 * (`acc`), or token-bag F1 with the yes/no/noanswer rule. Python semantics throughout: `lower()` is
 * Unicode-aware, `\b` word boundaries treat any Unicode letter or digit as a word character, and `split()`
 * splits on Python's whitespace.
 */
import { pySplit } from "../python/text.ts";

const ASCII_PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
// Python's `\b(a|an|the)\b` with Unicode word characters (letters, digits, underscore).
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;

export function normalizeAnswer(s: string): string {
  const lower = s.toLowerCase();
  let noPunc = "";
  for (const ch of lower) if (!ASCII_PUNCTUATION.has(ch)) noPunc += ch;
  return pySplit(noPunc.replace(ARTICLES, " ")).join(" ");
}

export type GroundTruth = string | readonly string[];

/** Ground truths as a list of strings (one string, a list, or numbers as verl data sometimes holds). */
export function goldList(gt: GroundTruth | readonly unknown[] | unknown): string[] {
  if (Array.isArray(gt)) return gt.map((g) => String(g));
  if (gt === null || gt === undefined) return [];
  return [String(gt)];
}

/** em: the normalised prediction equals a normalised gold. */
export function exactMatch(prediction: string, golds: GroundTruth): number {
  const p = normalizeAnswer(prediction);
  return goldList(golds).some((g) => normalizeAnswer(g) === p) ? 1 : 0;
}

/** acc (FlashRAG `Sub_ExactMatch`): a normalised gold occurs inside the normalised prediction. */
export function substringMatch(prediction: string, golds: GroundTruth): number {
  const p = normalizeAnswer(prediction);
  return goldList(golds).some((g) => p.includes(normalizeAnswer(g))) ? 1 : 0;
}

export interface TokenScores {
  f1: number;
  precision: number;
  recall: number;
}

const SPECIAL = new Set(["yes", "no", "noanswer"]);

/**
 * Token-bag F1, precision and recall, each the max over the golds (as FlashRAG/ReCall take them,
 * independently). A pair where either side normalises to yes/no/noanswer and the two differ scores 0.
 */
export function tokenScores(prediction: string, golds: GroundTruth): TokenScores {
  const out: TokenScores = { f1: 0, precision: 0, recall: 0 };
  const p = normalizeAnswer(prediction);
  const pTokens = pySplit(p);
  for (const gold of goldList(golds)) {
    const g = normalizeAnswer(gold);
    if ((SPECIAL.has(p) || SPECIAL.has(g)) && p !== g) continue;
    const gTokens = pySplit(g);
    const counts = new Map<string, number>();
    for (const t of gTokens) counts.set(t, (counts.get(t) ?? 0) + 1);
    let same = 0;
    for (const t of pTokens) {
      const c = counts.get(t) ?? 0;
      if (c > 0) {
        same++;
        counts.set(t, c - 1);
      }
    }
    if (same === 0) continue;
    const precision = same / pTokens.length;
    const recall = same / gTokens.length;
    const f1 = (2 * precision * recall) / (precision + recall);
    out.f1 = Math.max(out.f1, f1);
    out.precision = Math.max(out.precision, precision);
    out.recall = Math.max(out.recall, recall);
  }
  return out;
}

export function f1Score(prediction: string, golds: GroundTruth): number {
  return tokenScores(prediction, golds).f1;
}
