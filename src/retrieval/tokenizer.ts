/**
 * Text → index terms, as FlashRAG's bm25s backend does it for English, and sensibly for other scripts:
 *
 * 1. lower-case the whole text (`str.lower()` / `toLowerCase()`);
 * 2. split into runs of word characters — letters, digits, combining marks and `_` — and keep runs of
 *    at least two characters (bm25s: the regex `(?u)\b\w\w+\b`);
 * 3. drop stop words (compared before stemming);
 * 4. stem with Snowball English (PyStemmer's `english`).
 *
 * Differences from bm25s, on purpose: combining marks (Unicode M*) count as word characters, so words
 * in Devanagari, Thai, Arabic with harakat, or decomposed Latin stay whole instead of breaking at
 * every mark; and scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar)
 * are indexed as overlapping character bigrams (a lone character as itself), as Lucene's CJK analyzer
 * does, instead of one token per unbroken run. Neither changes anything for English text.
 */
import { createStemmer, type StemmerName } from "./stemmer.ts";

export interface TokenizerOptions {
  stemmer: StemmerName;
  /** Lower-cased stop words, removed before stemming. */
  stopwords: readonly string[];
}

const WORD_RUN = /[\p{L}\p{N}\p{M}_]+/gu;
const NO_SPACE_SCRIPT = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]/u;

export class Bm25Tokenizer {
  private readonly stem: (w: string) => string;
  private readonly stop: Set<string>;

  constructor(readonly options: TokenizerOptions) {
    this.stem = createStemmer(options.stemmer);
    this.stop = new Set(options.stopwords);
  }

  /** Calls `emit` for every term of `text`, in order, duplicates included. */
  forEachTerm(text: string, emit: (term: string) => void): void {
    const lower = text.toLowerCase();
    WORD_RUN.lastIndex = 0;
    for (let m = WORD_RUN.exec(lower); m !== null; m = WORD_RUN.exec(lower)) {
      const run = m[0];
      if (hasHighChar(run) && NO_SPACE_SCRIPT.test(run)) this.splitMixedRun(run, emit);
      else this.word(run, emit);
    }
  }

  terms(text: string): string[] {
    const out: string[] = [];
    this.forEachTerm(text, (t) => out.push(t));
    return out;
  }

  private word(w: string, emit: (term: string) => void): void {
    if (w.length < 2 || (w.length === 2 && isSurrogatePair(w))) return;
    if (this.stop.has(w)) return;
    emit(this.stem(w));
  }

  /** A run that contains characters of a script written without spaces: bigrams there, words elsewhere. */
  private splitMixedRun(run: string, emit: (term: string) => void): void {
    const chars = [...run];
    let i = 0;
    while (i < chars.length) {
      const cjk = NO_SPACE_SCRIPT.test(chars[i]!);
      let j = i + 1;
      while (j < chars.length && NO_SPACE_SCRIPT.test(chars[j]!) === cjk) j++;
      if (!cjk) this.word(chars.slice(i, j).join(""), emit);
      else if (j - i === 1) emit(chars[i]!);
      else for (let k = i; k + 1 < j; k++) emit(chars[k]! + chars[k + 1]!);
      i = j;
    }
  }
}

function hasHighChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x0e00) return true;
  return false;
}

function isSurrogatePair(s: string): boolean {
  const c = s.charCodeAt(0);
  return c >= 0xd800 && c <= 0xdbff;
}
