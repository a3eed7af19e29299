/**
 * The sandbox over HTTP, as ReCall's `sandbox.py` serves it: `POST /execute` with
 * `{"env", "call", "timeout"}` answers `{"output", "result", "error"}` (HTTP 200, also for tool
 * errors, timeouts and broken limits); `GET /health` reports the pool. Request bodies are capped,
 * an optional bearer token is required on /execute, bad requests get FastAPI-style 4xx answers, and
 * nothing a request does takes the server down. A web page must not be able to drive it (cross-site
 * requests, DNS rebinding onto 127.0.0.1): the Host must be a name this server answers to, a
 * browser's Origin must be the server's own, and /execute bodies must be declared JSON (a type no
 * cross-site form or simple request can send).
 */
import { networkInterfaces } from "node:os";
import { consola } from "consola";
import { answerToJson } from "./answer.ts";
import type { LocalSandbox } from "./local-sandbox.ts";
import type { ExecuteRequest } from "./types.ts";

export interface SandboxServerOptions {
  host: string;
  port: number;
  /** Bearer token required on /execute (none: open). */
  token?: string;
  /** Largest request body in bytes. */
  maxBodyBytes: number;
  /** Host names (or addresses) served besides loopback and the bound address; "*" serves any. */
  allowHosts?: string[];
}

const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];

/** The host part of a Host header or URL host (port dropped, IPv6 kept in brackets), lower-cased. */
function hostOnly(hostPort: string): string {
  const h = hostPort.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.indexOf(":");
  return colon < 0 ? h : h.slice(0, colon);
}

/** The names a server bound to `host` answers to. */
export function servedHostNames(host: string, allowHosts: string[] = []): { any: boolean; names: string[] } {
  const names = new Set(LOOPBACK_NAMES);
  const bound = host.includes(":") && !host.startsWith("[") ? `[${host.toLowerCase()}]` : host.toLowerCase();
  if (bound === "0.0.0.0" || bound === "[::]") {
    // Every address of this machine (a client may use any); names still need --allow_host.
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) names.add(a.family === "IPv6" ? `[${a.address.toLowerCase()}]` : a.address);
    }
  } else {
    names.add(bound);
  }
  for (const h of allowHosts) names.add(hostOnly(h));
  return { any: allowHosts.includes("*"), names: [...names] };
}

const JSON_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i;

export interface SandboxServer {
  url: string;
  port: number;
  /** Stops accepting requests, waits for calls in flight, then closes the pool. */
  shutdown(): Promise<void>;
}

function json(status: number, body: unknown): Response {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function detail(status: number, msg: string, loc?: string[], type = "value_error"): Response {
  return json(status, { detail: loc ? [{ type, loc, msg }] : msg });
}

/** Checks an /execute body the way ReCall's pydantic model does (env and call required strings, timeout a positive number). */
export function parseExecuteBody(body: unknown): ExecuteRequest | Response {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return detail(422, "Input should be a valid dictionary", ["body"], "model_attributes_type");
  const b = body as Record<string, unknown>;
  for (const k of ["env", "call"] as const) {
    if (b[k] === undefined) return detail(422, "Field required", ["body", k], "missing");
    if (typeof b[k] !== "string") return detail(422, "Input should be a valid string", ["body", k], "string_type");
  }
  let timeout: number | undefined;
  if (b.timeout !== undefined && b.timeout !== null) {
    const t = typeof b.timeout === "string" && b.timeout.trim() !== "" ? Number(b.timeout) : b.timeout;
    if (typeof t !== "number" || !Number.isFinite(t) || t <= 0) return detail(422, "Input should be a positive number of seconds", ["body", "timeout"], "float_type");
    timeout = t;
  }
  return { env: b.env as string, call: b.call as string, timeout };
}

function tokensEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

export function serveSandbox(pool: LocalSandbox, opts: SandboxServerOptions): SandboxServer {
  let stopping = false;
  const served = servedHostNames(opts.host, opts.allowHosts);
  const servedSet = new Set(served.names);
  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    maxRequestBodySize: opts.maxBodyBytes,
    idleTimeout: Math.min(255, Math.ceil(pool.maxTimeout) + 30),
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const host = req.headers.get("host") ?? "";
      if (!served.any && !servedSet.has(hostOnly(host))) {
        return detail(403, `requests for host '${hostOnly(host)}' are not served here (allowed: ${served.names.join(", ")}; add names with --allow_host)`);
      }
      const origin = req.headers.get("origin");
      if (origin !== null && !served.any) {
        let same = false;
        try {
          same = new URL(origin).host.toLowerCase() === host.trim().toLowerCase();
        } catch {
          // "null" or garbage: not this server
        }
        if (!same) return detail(403, `requests from origin '${origin.slice(0, 200)}' are not served here`);
      }
      if (path === "/health") {
        if (req.method !== "GET" && req.method !== "HEAD") return detail(405, "Method Not Allowed");
        const s = pool.stats();
        return json(200, { status: stopping ? "stopping" : "healthy", ...s });
      }
      if (path !== "/execute") return detail(404, "Not Found");
      if (req.method !== "POST") return detail(405, "Method Not Allowed");
      if (stopping) return detail(503, "the sandbox is shutting down");
      const type = req.headers.get("content-type");
      if (type !== null && !JSON_TYPE.test(type)) return detail(415, `Content-Type must be application/json, got '${type.slice(0, 100)}'`);
      if (opts.token) {
        const auth = req.headers.get("authorization") ?? "";
        const m = /^Bearer\s+(.+)$/i.exec(auth);
        if (!m || !tokensEqual(m[1]!.trim(), opts.token)) {
          return new Response(JSON.stringify({ detail: "Not authenticated" }), {
            status: 401,
            headers: { "content-type": "application/json", "www-authenticate": "Bearer" },
          });
        }
      }
      const length = Number(req.headers.get("content-length") ?? "0");
      if (length > opts.maxBodyBytes) return detail(413, `request body larger than ${opts.maxBodyBytes} bytes`);
      let text: string;
      try {
        text = await req.text();
      } catch {
        return detail(413, `request body larger than ${opts.maxBodyBytes} bytes`);
      }
      if (text.length > opts.maxBodyBytes) return detail(413, `request body larger than ${opts.maxBodyBytes} bytes`);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (e) {
        return detail(422, `JSON decode error: ${(e as Error).message}`, ["body", "0"], "json_invalid");
      }
      const parsed = parseExecuteBody(body);
      if (parsed instanceof Response) return parsed;
      const answer = await pool.execute(parsed);
      return json(200, answerToJson(answer));
    },
    error(e) {
      consola.error(`sandbox server: ${e.message}`);
      return detail(500, "Internal Server Error");
    },
  });
  return {
    url: `http://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${server.port}`,
    port: server.port ?? opts.port,
    async shutdown() {
      stopping = true;
      const stopped = server.stop(false); // no new connections; requests in flight finish
      await pool.drain();
      await Promise.race([stopped, Bun.sleep(1000)]);
      await server.stop(true);
      await pool.close();
    },
  };
}
