/**
 * A Retriever that remembers what it returned for each (query, top_n), so that a tool run in a sandbox
 * — which only hands back text — can still report the passages it retrieved (for retrieval metrics).
 * Put it behind the retriever server the sandboxed tool queries. At most `capacity` answers are kept
 * (oldest dropped first).
 */
import type { Doc, Retriever, SearchResult } from "../retrieval/types.ts";

export class RecordingRetriever implements Retriever {
  private readonly seen = new Map<string, Doc[]>();

  constructor(private readonly inner: Retriever, private readonly capacity = 100_000) {}

  private static key(query: string, topN: number): string {
    return `${topN}\u0000${query.trim()}`;
  }

  private remember(query: string, topN: number, docs: Doc[]): void {
    const k = RecordingRetriever.key(query, topN);
    this.seen.delete(k);
    this.seen.set(k, docs);
    if (this.seen.size > this.capacity) this.seen.delete(this.seen.keys().next().value!);
  }

  /** The passages last returned for this query and top_n, if it was searched. */
  lookup(query: string, topN: number): Doc[] | undefined {
    return this.seen.get(RecordingRetriever.key(query, topN));
  }

  async search(query: string, topN: number): Promise<SearchResult> {
    const r = await this.inner.search(query, topN);
    this.remember(query, topN, r.docs);
    return r;
  }

  async batchSearch(queries: string[], topN: number): Promise<SearchResult[]> {
    const rs = await this.inner.batchSearch(queries, topN);
    rs.forEach((r, i) => this.remember(queries[i]!, topN, r.docs));
    return rs;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
