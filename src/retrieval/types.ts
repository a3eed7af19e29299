/**
 * The retrieval interface the rest of recall codes against: training, evaluation and the HTTP server
 * all take a `Retriever`, whether it searches an index in this process, in worker threads, or on a
 * remote ReCall/FlashRAG server.
 */

/** One corpus row as stored in the corpus JSONL (FlashRAG form: `id`, `contents`, plus any other fields). */
export interface Doc {
  id: string;
  contents: string;
  [field: string]: unknown;
}

/** The top documents for one query, best first, with their scores (same length as `docs`). */
export interface SearchResult {
  docs: Doc[];
  scores: number[];
}

export interface Retriever {
  search(query: string, topN: number): Promise<SearchResult>;
  batchSearch(queries: string[], topN: number): Promise<SearchResult[]>;
  close(): Promise<void>;
}

/** Retrievers that hold several search slots (worker threads) say how many are busy, for `GET /health`. */
export interface RetrieverPoolStatus {
  total: number;
  available: number;
}

export function hasPoolStatus(r: Retriever): r is Retriever & { poolStatus(): RetrieverPoolStatus } {
  return typeof (r as { poolStatus?: unknown }).poolStatus === "function";
}
