/**
 * JSON over HTTP for remote generators, with the failure handling a long evaluation needs: a per-request
 * timeout, retries with exponential backoff and jitter on 429, 5xx, connection errors, timeouts and
 * unreadable bodies (honouring `Retry-After`), no retry on other 4xx (the request itself is wrong), and
 * a final error that says in a few words why (`HTTP 503`, `timeout after 30s`, `connection refused`) so
 * that failures can be counted by reason.
 */

export interface HttpOptions {
  /** Per-attempt timeout in milliseconds. */
  timeoutMs: number;
  /** Extra attempts after the first. */
  retries: number;
  /** First backoff delay in ms, doubled each retry (±50% jitter). */
  backoffMs: number;
  /** Cap on one backoff delay (and on a server's Retry-After). */
  maxBackoffMs: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Told about each failed attempt that will be retried. */
  onRetry?: (info: { attempt: number; reason: string; delayMs: number; url: string }) => void;
}

export const DEFAULT_HTTP: HttpOptions = { timeoutMs: 300_000, retries: 5, backoffMs: 500, maxBackoffMs: 30_000 };

export type HttpFailureKind = "http" | "timeout" | "connection" | "response";

export class HttpFailure extends Error {
  constructor(
    readonly kind: HttpFailureKind,
    /** A short reason for failure accounting, e.g. `HTTP 503`. */
    readonly reason: string,
    readonly url: string,
    readonly attempts: number,
    readonly status?: number,
    readonly body?: string,
  ) {
    super(`${reason} from ${url}${attempts > 1 ? ` (after ${attempts} attempts)` : ""}${body ? `: ${body.slice(0, 300)}` : ""}`);
    this.name = "HttpFailure";
  }

  get retryable(): boolean {
    return this.kind !== "http" || this.status === 429 || (this.status !== undefined && this.status >= 500);
  }
}

function retryAfterMs(h: string | null): number | undefined {
  if (!h) return undefined;
  const s = Number(h);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(h);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : undefined;
}

function connectionReason(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  if (code === "ConnectionRefused" || code === "ECONNREFUSED" || /refused|unable to connect/i.test(msg)) return "connection refused";
  if (code === "ECONNRESET" || /reset|closed|socket/i.test(msg)) return "connection reset";
  return `connection error (${typeof code === "string" ? code : msg.slice(0, 80)})`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** One attempt: the parsed JSON body, or an HttpFailure (attempts = 1) with any Retry-After hint. */
async function attempt(url: string, body: unknown, opts: HttpOptions): Promise<{ ok: true; value: unknown } | { ok: false; failure: HttpFailure; retryAfter?: number }> {
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...opts.headers },
      body: JSON.stringify(body),
      signal,
    });
    text = await res.text();
  } catch (e) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (timeout.aborted) return { ok: false, failure: new HttpFailure("timeout", `timeout after ${opts.timeoutMs / 1000}s`, url, 1) };
    return { ok: false, failure: new HttpFailure("connection", connectionReason(e), url, 1) };
  }
  if (!res.ok) {
    return { ok: false, failure: new HttpFailure("http", `HTTP ${res.status}`, url, 1, res.status, text), retryAfter: retryAfterMs(res.headers.get("retry-after")) };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, failure: new HttpFailure("response", "unreadable JSON body", url, 1, res.status, text) };
  }
}

/** POSTs JSON and returns the parsed JSON answer, retrying transient failures. Throws HttpFailure. */
export async function postJson(url: string, body: unknown, opts: HttpOptions = DEFAULT_HTTP): Promise<unknown> {
  for (let n = 1; ; n++) {
    const r = await attempt(url, body, opts);
    if (r.ok) return r.value;
    const f = r.failure;
    if (!f.retryable || n > opts.retries) throw new HttpFailure(f.kind, f.reason, f.url, n, f.status, f.body);
    const backoff = Math.min(opts.maxBackoffMs, opts.backoffMs * 2 ** (n - 1)) * (0.5 + Math.random() * 0.5);
    const delayMs = Math.min(opts.maxBackoffMs, Math.max(backoff, r.retryAfter ?? 0));
    opts.onRetry?.({ attempt: n, reason: f.reason, delayMs, url });
    await sleep(delayMs, opts.signal);
  }
}

/** `host:port` (as ReCall's scripts pass it) → `http://host:port`; trailing slashes dropped. */
export function normalizeBaseUrl(url: string): string {
  const u = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
  return u.replace(/\/+$/, "");
}
