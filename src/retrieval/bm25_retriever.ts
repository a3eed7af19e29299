/** The in-process retriever: a BM25 index plus its corpus, behind the `Retriever` interface. */
import { RecallError } from "../errors.ts";
import { Bm25Index } from "./bm25_index.ts";
import { DocStore } from "./doc_store.ts";
import type { Retriever, SearchResult } from "./types.ts";

export class Bm25Retriever implements Retriever {
  constructor(readonly index: Bm25Index, readonly store: DocStore) {}

  /** Synchronous search (what worker threads and the async methods call). */
  searchSync(query: string, topN: number): SearchResult {
    if (!Number.isInteger(topN) || topN < 0) throw new RecallError(`top_n must be a non-negative integer, got ${topN}`);
    const hits = this.index.search(query, topN);
    return { docs: hits.docs.map((d) => this.store.get(d)), scores: hits.scores };
  }

  async search(query: string, topN: number): Promise<SearchResult> {
    return this.searchSync(query, topN);
  }

  async batchSearch(queries: string[], topN: number): Promise<SearchResult[]> {
    return queries.map((q) => this.searchSync(q, topN));
  }

  async close(): Promise<void> {
    this.store.close();
  }
}

/** Opens a recall BM25 index in this process. `corpusPath` defaults to the corpus the index was built from. */
export async function openBm25Retriever(indexPath: string, corpusPath?: string): Promise<Retriever> {
  return openBm25RetrieverSync(indexPath, corpusPath);
}

export function openBm25RetrieverSync(indexPath: string, corpusPath?: string): Bm25Retriever {
  const index = Bm25Index.open(indexPath);
  return new Bm25Retriever(index, new DocStore(indexPath, index.manifest, corpusPath));
}
