/**
 * Client for a remote sandbox URL (ReCall's `--sandbox_url`): `POST {url}/execute` with
 * `{env, call, timeout}`, retried on connection failures and 502/503/504, with a client-side
 * timeout. Failures become answers whose flattened text is what ReCall's client returns for them
 * (`error: execution timed out`, `error: <status>`).
 */
import { RecallError } from "../errors.ts";
import { failureAnswer, parseAnswerBody, timeoutAnswer } from "./answer.ts";
import type { ExecuteAnswer, ExecuteRequest, ToolExecutor } from "./types.ts";

export interface RemoteSandboxOptions {
  /** Sent as `Authorization: Bearer <token>` (for `recall sandbox serve --token`). */
  token?: string;
  /** Attempts after the first on connection errors and 502/503/504 (default 3). */
  retries?: number;
  /** Client-side limit per attempt in ms (default: the call's timeout + 10 s, for queueing on the server). */
  timeoutMs?: number;
  /** Pause before the first retry in ms, doubling after each (default 200). */
  backoffMs?: number;
}

const RETRY_STATUS = new Set([502, 503, 504]);

function normalizeUrl(url: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
  try {
    const u = new URL(withScheme);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http");
  } catch {
    throw new RecallError(`sandbox URL '${url}' is not an http:// or https:// URL`);
  }
  return withScheme.replace(/\/+$/, "");
}

export class RemoteSandbox implements ToolExecutor {
  readonly url: string;
  private readonly controllers = new Set<AbortController>();
  private closed = false;

  constructor(url: string, private readonly opts: RemoteSandboxOptions = {}) {
    this.url = normalizeUrl(url);
  }

  async execute(req: ExecuteRequest): Promise<ExecuteAnswer> {
    const endpoint = `${this.url}/execute`;
    const body = JSON.stringify(req.timeout === undefined ? { env: req.env, call: req.call } : { env: req.env, call: req.call, timeout: req.timeout });
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const retries = this.opts.retries ?? 3;
    const timeoutMs = this.opts.timeoutMs ?? (req.timeout ?? 5) * 1000 + 10_000;
    let backoff = this.opts.backoffMs ?? 200;
    let lastError = "";
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (this.closed) return failureAnswer("the sandbox client is closed", "error: the sandbox client is closed");
      if (attempt > 0) {
        await Bun.sleep(backoff);
        backoff *= 2;
      }
      const ctl = new AbortController();
      this.controllers.add(ctl);
      const timer = setTimeout(() => ctl.abort(new DOMException("timeout", "TimeoutError")), timeoutMs);
      try {
        const res = await fetch(endpoint, { method: "POST", headers, body, signal: ctl.signal });
        const text = await res.text();
        if (res.status === 200) {
          try {
            return parseAnswerBody(text);
          } catch (e) {
            return failureAnswer(`the sandbox at ${this.url} sent an answer that is not ReCall's JSON: ${(e as Error).message}`, `error: invalid sandbox answer`);
          }
        }
        lastError = `HTTP ${res.status} from ${endpoint}: ${text.slice(0, 200)}`;
        if (!RETRY_STATUS.has(res.status)) return failureAnswer(lastError, `error: ${res.status}`);
        if (attempt === retries) return failureAnswer(lastError, `error: ${res.status}`);
      } catch (e) {
        if (ctl.signal.aborted) {
          if (this.closed) return failureAnswer("the sandbox client is closed", "error: the sandbox client is closed");
          return timeoutAnswer();
        }
        lastError = `cannot reach the sandbox at ${endpoint}: ${e instanceof Error ? e.message : String(e)}`;
      } finally {
        clearTimeout(timer);
        this.controllers.delete(ctl);
      }
    }
    return failureAnswer(lastError, `error: ${lastError}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.controllers) c.abort();
  }
}
