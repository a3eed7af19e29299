/**
 * The sandbox's only way to the network: requests made by the in-sandbox `requests` shim arrive
 * here and are performed only when the URL's origin (scheme, host, port) is on the allow-list --
 * for ReCall's `wikipedia_search` tool, the retriever's URL. Redirects are followed by hand, each
 * hop checked again. Every request has a timeout (never past the calling tool's own deadline) and a
 * response size cap. Answers are plain data for the worker: `{ok: true, status, headers, body_b64}`
 * or `{ok: false, kind, message}`.
 */
import { RecallError } from "../errors.ts";

export interface ProxyRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  timeoutSec?: number;
}

export type ProxyResult =
  | { ok: true; status: number; reason: string; headers: Record<string, string>; body_b64: string; url: string }
  | { ok: false; kind: "blocked" | "timeout" | "connection" | "too_large" | "redirects" | "invalid"; message: string };

export interface HttpProxyOptions {
  allowUrls: string[];
  /** Per-request timeout when the tool gives none, and the most it may ask for. */
  maxTimeoutMs: number;
  maxResponseBytes: number;
}

const METHODS = new Set(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]);
const DROP_HEADERS = new Set(["host", "content-length", "connection", "transfer-encoding", "keep-alive", "upgrade", "proxy-authorization", "te", "trailer"]);

/** The origin of an allow-list entry; throws RecallError naming the bad entry. */
export function allowedOrigin(entry: string): string {
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(entry) ? entry : `http://${entry}`);
  } catch {
    throw new RecallError(`--allow_url '${entry}' is not a URL`, { hint: "give a URL such as http://127.0.0.1:8000" });
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new RecallError(`--allow_url '${entry}' must be an http:// or https:// URL`);
  return u.origin;
}

export class HttpProxy {
  readonly origins: ReadonlySet<string>;
  constructor(private readonly opts: HttpProxyOptions) {
    this.origins = new Set(opts.allowUrls.map(allowedOrigin));
  }

  allows(url: string): boolean {
    try {
      const u = new URL(url);
      return (u.protocol === "http:" || u.protocol === "https:") && this.origins.has(u.origin);
    } catch {
      return false;
    }
  }

  private blocked(url: string): ProxyResult {
    const allowed = this.origins.size ? `allowed: ${[...this.origins].join(", ")}` : "nothing is allow-listed; start the sandbox with --allow_url";
    return { ok: false, kind: "blocked", message: `the sandbox does not allow requests to '${url}' (${allowed})` };
  }

  /** Performs one request for a tool whose call must finish by `deadline` (ms since epoch). Never throws. */
  async fetch(req: ProxyRequest, deadline: number): Promise<ProxyResult> {
    const method = req.method.toUpperCase();
    if (!METHODS.has(method)) return { ok: false, kind: "invalid", message: `unsupported HTTP method '${req.method}'` };
    if (!this.allows(req.url)) return this.blocked(req.url);
    const asked = req.timeoutSec !== undefined && req.timeoutSec > 0 ? req.timeoutSec * 1000 : this.opts.maxTimeoutMs;
    const timeoutMs = Math.max(1, Math.min(asked, this.opts.maxTimeoutMs, deadline - Date.now()));
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (!DROP_HEADERS.has(k.toLowerCase())) {
        try {
          headers.set(k, v);
        } catch {
          return { ok: false, kind: "invalid", message: `invalid header '${k}'` };
        }
      }
    }
    const signal = AbortSignal.timeout(timeoutMs);
    let url = req.url;
    let currentMethod = method;
    let body = req.body && method !== "GET" && method !== "HEAD" ? req.body : undefined;
    try {
      for (let hop = 0; ; hop++) {
        const res = await fetch(url, { method: currentMethod, headers, body, redirect: "manual", signal });
        const location = res.headers.get("location");
        if (res.status >= 300 && res.status < 400 && location) {
          await res.body?.cancel();
          if (hop >= 5) return { ok: false, kind: "redirects", message: `more than 5 redirects from '${req.url}'` };
          const next = new URL(location, url).toString();
          if (!this.allows(next)) return this.blocked(next);
          if (res.status === 303 || ((res.status === 301 || res.status === 302) && currentMethod === "POST")) {
            currentMethod = "GET";
            body = undefined;
          }
          url = next;
          continue;
        }
        const chunks: Uint8Array[] = [];
        let size = 0;
        if (res.body) {
          for await (const chunk of res.body) {
            size += chunk.length;
            if (size > this.opts.maxResponseBytes) {
              await res.body.cancel().catch(() => {});
              return { ok: false, kind: "too_large", message: `the response from '${url}' is larger than ${this.opts.maxResponseBytes} bytes` };
            }
            chunks.push(chunk);
          }
        }
        const out: Record<string, string> = {};
        res.headers.forEach((v, k) => (out[k] = v));
        return { ok: true, status: res.status, reason: res.statusText, headers: out, body_b64: Buffer.concat(chunks).toString("base64"), url };
      }
    } catch (e) {
      if (signal.aborted) return { ok: false, kind: "timeout", message: `request to '${url}' timed out after ${(timeoutMs / 1000).toFixed(1)} s` };
      const why = e instanceof Error ? e.message : String(e);
      return { ok: false, kind: "connection", message: `cannot reach '${url}': ${why}` };
    }
  }
}
