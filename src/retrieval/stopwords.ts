/**
 * Stop words removed before stemming. The default, `english`, is the 33-word list that FlashRAG's
 * bm25s backend uses (`bm25s.tokenization.Tokenizer(stopwords="en")`), which is also Lucene's
 * `EnglishAnalyzer` default set. Words are compared after lower-casing, before stemming, as bm25s does.
 */
import { existsSync, readFileSync } from "node:fs";
import { RecallError } from "../errors.ts";

export const ENGLISH_STOPWORDS: readonly string[] = [
  "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
  "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
  "will", "with",
];

/**
 * `english` (default), `none`, a path to a file with one word per line, or a comma-separated list.
 * Returns the words lower-cased, de-duplicated and sorted (they are stored in the index manifest).
 */
export function resolveStopwords(spec: string | undefined): string[] {
  const s = (spec ?? "english").trim();
  let words: string[];
  if (s === "english" || s === "en") words = [...ENGLISH_STOPWORDS];
  else if (s === "none" || s === "") words = [];
  else if (existsSync(s)) {
    try {
      words = readFileSync(s, "utf8").split(/\r?\n/);
    } catch (e) {
      throw new RecallError(`cannot read stop-word file '${s}': ${(e as Error).message}`);
    }
  } else if (s.includes(",") || /^[\p{L}\p{N}_']+$/u.test(s)) words = s.split(",");
  else throw new RecallError(`--stopwords '${s}' is not 'english', 'none', an existing file, or a comma-separated list`);
  return [...new Set(words.map((w) => w.trim().toLowerCase()).filter((w) => w.length > 0))].sort();
}
