/**
 * Worker-thread side of the retriever pool: opens the index (memory-mapped, so every worker shares
 * the same pages) and answers search jobs one at a time.
 */
import { openBm25RetrieverSync, type Bm25Retriever } from "./bm25_retriever.ts";
import type { WorkerReply, WorkerRequest } from "./worker_messages.ts";

declare const self: Worker;

let retriever: Bm25Retriever | undefined;

self.onmessage = (ev: MessageEvent<WorkerRequest>) => {
  const msg = ev.data;
  let reply: WorkerReply;
  try {
    if (msg.type === "open") {
      retriever = openBm25RetrieverSync(msg.indexPath, msg.corpusPath);
      reply = { type: "opened" };
    } else {
      if (!retriever) throw new Error("retriever worker used before it was opened");
      reply = { type: "results", id: msg.id, results: msg.queries.map((q) => retriever!.searchSync(q, msg.topN)) };
    }
  } catch (e) {
    reply = { type: "error", id: msg.type === "search" ? msg.id : -1, message: e instanceof Error ? e.message : String(e) };
  }
  self.postMessage(reply);
};
