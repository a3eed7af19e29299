/**
 * The local sandbox: a warm pool of worker processes behind one FIFO queue, used in-process by
 * training and evaluation and served over HTTP by `recall sandbox serve`. Each call runs on one idle
 * worker, from a fresh interpreter state, under its own wall-clock limit: a Pyodide worker puts its
 * whole interpreter back after every call (pyodide-pristine.ts), an `--engine python` worker serves
 * one call and is replaced by a fresh process. A call that breaks a limit (time, memory, output,
 * result size) gets an error answer and its worker is killed and replaced, while other calls carry
 * on. Pyodide workers are also retired after a number of calls, their replacement started first.
 */
import { availableParallelism } from "node:os";
import { RecallError } from "../errors.ts";
import { timeoutAnswer } from "./answer.ts";
import { HttpProxy } from "./http-proxy.ts";
import { detectOsSandbox, type OsSandbox } from "./os-sandbox.ts";
import { discardSnapshot, ensurePyodideSnapshot } from "./pyodide-snapshot.ts";
import requestsShim from "./requests_shim.py" with { type: "text" };
import type { ExecuteAnswer, ExecuteRequest, ToolExecutor } from "./types.ts";
import { type Engine, pyodideLaunch, pythonLaunch, type WorkerLaunch } from "./worker-launch.ts";
import { type CallOutcome, WorkerProcess } from "./worker-process.ts";

export interface LocalSandboxOptions {
  /** Warm workers (default: the number of CPU cores). */
  workers?: number;
  /** "pyodide" (default: CPython in WebAssembly, no Python needed) or "python" (the system python3; needs an OS sandbox). */
  engine?: Engine;
  /** Memory a call may use, in MiB (default 512). */
  memoryMb?: number;
  /** Largest `timeout` a request may ask for, in seconds (default 30); larger ones are clamped, and ones below MIN_TIMEOUT raised. */
  maxTimeout?: number;
  /** Timeout of a request that gives none, in seconds (ReCall's default, 5). */
  defaultTimeout?: number;
  /** URLs whose origins tool code may reach through `requests` (e.g. the retriever). */
  allowUrls?: string[];
  /** Most characters a call may print (default 1 MiB). */
  outputLimit?: number;
  /** Most bytes a call's JSON result may take (default 1 MiB). */
  resultLimit?: number;
  /** Per HTTP request made by a tool: largest timeout in seconds (default 30) and response size in bytes (default 10 MiB). */
  httpTimeout?: number;
  httpMaxBytes?: number;
  /** Calls a Pyodide worker serves before it is replaced (default 1000; `--engine python` workers serve one). */
  maxCallsPerWorker?: number;
  /** "auto" (default): bubblewrap when usable; "none": plain processes. */
  osSandbox?: "auto" | "none";
  /** Allow `--engine python` without an OS sandbox. */
  unsafeNoIsolation?: boolean;
  /** Calls that may wait for a worker before new ones are refused (default 100000). */
  maxQueue?: number;
  /** Called after every call with its duration and outcome (for logs and metrics). */
  onCall?: (info: CallInfo) => void;
}

export interface CallInfo {
  /** Milliseconds from execute() to the answer; `waitMs` of them in the queue. */
  ms: number;
  waitMs: number;
  outcome: "ok" | "error" | "timeout" | "memory" | "output" | "result" | "crash" | "refused";
  worker?: number;
}

export interface SandboxStats {
  engine: Engine;
  osSandbox: OsSandbox;
  workers: { target: number; ready: number; busy: number; starting: number };
  queued: number;
  calls: number;
  replaced: Record<string, number>;
  coldStartMs: { last: number; mean: number };
  allowOrigins: string[];
}

interface Job {
  req: ExecuteRequest;
  enqueued: number;
  resolve: (a: ExecuteAnswer) => void;
}

/** Shortest wall-clock limit of a call, in seconds: below it every call would time out and cost a worker. */
export const MIN_TIMEOUT = 0.1;

const LIMIT_TEXT = {
  memory: (s: LocalSandbox) => `memory limit exceeded: the call used more than ${s.memoryMb} MB`,
  output: (s: LocalSandbox) => `output limit exceeded: more than ${s.outputLimit} characters printed`,
  result: (s: LocalSandbox) => `result too large: its JSON is more than ${s.resultLimit} bytes`,
  message: () => "the sandbox worker sent an oversized message and was replaced",
};

