/** Messages between the retriever pool (main thread) and its worker threads. */
import type { SearchResult } from "./types.ts";

export type WorkerRequest =
  | { type: "open"; indexPath: string; corpusPath?: string }
  | { type: "search"; id: number; queries: string[]; topN: number };

export type WorkerReply =
  | { type: "opened" }
  | { type: "results"; id: number; results: SearchResult[] }
  | { type: "error"; id: number; message: string };
