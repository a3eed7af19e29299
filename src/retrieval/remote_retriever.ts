/**
 * A `Retriever` backed by a ReCall/FlashRAG retriever server (or `recall retriever serve`), through
 * its `/search` and `/batch_search` endpoints with `return_score: true`. Network errors, timeouts
 * and 5xx answers are retried with exponential backoff; 4xx answers are not (the request is wrong).
 */
import { RecallError } from "../errors.ts";
import type { Doc, Retriever, SearchResult } from "./types.ts";

export interface RemoteRetrieverOptions {
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** Extra attempts after the first (default 3). */
  retries?: number;
  /** First backoff delay, doubled each retry (default 250 ms). */
  backoffMs?: number;
}

class HttpStatusError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export class RemoteRetriever implements Retriever {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;

  constructor(url: string, opts: RemoteRetrieverOptions = {}) {
    this.baseUrl = url.replace(/\/+$/, "").replace(/\/(search|batch_search|retrieve)$/, "");
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 250;
  }

  async search(query: string, topN: number): Promise<SearchResult> {
    if (query.trim() === "") return { docs: [], scores: [] };
    const body = await this.post("/search", { query, top_n: topN, return_score: true });
    if (!Array.isArray(body) || body.length !== 2) throw this.shapeError("/search", body);
    return toResult(body[0], body[1], () => this.shapeError("/search", body));
  }

  async batchSearch(queries: string[], topN: number): Promise<SearchResult[]> {
    if (queries.length === 0) return [];
    const body = await this.post("/batch_search", { query: queries, top_n: topN, return_score: true });
    if (!Array.isArray(body) || body.length !== 2 || !Array.isArray(body[0]) || !Array.isArray(body[1]) || body[0].length !== queries.length) {
      throw this.shapeError("/batch_search", body);
    }
    const [docLists, scoreLists] = body as [unknown[], unknown[]];
    return docLists.map((d, i) => toResult(d, scoreLists[i], () => this.shapeError("/batch_search", body)));
  }

  async health(): Promise<unknown> {
    const res = await fetch(this.baseUrl + "/health", { signal: AbortSignal.timeout(this.timeoutMs) });
    return res.json();
  }

  async close(): Promise<void> {}

  private shapeError(path: string, body: unknown): RecallError {
    const text = JSON.stringify(body) ?? String(body);
    return new RecallError(`retriever ${this.baseUrl}${path} answered an unexpected shape: ${text.slice(0, 200)}`);
  }

  private async post(path: string, payload: unknown): Promise<unknown> {
    let lastErr: unknown;
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (attempt > 0) await Bun.sleep(this.backoffMs * 2 ** (attempt - 1));
      try {
        const res = await fetch(this.baseUrl + path, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(payload),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const text = await res.text();
        if (!res.ok) {
          let detail = text;
          try {
            const d = (JSON.parse(text) as { detail?: unknown }).detail;
            if (d !== undefined) detail = typeof d === "string" ? d : JSON.stringify(d);
          } catch {
            /* not JSON: keep the text */
          }
          throw new HttpStatusError(res.status, `retriever ${this.baseUrl}${path} answered HTTP ${res.status}: ${detail.slice(0, 300)}`);
        }
        try {
          return JSON.parse(text);
        } catch {
          throw new RecallError(`retriever ${this.baseUrl}${path} answered non-JSON: ${text.slice(0, 200)}`);
        }
      } catch (e) {
        if (e instanceof RecallError) throw e;
        if (e instanceof HttpStatusError && e.status < 500) throw new RecallError(e.message);
        lastErr = e;
      }
    }
    const reason = lastErr instanceof Error ? (lastErr.name === "TimeoutError" ? `timed out after ${this.timeoutMs} ms` : lastErr.message) : String(lastErr);
    throw new RecallError(`retriever ${this.baseUrl}${path} failed after ${this.retries + 1} attempts: ${reason}`);
  }
}

function toResult(docs: unknown, scores: unknown, bad: () => Error): SearchResult {
  if (!Array.isArray(docs) || !Array.isArray(scores) || docs.length !== scores.length) throw bad();
  const out: Doc[] = docs.map((d) => {
    if (d === null || typeof d !== "object") throw bad();
    const row = d as Record<string, unknown>;
    return { ...row, id: String(row.id ?? ""), contents: String(row.contents ?? "") };
  });
  return { docs: out, scores: scores.map((s) => Number(s)) };
}