export class LocalSandbox implements ToolExecutor {
  readonly engine: Engine;
  readonly memoryMb: number;
  readonly maxTimeout: number;
  readonly defaultTimeout: number;
  readonly outputLimit: number;
  readonly resultLimit: number;
  readonly target: number;
  readonly os: OsSandbox;
  private readonly proxy: HttpProxy;
  private readonly maxCalls: number;
  private readonly maxQueue: number;
  private readonly unsafe: boolean;
  private readonly onCall?: (info: CallInfo) => void;
  private readonly idle: WorkerProcess[] = [];
  private readonly all = new Set<WorkerProcess>();
  private readonly starting = new Set<WorkerProcess>();
  private readonly retiring = new Set<WorkerProcess>();
  private readonly queue: Job[] = [];
  private closed = false;
  private calls = 0;
  private readonly replaced: Record<string, number> = {};
  private readonly counted = new Set<WorkerProcess>();
  private coldStarts: number[] = [];
  private startFailures = 0;
  private lastStartError = "";
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];
  private snapshot: string | undefined;

  constructor(opts: LocalSandboxOptions = {}) {
    this.engine = opts.engine ?? "pyodide";
    if (this.engine !== "pyodide" && this.engine !== "python") throw new RecallError(`unknown sandbox engine '${this.engine as string}' (use pyodide or python)`);
    this.memoryMb = opts.memoryMb ?? 512;
    if (!(this.memoryMb >= 64)) throw new RecallError(`the sandbox memory limit must be at least 64 MB, got ${this.memoryMb}`);
    this.maxTimeout = opts.maxTimeout ?? 30;
    this.defaultTimeout = Math.min(opts.defaultTimeout ?? 5, this.maxTimeout);
    if (!(this.maxTimeout >= MIN_TIMEOUT)) throw new RecallError(`the sandbox's maximum timeout must be at least ${MIN_TIMEOUT} s, got ${this.maxTimeout}`);
    this.outputLimit = opts.outputLimit ?? 1 << 20;
    this.resultLimit = opts.resultLimit ?? 1 << 20;
    this.target = Math.max(1, Math.floor(opts.workers ?? availableParallelism()));
    this.maxCalls = this.engine === "python" ? 1 : (opts.maxCallsPerWorker ?? 1000);
    this.maxQueue = opts.maxQueue ?? 100_000;
    this.unsafe = opts.unsafeNoIsolation ?? false;
    this.onCall = opts.onCall;
    this.os = opts.osSandbox === "none" ? { kind: "none", detail: "OS sandbox turned off; workers are plain processes" } : detectOsSandbox();
    this.proxy = new HttpProxy({
      allowUrls: opts.allowUrls ?? [],
      maxTimeoutMs: (opts.httpTimeout ?? 30) * 1000,
      maxResponseBytes: opts.httpMaxBytes ?? 10 << 20,
    });
    this.launch(); // fail fast on a bad engine set-up (e.g. --engine python with no OS sandbox)
  }

  private launch(): WorkerLaunch {
    return this.engine === "pyodide" ? pyodideLaunch(this.os, this.memoryMb * 2 ** 20, this.snapshot) : pythonLaunch(this.os, this.unsafe);
  }

  /** Starts one worker; it joins the idle set when ready. */
  private spawn(): WorkerProcess {
    const w = new WorkerProcess({
      launch: this.launch(),
      init: {
        output_limit: this.outputLimit,
        result_limit: this.resultLimit,
        memory_bytes: this.memoryMb * 2 ** 20,
        requests_src: requestsShim,
      },
      // Output travels as ASCII JSON (up to 12 bytes a character); the result's JSON text is escaped once more.
      maxLineBytes: 12 * this.outputLimit + 2 * this.resultLimit + (1 << 20),
      rssGrowthLimitBytes: this.memoryMb * 2 ** 20 + (256 << 20),
      startTimeoutMs: 120_000,
      proxy: this.proxy,
      outputLimit: this.outputLimit,
      resultLimit: this.resultLimit,
      singleUse: this.engine === "python",
    });
    this.all.add(w);
    this.starting.add(w);
    w.onExit = () => this.workerGone(w);
    w.ready.then(
      () => {
        this.starting.delete(w);
        this.startFailures = 0;
        if (w.snapshot.startsWith("failed") && this.snapshot) {
          discardSnapshot(this.snapshot);
          this.snapshot = undefined;
        }
        this.coldStarts.push(w.coldStartMs);
        if (this.coldStarts.length > 50) this.coldStarts.shift();
        if (this.closed) return void w.close();
        this.retireOne();
        this.release(w);
      },
      (e: Error) => {
        this.starting.delete(w);
        this.startFailures++;
        this.lastStartError = e.message;
        this.replenish();
      },
    );
    return w;
  }

  /** Brings the pool back to its target size; backs off while workers keep failing to start. */
  private replenish(): void {
    if (this.closed || this.restartTimer) return;
    if (this.startFailures === 0) return this.spawnMissing();
    if (this.startFailures >= 3 && ![...this.all].some((w) => w.alive)) this.failQueue();
    const delay = Math.min(30_000, 250 * 2 ** Math.min(this.startFailures, 7));
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.spawnMissing();
    }, delay);
  }

  private spawnMissing(): void {
    if (this.closed) return;
    const live = [...this.all].filter((w) => w.alive && !this.retiring.has(w)).length;
    for (let i = live; i < this.target; i++) this.spawn();
  }

  private failQueue(): void {
    const error = `the sandbox's workers cannot start: ${this.lastStartError}`;
    for (const job of this.queue.splice(0)) {
      this.inFlight--;
      job.resolve({ output: "", result: null, error });
    }
  }

  private workerGone(w: WorkerProcess): void {
    this.all.delete(w);
    this.retiring.delete(w);
    const i = this.idle.indexOf(w);
    if (i >= 0) this.idle.splice(i, 1);
    if (w.killReason && w.killReason !== "closed" && !this.counted.has(w)) this.countReplaced(w.killReason);
    this.counted.delete(w);
    // A worker that never became ready is handled by its start-up failure, with back-off.
    if (!this.starting.has(w)) this.replenish();
  }

  /** A worker that has served its share is retired once a fresh one is ready. */
  private retireOne(): void {
    for (const w of this.retiring) {
      if (!w.busy) {
        this.retiring.delete(w);
        const i = this.idle.indexOf(w);
        if (i >= 0) this.idle.splice(i, 1);
        void w.close();
        return;
      }
    }
  }

  private release(w: WorkerProcess): void {
    if (!w.alive) return;
    if (this.retiring.has(w) && this.starting.size === 0 && [...this.all].filter((x) => x.alive && !this.retiring.has(x)).length >= this.target) {
      this.retiring.delete(w);
      void w.close();
      return;
    }
    if (w.calls >= this.maxCalls && !this.retiring.has(w)) {
      this.retiring.add(w);
      this.replaced["retired"] = (this.replaced["retired"] ?? 0) + 1;
      this.spawnMissing();
    }
    this.idle.push(w);
    this.dispatch();
  }

  private dispatch(): void {
    while (this.queue.length && this.idle.length) {
      // Prefer workers that are not being retired.
      let i = this.idle.findIndex((w) => !this.retiring.has(w));
      if (i < 0) i = 0;
      const w = this.idle.splice(i, 1)[0]!;
      if (!w.alive) continue;
      const job = this.queue.shift()!;
      void this.runOn(w, job);
    }
  }

  private countReplaced(reason: string): void {
    this.replaced[reason] = (this.replaced[reason] ?? 0) + 1;
  }

  private async runOn(w: WorkerProcess, job: Job): Promise<void> {
    const started = performance.now();
    const seconds = Math.max(MIN_TIMEOUT, Math.min(job.req.timeout ?? this.defaultTimeout, this.maxTimeout));
    const outcome = await w.run(job.req.env, job.req.call, seconds * 1000);
    if (outcome.kind !== "answer") {
      // Counted now rather than when the process is reaped, so stats are current when the answer is.
      this.counted.add(w);
      this.countReplaced(outcome.kind === "timeout" ? "timeout" : outcome.kind === "limit" ? `${outcome.what} limit` : outcome.detail);
    }
    const answer = this.toAnswer(outcome);
    this.calls++;
    this.onCall?.({
      ms: performance.now() - job.enqueued,
      waitMs: started - job.enqueued,
      outcome: outcome.kind === "answer" ? (answer.error ? "error" : "ok") : outcome.kind === "limit" ? outcome.what === "message" ? "crash" : outcome.what : outcome.kind,
      worker: w.id,
    });
    this.inFlight--;
    job.resolve(answer);
    if (this.inFlight === 0 && this.queue.length === 0) for (const f of this.drainWaiters.splice(0)) f();
    if (w.alive && (await w.whenIdle())) this.release(w);
    else this.replenish();
  }

  private toAnswer(o: CallOutcome): ExecuteAnswer {
    switch (o.kind) {
      case "answer":
        return o.answer;
      case "timeout":
        return timeoutAnswer();
      case "limit":
        return { output: "", result: null, error: LIMIT_TEXT[o.what](this) };
      case "crash":
        return {
          output: "",
          result: null,
          error: o.detail === "stack overflow" ? "maximum recursion depth exceeded" : `the sandbox worker stopped unexpectedly (${o.detail}) and was replaced`,
        };
    }
  }

  /** Starts the workers and waits until all are ready (or throws RecallError with why the first failed). */
  async start(): Promise<this> {
    if (this.engine === "pyodide") this.snapshot = await ensurePyodideSnapshot();
    const first = Array.from({ length: this.target }, () => this.spawn());
    const results = await Promise.allSettled(first.map((w) => w.ready));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed && results.every((r) => r.status === "rejected")) {
      await this.close();
      throw new RecallError(`the sandbox cannot start its ${this.engine} workers: ${(failed.reason as Error).message}`, {
        hint: this.os.kind === "bwrap" ? "if bubblewrap is the problem, try the library option osSandbox: \"none\"" : undefined,
      });
    }
    if (failed) this.replenish();
    return this;
  }

  execute(req: ExecuteRequest): Promise<ExecuteAnswer> {
    const enqueued = performance.now();
    const refuse = (error: string) => {
      this.onCall?.({ ms: 0, waitMs: 0, outcome: "refused" });
      return Promise.resolve({ output: "", result: null, error });
    };
    if (this.closed) return refuse("the sandbox is closed");
    if (typeof req.env !== "string" || typeof req.call !== "string") return refuse("env and call must be strings");
    if (req.timeout !== undefined && !(typeof req.timeout === "number" && req.timeout > 0)) return refuse(`timeout must be a positive number of seconds, got ${String(req.timeout)}`);
    if (this.queue.length >= this.maxQueue) return refuse(`the sandbox is overloaded: ${this.queue.length} calls are waiting`);
    if (this.startFailures >= 3 && ![...this.all].some((w) => w.alive)) return refuse(`the sandbox's workers cannot start: ${this.lastStartError}`);
    this.inFlight++;
    return new Promise<ExecuteAnswer>((resolve) => {
      this.queue.push({ req: { env: req.env, call: req.call, timeout: req.timeout }, enqueued, resolve });
      this.dispatch();
    });
  }

  /** Resolves when no call is queued or running. */
  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((res) => this.drainWaiters.push(res));
  }

  /** Process ids of the live workers (the bwrap process when workers run under bubblewrap). */
  workerPids(): number[] {
    return [...this.all].filter((w) => w.alive).map((w) => w.pid);
  }

  stats(): SandboxStats {
    const live = [...this.all].filter((w) => w.alive);
    const cs = this.coldStarts;
    return {
      engine: this.engine,
      osSandbox: this.os,
      workers: {
        target: this.target,
        ready: live.filter((w) => !this.starting.has(w)).length,
        busy: live.filter((w) => w.busy).length,
        starting: this.starting.size,
      },
      queued: this.queue.length,
      calls: this.calls,
      replaced: { ...this.replaced },
      coldStartMs: { last: cs.at(-1) ?? 0, mean: cs.length ? cs.reduce((a, b) => a + b, 0) / cs.length : 0 },
      allowOrigins: [...this.proxy.origins],
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    for (const job of this.queue.splice(0)) {
      this.inFlight--;
      job.resolve({ output: "", result: null, error: "the sandbox is closed" });
    }
    await Promise.all([...this.all].map((w) => w.close()));
  }
}

/** Starts a warm pool of sandbox workers (the in-process sandbox for training and evaluation). */
export async function createLocalSandbox(opts: LocalSandboxOptions = {}): Promise<LocalSandbox> {
  return new LocalSandbox(opts).start();
}
