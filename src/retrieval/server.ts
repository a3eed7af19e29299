/**
 * The retriever HTTP server, wire-compatible with ReCall's `retriever_serving.py` (FlashRAG behind
 * FastAPI) and Search-R1's `/retrieve`:
 *
 * - `GET /health` → `{"status": "healthy", "retrievers": {"total": N, "available": k}}`
 * - `POST /search` `{query, top_n, return_score}` → docs, or `[docs, scores]`
 * - `POST /batch_search` `{query: [...], top_n, return_score}` → doc lists, or `[doc_lists, score_lists]`
 * - `POST /retrieve` `{queries, topk, return_scores}` → `{"result": [[doc | {document, score}]]}`
 *
 * Docs carry every field of their corpus row. Bad requests get 400/404/405/413/422 with a `detail`;
 * a failure inside a search is a 500 with the reason; nothing a client sends stops the server.
 */
import { consola } from "consola";
import { RecallError, errorMessage } from "../errors.ts";
import { DEFAULT_LIMITS, parseBatchSearchRequest, parseJsonBody, parseRetrieveRequest, parseSearchRequest, RequestError, type RequestLimits } from "./request_validation.ts";
import { hasPoolStatus, type Retriever, type SearchResult } from "./types.ts";

export interface RetrieverServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** `topk` for `/retrieve` requests that omit it (the config's `retrieval_topk`; default 3 as in Search-R1). */
  defaultTopK?: number;
  /** Log each request line (default false). */
  logRequests?: boolean;
  maxBodyBytes?: number;
  /** Caps on top_n, queries per request and their product (default DEFAULT_LIMITS). */
  limits?: Partial<RequestLimits>;
}

export interface RunningRetrieverServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const JSON_HEADERS = { "content-type": "application/json" };

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: JSON_HEADERS });
}

export async function startRetrieverServer(retriever: Retriever, opts: RetrieverServerOptions = {}): Promise<RunningRetrieverServer> {
  const host = opts.host ?? "127.0.0.1";
  const defaultTopK = opts.defaultTopK ?? 3;
  const limits: RequestLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  let inFlight = 0;

  const health = () => {
    const pool = hasPoolStatus(retriever) ? retriever.poolStatus() : { total: 1, available: inFlight > 0 ? 0 : 1 };
    return { status: "healthy", retrievers: { total: pool.total, available: pool.available } };
  };

  const run = async <T>(work: () => Promise<T>): Promise<T> => {
    inFlight++;
    try {
      return await work();
    } finally {
      inFlight--;
    }
  };

  const handle = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname.replace(/\/+$/, "") || "/";
    const routes: Record<string, string> = { "/health": "GET", "/search": "POST", "/batch_search": "POST", "/retrieve": "POST" };
    const method = routes[path];
    if (!method) return json({ detail: "Not Found" }, 404);
    if (req.method !== method && !(method === "GET" && req.method === "HEAD")) return json({ detail: "Method Not Allowed" }, 405);
    if (path === "/health") return json(health());

    const body = parseJsonBody(await req.text());
    if (path === "/search") {
      const r = parseSearchRequest(body, limits);
      const res = await run(() => retriever.search(r.query, r.topN));
      return json(r.returnScore ? [res.docs, res.scores] : res.docs);
    }
    if (path === "/batch_search") {
      const r = parseBatchSearchRequest(body, limits);
      const res = await run(() => batch(retriever, r.queries, r.topN));
      return json(r.returnScore ? [res.map((x) => x.docs), res.map((x) => x.scores)] : res.map((x) => x.docs));
    }
    const r = parseRetrieveRequest(body, defaultTopK, limits);
    const res = await run(() => batch(retriever, r.queries, r.topN));
    return json({
      result: res.map((x) => (r.returnScore ? x.docs.map((doc, i) => ({ document: doc, score: x.scores[i] })) : x.docs)),
    });
  };

  let server: ReturnType<typeof Bun.serve>;
  try {
    server = serveOn(host, opts, handle);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    throw new RecallError(`cannot listen on ${host}:${opts.port ?? 0}: ${code === "EADDRINUSE" || /in use/.test(errorMessage(e)) ? "the port is in use" : errorMessage(e)}`, {
      hint: "choose another --port (0 picks a free one), or stop what is listening there",
    });
  }

  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${server.port}`,
    port: server.port ?? 0,
    async stop() {
      await server.stop(true);
    },
  };
}

function serveOn(host: string, opts: RetrieverServerOptions, handle: (req: Request) => Promise<Response>) {
  return Bun.serve({
    hostname: host,
    port: opts.port ?? 0,
    maxRequestBodySize: opts.maxBodyBytes ?? 16 << 20,
    idleTimeout: 120,
    async fetch(req) {
      const t0 = performance.now();
      let res: Response;
      try {
        res = await handle(req);
      } catch (e) {
        if (e instanceof RequestError) res = json({ detail: e.detail }, e.status);
        else {
          consola.error(`retriever: ${req.method} ${new URL(req.url).pathname} failed: ${errorMessage(e)}`);
          res = json({ detail: `Internal error: ${errorMessage(e)}` }, 500);
        }
      }
      if (opts.logRequests) consola.info(`${req.method} ${new URL(req.url).pathname} ${res.status} ${(performance.now() - t0).toFixed(1)} ms`);
      return res;
    },
    error(e) {
      return json({ detail: `Internal error: ${errorMessage(e)}` }, 500);
    },
  });
}

/** Blank queries in a batch get an empty result instead of failing the whole batch. */
async function batch(retriever: Retriever, queries: string[], topN: number): Promise<SearchResult[]> {
  const live = queries.map((q, i) => ({ q, i })).filter((x) => x.q.trim() !== "");
  const got = live.length ? await retriever.batchSearch(live.map((x) => x.q), topN) : [];
  const out: SearchResult[] = queries.map(() => ({ docs: [], scores: [] }));
  live.forEach((x, k) => (out[x.i] = got[k]!));
  return out;
}
