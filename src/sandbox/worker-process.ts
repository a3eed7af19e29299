/**
 * The host's handle on one sandbox worker process: starts it, speaks the harness's line protocol
 * over its stdin/stdout, runs one call at a time under a wall-clock timer, answers its HTTP
 * requests through the allow-list proxy, watches its memory, and kills it when a limit is broken.
 * Everything the worker sends is treated as untrusted: the host believes one answer per call, for
 * the call's own unguessable id, checks the output and result caps itself, performs at most one HTTP
 * request per call at a time, and ends the worker on anything else (unknown or out-of-step messages,
 * a second answer or request, lines longer than the caps allow).
 */
import { readFileSync, readdirSync, rmSync } from "node:fs";
import type { Subprocess } from "bun";
import { answerFromResultJson } from "./answer.ts";
import type { HttpProxy, ProxyRequest } from "./http-proxy.ts";
import type { WorkerLaunch } from "./worker-launch.ts";
import type { ExecuteAnswer } from "./types.ts";

export type LimitKind = "memory" | "output" | "result" | "message";

export type CallOutcome =
  | { kind: "answer"; answer: ExecuteAnswer }
  | { kind: "timeout" }
  | { kind: "limit"; what: LimitKind }
  | { kind: "crash"; detail: string };

export interface WorkerSettings {
  launch: WorkerLaunch;
  /** Sent to the harness first: caps and the requests shim. */
  init: Record<string, unknown>;
  /** Longest protocol line accepted from the worker. */
  maxLineBytes: number;
  /** Kill the worker when its process tree grows this much resident memory past its size at start-up (Linux only; 0 = off). */
  rssGrowthLimitBytes: number;
  startTimeoutMs: number;
  proxy: HttpProxy;
  /** Caps checked on every answer, whatever the worker reports: characters of output, bytes of result JSON. */
  outputLimit: number;
  resultLimit: number;
  /** Serve one call, then kill the process and its process group (`--engine python`: a fresh process per call). */
  singleUse?: boolean;
}

/** Python refuses to print an int of more digits than this (sys.int_max_str_digits); a longer number in a result is forged. */
const MAX_INT_DIGITS = 4300;

/** Characters as Python counts them (code points). */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00) n--;
  }
  return n;
}

/** Whether a JSON text has a run of more than MAX_INT_DIGITS digits outside its strings. */
function hasHugeNumber(json: string): boolean {
  let run = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
      run = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (++run > MAX_INT_DIGITS) return true;
    } else {
      run = 0;
    }
  }
  return false;
}

interface PendingCall {
  id: string;
  /** An HTTP request of this call is being performed. */
  http: boolean;
  resolve: (o: CallOutcome) => void;
  timer: ReturnType<typeof setTimeout>;
  deadline: number;
  rssTimer?: ReturnType<typeof setInterval>;
}

let nextWorkerId = 1;

