/**
 * `--num_retriever N`: N worker threads, each with the index open, behind one `Retriever`. Requests
 * queue and go to the next idle worker (a batch stays on one worker, as in ReCall's server, where a
 * request holds one retriever). `poolStatus()` feeds `/health`. A worker that dies is replaced and
 * its job fails with an error rather than hanging.
 */
import { consola } from "consola";
import { RecallError } from "../errors.ts";
import type { Retriever, RetrieverPoolStatus, SearchResult } from "./types.ts";
import type { WorkerReply, WorkerRequest } from "./worker_messages.ts";

interface Job {
  id: number;
  queries: string[];
  topN: number;
  resolve: (r: SearchResult[]) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

// From source the worker sits beside this file. In the single binary, scripts/build.ts embeds it as an extra
// entry point, addressed by its path from the project root.
const WORKER_URL = import.meta.url.includes("$bunfs") ? "./src/retrieval/retriever_worker.ts" : new URL("./retriever_worker.ts", import.meta.url).href;

export class WorkerPoolRetriever implements Retriever {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  private constructor(private readonly indexPath: string, private readonly corpusPath: string | undefined) {}

  /** Starts `n` workers and waits until each has opened the index; rejects if one cannot. */
  static async start(n: number, indexPath: string, corpusPath?: string, startTimeoutMs = 30_000): Promise<WorkerPoolRetriever> {
    const pool = new WorkerPoolRetriever(indexPath, corpusPath);
    try {
      for (let i = 0; i < n; i++) pool.slots.push(await pool.spawn(startTimeoutMs));
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  private spawn(timeoutMs: number): Promise<Slot> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(WORKER_URL);
      const slot: Slot = { worker, job: undefined };
      const timer = setTimeout(() => {
        worker.terminate();
        reject(new RecallError(`retriever worker did not start within ${timeoutMs} ms`));
      }, timeoutMs);
      worker.onmessage = (ev: MessageEvent<WorkerReply>) => {
        const m = ev.data;
        if (m.type === "opened") {
          clearTimeout(timer);
          worker.onmessage = (e: MessageEvent<WorkerReply>) => this.onReply(slot, e.data);
          worker.addEventListener("close", () => this.onExit(slot));
          resolve(slot);
        } else if (m.type === "error") {
          clearTimeout(timer);
          worker.terminate();
          reject(new RecallError(m.message));
        }
      };
      worker.onerror = (ev) => {
        clearTimeout(timer);
        reject(new RecallError(`retriever worker failed to start: ${ev.message}`));
      };
      const open: WorkerRequest = { type: "open", indexPath: this.indexPath, corpusPath: this.corpusPath };
      worker.postMessage(open);
    });
  }

  private onReply(slot: Slot, m: WorkerReply): void {
    const job = slot.job;
    slot.job = undefined;
    if (job && m.type === "results" && m.id === job.id) job.resolve(m.results);
    else if (job && m.type === "error") job.reject(new RecallError(m.message));
    this.dispatch();
  }

  private onExit(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    slot.job?.reject(new RecallError("retriever worker exited during a search"));
    slot.job = undefined;
    if (this.closed) return;
    consola.warn("retriever worker exited; starting a new one");
    this.spawn(30_000).then(
      (s) => {
        if (this.closed) s.worker.terminate();
        else {
          this.slots.push(s);
          this.dispatch();
        }
      },
      (e: Error) => consola.error(`could not replace retriever worker: ${e.message}`),
    );
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.job || this.queue.length === 0) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      const req: WorkerRequest = { type: "search", id: job.id, queries: job.queries, topN: job.topN };
      slot.worker.postMessage(req);
    }
  }

  private submit(queries: string[], topN: number): Promise<SearchResult[]> {
    if (this.closed) return Promise.reject(new RecallError("retriever pool is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, queries, topN, resolve, reject });
      this.dispatch();
    });
  }

  async search(query: string, topN: number): Promise<SearchResult> {
    return (await this.submit([query], topN))[0]!;
  }

  batchSearch(queries: string[], topN: number): Promise<SearchResult[]> {
    return this.submit(queries, topN);
  }

  poolStatus(): RetrieverPoolStatus {
    return { total: this.slots.length, available: this.slots.filter((s) => !s.job).length };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new RecallError("retriever pool closed"));
    for (const s of this.slots.splice(0)) {
      s.job?.reject(new RecallError("retriever pool closed"));
      s.worker.terminate();
    }
  }
}
