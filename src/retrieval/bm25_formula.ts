/**
 * The BM25 variant recall scores with: bm25s's `method="lucene"` — FlashRAG's default BM25 backend
 * (bm25s `BM25()` defaults: k1 = 1.5, b = 0.75) and Lucene ≥ 8's BM25Similarity:
 *
 *   score(q, d) = Σ_{t ∈ q} idf(t) · tf(t,d) / (tf(t,d) + k1 · (1 − b + b · |d| / avgdl))
 *   idf(t)      = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))
 *
 * N = number of documents, df(t) = documents containing t, tf(t,d) = occurrences of t in d,
 * |d| = number of terms of d after stop-word removal, avgdl = mean |d| over the corpus. The sum runs
 * over the query's terms with repetition (a term written twice counts twice, as in bm25s). There is
 * no (k1 + 1) factor in the numerator (Lucene dropped it in 8.0; it does not change the ranking).
 * As in bm25s, the per-(term, document) products are computed once at index time and stored as
 * float32; a query adds them up.
 */

export interface Bm25Params {
  k1: number;
  b: number;
}

export const DEFAULT_BM25: Bm25Params = { k1: 1.5, b: 0.75 };

export function bm25Idf(df: number, numDocs: number): number {
  return Math.log(1 + (numDocs - df + 0.5) / (df + 0.5));
}

/** The term-frequency component, tf / (tf + k1 · (1 − b + b · |d| / avgdl)). */
export function bm25Tf(tf: number, docLen: number, avgDocLen: number, p: Bm25Params): number {
  const norm = avgDocLen > 0 ? docLen / avgDocLen : 0;
  return tf / (tf + p.k1 * (1 - p.b + p.b * norm));
}

export function bm25TermScore(tf: number, df: number, docLen: number, numDocs: number, avgDocLen: number, p: Bm25Params): number {
  return bm25Idf(df, numDocs) * bm25Tf(tf, docLen, avgDocLen, p);
}