/** Resident memory of a process and its descendants, from /proc (undefined where /proc is absent). */
export function treeRssBytes(pid: number): number | undefined {
  try {
    const pageSize = 4096;
    let total = 0;
    const stack = [pid];
    const seen = new Set<number>();
    while (stack.length) {
      const p = stack.pop()!;
      if (seen.has(p)) continue;
      seen.add(p);
      const statm = readFileSync(`/proc/${p}/statm`, "utf8").split(" ");
      total += Number(statm[1]) * pageSize;
      for (const task of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${task}/children`, "utf8").trim();
        if (kids) for (const k of kids.split(/\s+/)) stack.push(Number(k));
      }
    }
    return total;
  } catch {
    return undefined;
  }
}

export class WorkerProcess {
  readonly id = nextWorkerId++;
  readonly startedAt = performance.now();
  /** Milliseconds from spawn to the harness's ready message. */
  coldStartMs = 0;
  calls = 0;
  python = "";
  /** Start-up phases: spawn → runtime loaded (host clock), and the worker's own uptime at that point. */
  loadedAtMs = 0;
  workerUptimeAtLoadMs = 0;
  /** Whether the worker started from the interpreter snapshot: "used", "none" or "failed: why". */
  snapshot = "none";
  private proc: Subprocess<"pipe", "pipe", "pipe">;
  private pending: PendingCall | undefined;
  private dead = false;
  private killedFor: string | undefined;
  private stderrTail = "";
  private readyResolve!: () => void;
  private readyReject!: (e: Error) => void;
  readonly ready: Promise<void>;
  private baselineRss = 0;
  /** Between an answer and the worker's "idle": it is putting back what the call changed. */
  private settling: { resolve: (ok: boolean) => void; timer: ReturnType<typeof setTimeout>; done: Promise<boolean> } | undefined;
  /** Called once when the process is gone, for whatever reason. */
  onExit: (w: WorkerProcess) => void = () => {};

  constructor(private readonly settings: WorkerSettings) {
    this.ready = new Promise<void>((res, rej) => {
      this.readyResolve = res;
      this.readyReject = rej;
    });
    this.ready.catch(() => {});
    const { launch } = settings;
    this.proc = Bun.spawn(launch.argv, {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: launch.env,
      cwd: launch.cwd,
    });
    const startTimer = setTimeout(() => this.fail(`did not start within ${settings.startTimeoutMs / 1000} s`), settings.startTimeoutMs);
    this.ready.then(() => clearTimeout(startTimer), () => clearTimeout(startTimer));
    void this.readStdout();
    void this.readStderr();
    void this.proc.exited.then((code) => this.exited(code));
    this.send({ t: "init", home: launch.home, scratch: launch.scratch, ...settings.init });
  }

  get alive(): boolean {
    return !this.dead;
  }

  get busy(): boolean {
    return this.pending !== undefined || this.settling !== undefined;
  }

  /** Resolves true once the worker is ready for another call, false if it died first. */
  whenIdle(): Promise<boolean> {
    if (this.dead) return Promise.resolve(false);
    return this.settling ? this.settling.done : Promise.resolve(true);
  }

  private settle(ok: boolean): void {
    const s = this.settling;
    if (!s) return;
    this.settling = undefined;
    clearTimeout(s.timer);
    s.resolve(ok);
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Why the worker was killed, if it was. */
  get killReason(): string | undefined {
    return this.killedFor;
  }

  private send(obj: object): void {
    if (this.dead) return;
    try {
      this.proc.stdin.write(JSON.stringify(obj) + "\n");
      this.proc.stdin.flush();
    } catch {
      this.kill("its stdin closed");
    }
  }

  private fail(why: string): void {
    this.readyReject(new Error(`sandbox worker ${why}${this.stderrTail ? `: ${this.stderrTail.trim().split("\n").slice(-3).join(" | ")}` : ""}`));
    this.kill(why);
  }

  kill(reason: string): void {
    if (!this.killedFor) this.killedFor = reason;
    if (this.dead) return;
    this.dead = true;
    this.settle(false);
    if (this.settings.singleUse) {
      try {
        process.kill(-this.proc.pid, "SIGKILL"); // the worker's process group: children it forked too
      } catch {
        // no such group (under bubblewrap the PID namespace goes with the process)
      }
    }
    try {
      this.proc.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Ends the worker politely (closes its stdin); kills it if it has not gone within a second. */
  async close(): Promise<void> {
    if (this.dead) return;
    try {
      this.proc.stdin.end();
    } catch {
      // ignore
    }
    const t = setTimeout(() => this.kill("closed"), 1000);
    await this.proc.exited;
    clearTimeout(t);
  }

  private exited(code: number | null): void {
    this.dead = true;
    this.settle(false);
    if (this.settings.launch.ownDir) rmSync(this.settings.launch.ownDir, { recursive: true, force: true });
    this.readyReject(new Error(`sandbox worker exited during start-up (code ${code})${this.stderrTail ? `: ${this.stderrTail.trim().split("\n").slice(-3).join(" | ")}` : ""}`));
    const p = this.pending;
    if (p) {
      this.finish({ kind: "crash", detail: this.killedFor ?? `worker exited with code ${code}` });
    }
    // After the pool has seen the call's outcome (it counts replacements there).
    setTimeout(() => this.onExit(this), 0);
  }

  private async readStderr(): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of this.proc.stderr) {
        this.stderrTail = (this.stderrTail + dec.decode(chunk)).slice(-4096);
      }
    } catch {
      // the process is gone
    }
  }

  private async readStdout(): Promise<void> {
    const reader = this.proc.stdout.getReader();
    let parts: Uint8Array[] = [];
    let len = 0;
    const max = this.settings.maxLineBytes;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        let start = 0;
        for (let i = value.indexOf(0x0a); i >= 0; i = value.indexOf(0x0a, start)) {
          parts.push(value.subarray(start, i));
          const line = Buffer.concat(parts).toString("utf8");
          parts = [];
          len = 0;
          start = i + 1;
          this.handleLine(line);
        }
        if (start < value.length) {
          parts.push(value.slice(start));
          len += value.length - start;
          if (len > max) {
            this.limit("message");
            return;
          }
        }
      }
    } catch {
      // the process is gone
    }
  }

  private handleLine(line: string): void {
    if (this.dead) return; // killed: whatever it still had in the pipe is not trusted
    if (line.length > this.settings.maxLineBytes) return this.limit("message");
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return this.protocolError("a line that is not JSON");
    }
    switch (msg.t) {
      case "ready":
        if (this.coldStartMs > 0) return this.protocolError("a second ready");
        this.python = String(msg.python ?? "");
        this.coldStartMs = performance.now() - this.startedAt;
        this.baselineRss = treeRssBytes(this.proc.pid) ?? 0;
        this.readyResolve();
        return;
      case "loaded":
        this.snapshot = String(msg.snapshot ?? "none");
        this.loadedAtMs = performance.now() - this.startedAt;
        this.workerUptimeAtLoadMs = typeof msg.at_ms === "number" ? msg.at_ms : 0;
        return;
      case "answer":
        return this.onAnswer(msg);
      case "idle":
        if (!this.settling) return this.protocolError("an idle nobody waited for");
        return this.settle(true);
      case "http":
        return this.onHttp(msg);
      case "limit":
        return this.limit(msg.what === "memory" || msg.what === "output" || msg.what === "result" ? msg.what : "message");
      case "fatal": {
        const message = String(msg.message ?? "fatal error");
        if (!this.pending) return this.fail(`failed: ${message}`);
        this.killedFor = /Maximum call stack size exceeded/i.test(message) ? "stack overflow" : `fatal: ${message.slice(0, 300)}`;
        return this.kill(this.killedFor);
      }
      default:
        return this.protocolError(`an unknown message ${JSON.stringify(String(msg.t)).slice(0, 40)}`);
    }
  }

  private protocolError(what: string): void {
    if (!this.pending) return this.fail(`sent ${what}`);
    this.kill(`protocol violation (${what})`);
  }

  private limit(what: LimitKind): void {
    if (!this.pending) return this.fail(`broke its ${what} limit while starting`);
    this.finish({ kind: "limit", what });
    this.kill(`${what} limit`);
  }

  private onAnswer(msg: Record<string, unknown>): void {
    const p = this.pending;
    if (!p || msg.id !== p.id) return this.protocolError("an answer nobody asked for");
    const output = typeof msg.output === "string" ? msg.output : "";
    const error = typeof msg.error === "string" ? msg.error : null;
    const resultJson = typeof msg.result_json === "string" ? msg.result_json : null;
    let limit = msg.limit;
    if (output.length > this.settings.outputLimit && codePoints(output) > this.settings.outputLimit) limit = "output";
    if (resultJson !== null && (resultJson.length > this.settings.resultLimit || hasHugeNumber(resultJson))) limit ??= "result";
    if (limit === "output" || limit === "result" || limit === "memory") {
      this.finish({ kind: "limit", what: limit });
      this.kill(`${limit} limit`);
      return;
    }
    let answer: ExecuteAnswer;
    try {
      answer = answerFromResultJson(output, resultJson, error);
    } catch {
      return this.protocolError("a result that is not JSON");
    }
    this.calls++;
    if (this.settings.singleUse) {
      this.finish({ kind: "answer", answer });
      this.kill("closed"); // its one call is done
      return;
    }
    let resolve!: (ok: boolean) => void;
    const done = new Promise<boolean>((r) => (resolve = r));
    this.settling = { resolve, done, timer: setTimeout(() => this.kill("did not put its state back within 10 s"), 10_000) };
    this.finish({ kind: "answer", answer });
  }

  private onHttp(msg: Record<string, unknown>): void {
    const p = this.pending;
    if (!p || msg.id !== p.id) return this.protocolError("an HTTP request outside a call");
    if (p.http) return this.protocolError("a second HTTP request before the first was answered");
    p.http = true;
    const req: ProxyRequest = {
      method: String(msg.method ?? "GET"),
      url: String(msg.url ?? ""),
      headers: typeof msg.headers === "object" && msg.headers !== null ? (msg.headers as Record<string, string>) : {},
      body: typeof msg.body_b64 === "string" ? Buffer.from(msg.body_b64, "base64") : undefined,
      timeoutSec: typeof msg.timeout === "number" ? msg.timeout : undefined,
    };
    void this.settings.proxy.fetch(req, p.deadline).then((res) => {
      if (this.pending !== p || this.dead) return;
      p.http = false;
      this.send({ t: "http_result", ...res });
    });
  }

  private finish(o: CallOutcome): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    if (p.rssTimer) clearInterval(p.rssTimer);
    p.resolve(o);
  }

  /** Runs one call; resolves with its outcome (never rejects). The worker must be ready and idle. */
  run(env: string, call: string, timeoutMs: number): Promise<CallOutcome> {
    if (this.dead) return Promise.resolve({ kind: "crash", detail: this.killedFor ?? "worker is gone" });
    if (this.busy) throw new Error("sandbox worker is busy");
    if (this.settings.singleUse && this.calls > 0) throw new Error("a single-use sandbox worker got a second call");
    const id = crypto.randomUUID();
    return new Promise<CallOutcome>((resolve) => {
      const timer = setTimeout(() => {
        this.finish({ kind: "timeout" });
        this.kill("timeout");
      }, timeoutMs);
      const pending: PendingCall = { id, http: false, resolve, timer, deadline: Date.now() + timeoutMs };
      const rssLimit = this.settings.rssGrowthLimitBytes;
      if (rssLimit > 0 && this.baselineRss > 0) {
        pending.rssTimer = setInterval(() => {
          const rss = treeRssBytes(this.proc.pid);
          if (rss !== undefined && rss > this.baselineRss + rssLimit) this.limit("memory");
        }, 100);
      }
      this.pending = pending;
      this.send({ t: "call", id, env, call });
    });
  }
}
