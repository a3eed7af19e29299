/**
 * The retriever HTTP API (ReCall's /health, /search, /batch_search; Search-R1's /retrieve) on a real
 * server bound to an OS-chosen port, the worker-thread pool, and RemoteRetriever (retries, timeouts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBm25Index, openBm25Retriever, RemoteRetriever, startRetrieverServer, type Retriever, type RunningRetrieverServer } from "../src/retrieval/index.ts";
import { ENGLISH_STOPWORDS } from "../src/retrieval/stopwords.ts";
import { WorkerPoolRetriever } from "../src/retrieval/worker_pool.ts";
import { PROJECT_ROOT, rng } from "./harness.ts";

const FIX = new URL("../fixtures/retrieval/", import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), "recall-retriever-server-"));
const indexPath = join(tmp, "golden");
let local: Retriever;
let server: RunningRetrieverServer;

beforeAll(async () => {
  buildBm25Index({ corpusPath: join(FIX, "golden_corpus.jsonl"), indexPath, stopwords: [...ENGLISH_STOPWORDS] });
  local = await openBm25Retriever(indexPath);
  server = await startRetrieverServer(local, { host: "127.0.0.1", port: 0, defaultTopK: 3 });
});
afterAll(async () => {
  await server.stop();
  await local.close();
  rmSync(tmp, { recursive: true, force: true });
});

const post = async (path: string, body: unknown) => {
  const res = await fetch(server.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as unknown };
};

describe("retriever HTTP API", () => {
  test("binds 127.0.0.1 on an OS-chosen port; /health", async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(server.url + "/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "healthy", retrievers: { total: 1, available: 1 } });
  });

  test("/search: docs, or [docs, scores] with return_score; top_n respected; same as in-process", async () => {
    const a = await post("/search", { query: "storm taints", top_n: 4 });
    expect(a.status).toBe(200);
    const docs = a.body as { id: string; contents: string }[];
    expect(docs).toHaveLength(4);
    expect(Object.keys(docs[0]!).sort()).toEqual(["contents", "id"]);
    const b = await post("/search", { query: "storm taints", top_n: 4, return_score: true });
    const [docs2, scores] = b.body as [unknown[], number[]];
    expect(docs2).toEqual(docs);
    const want = await local.search("storm taints", 4);
    expect(scores).toEqual(want.scores);
    expect(docs).toEqual(want.docs);
    const dflt = await post("/search", { query: "storm taints" });
    expect((dflt.body as unknown[]).length).toBe(10); // ReCall's default top_n
  });

  test("/search: empty or blank query is 400 'Query content cannot be empty'", async () => {
    for (const query of ["", "   \n"]) {
      const r = await post("/search", { query });
      expect(r.status).toBe(400);
      expect(r.body).toEqual({ detail: "Query content cannot be empty" });
    }
  });

  test("bad requests: 400 for non-JSON, 422 with FastAPI-style details for missing or mistyped fields", async () => {
    const bad = await post("/search", "{not json");
    expect(bad.status).toBe(400);
    expect((bad.body as { detail: string }).detail).toStartWith("Invalid JSON body");
    const missing = await post("/search", { top_n: 3 });
    expect(missing.status).toBe(422);
    expect(missing.body).toEqual({ detail: [{ loc: ["body", "query"], msg: "Field required", type: "missing" }] });
    const types = await post("/search", { query: 5, top_n: "many", return_score: "perhaps" });
    expect(types.status).toBe(422);
    expect((types.body as { detail: { loc: string[] }[] }).detail.map((d) => d.loc[1])).toEqual(["query", "top_n", "return_score"]);
    expect((await post("/search", { query: "storm", top_n: -1 })).status).toBe(422);
    expect((await post("/search", [1, 2])).status).toBe(422);
    expect((await post("/batch_search", { query: "not a list" })).status).toBe(422);
    expect((await post("/batch_search", { query: ["ok", 7] })).body).toEqual({ detail: [{ loc: ["body", "query", 1], msg: "Input should be a valid string", type: "string_type" }] });
    // pydantic's lax coercions are accepted
    expect((await post("/search", { query: "storm", top_n: "2", return_score: 1 })).body).toHaveLength(2);
  });

  test("request size limits (issue 17: 150 × top_n 10,000 took 1.5 GiB): top_n, queries and their product, each a 422 naming the limit", async () => {
    const s = await startRetrieverServer(local, { port: 0, limits: { maxTopN: 50, maxBatch: 4, maxResults: 60 } });
    const at = (path: string, body: unknown) => fetch(s.url + path, { method: "POST", body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as { detail: { msg: string }[] } }));
    try {
      const big = await at("/search", { query: "storm", top_n: 51 });
      expect([big.status, big.body.detail[0]!.msg]).toEqual([422, "Input should be between 0 and 50 (the server's --max_top_n)"]);
      const many = await at("/batch_search", { query: ["a", "b", "c", "d", "e"], top_n: 1 });
      expect([many.status, many.body.detail[0]!.msg]).toEqual([422, "List should have at most 4 items (the server's --max_batch)"]);
      const product = await at("/batch_search", { query: ["storm", "taints", "swiss"], top_n: 21 });
      expect(product.status).toBe(422);
      expect(product.body.detail[0]!.msg).toStartWith("3 queries × top_n 21 = 63 results, over the server's limit of 60 (--max_results)");
      const retrieve = await at("/retrieve", { queries: ["storm", "taints", "swiss"], topk: 21 });
      expect(retrieve.body.detail[0]!.msg).toStartWith("3 queries × topk 21 = 63 results");
      expect((await at("/batch_search", { query: ["storm", "taints", "swiss"], top_n: 20 })).status).toBe(200);
    } finally {
      await s.stop();
    }
  });

  test("a port in use is a one-line error, and the command exits (issue 17)", async () => {
    const port = Number(new URL(server.url).port);
    await expect(startRetrieverServer(local, { port })).rejects.toThrow(`cannot listen on 127.0.0.1:${port}: the port is in use`);
    const p = Bun.spawn([`${PROJECT_ROOT}/recall`, "retriever", "serve", "--index_path", indexPath, "--port", String(port)], { stderr: "pipe", stdout: "pipe" });
    const timer = setTimeout(() => p.kill(), 30_000);
    const code = await p.exited;
    clearTimeout(timer);
    const stderr = await new Response(p.stderr).text();
    expect(code).toBe(1);
    expect(stderr).toContain(`cannot listen on 127.0.0.1:${port}: the port is in use`);
    expect(stderr).not.toContain("    at ");
  }, 60_000);

  test("/batch_search: doc lists, or [doc_lists, score_lists]; blank entries give empty lists", async () => {
    const queries = ["storm taints", "", "philosophies switzerland"];
    const plain = await post("/batch_search", { query: queries, top_n: 3 });
    expect(plain.status).toBe(200);
    const lists = plain.body as unknown[][];
    expect(lists.map((l) => l.length)).toEqual([3, 0, 3]);
    const scored = await post("/batch_search", { query: queries, top_n: 3, return_score: true });
    const [docLists, scoreLists] = scored.body as [unknown[][], number[][]];
    expect(docLists).toEqual(lists);
    expect(scoreLists[0]).toEqual((await local.search("storm taints", 3)).scores);
    expect((await post("/batch_search", { query: [] })).body).toEqual([]);
  });

  test("/retrieve (Search-R1): {result: [[doc]]} or {result: [[{document, score}]]}; topk defaults to the server's", async () => {
    const r = await post("/retrieve", { queries: ["storm taints"], return_scores: true });
    const result = (r.body as { result: { document: { id: string }; score: number }[][] }).result;
    expect(result[0]).toHaveLength(3);
    const want = await local.search("storm taints", 3);
    expect(result[0]!.map((x) => x.document.id)).toEqual(want.docs.map((d) => d.id));
    expect(result[0]!.map((x) => x.score)).toEqual(want.scores);
    const plain = await post("/retrieve", { queries: ["storm taints"], topk: 2 });
    expect((plain.body as { result: unknown[][] }).result[0]).toEqual(want.docs.slice(0, 2));
  });

  test("404 and 405", async () => {
    expect((await fetch(server.url + "/nope")).status).toBe(404);
    expect((await fetch(server.url + "/search")).status).toBe(405);
    expect((await fetch(server.url + "/health", { method: "POST" })).status).toBe(405);
  });

  test("survives hostile input, then still answers", async () => {
    const r = rng(11);
    for (let i = 0; i < 60; i++) {
      const bytes = new Uint8Array(Math.floor(r() * 400)).map(() => Math.floor(r() * 256));
      const res = await fetch(server.url + (i % 2 ? "/search" : "/batch_search"), { method: "POST", body: bytes });
      expect([400, 422]).toContain(res.status);
    }
    const weird = await post("/search", { query: "\ud800 😀 \u0000 東京大学 " + "x".repeat(100_000), top_n: 10_000 });
    expect(weird.status).toBe(200);
    expect((await fetch(server.url + "/health")).status).toBe(200);
  });

  test("many concurrent clients get the same answers as sequential searches", async () => {
    const queries = Array.from({ length: 200 }, (_, i) => ["storm taints", "philosophies switzerland", "roost the in", "taints rill"][i % 4]!);
    const got = await Promise.all(queries.map((q) => post("/search", { query: q, top_n: 5, return_score: true })));
    for (let i = 0; i < queries.length; i++) {
      expect(got[i]!.status).toBe(200);
      const want = await local.search(queries[i]!, 5);
      expect(got[i]!.body).toEqual([want.docs, want.scores]);
    }
  });
});

describe("worker pool (--num_retriever)", () => {
  test("N workers answer like the in-process retriever; /health counts them", async () => {
    const pool = await WorkerPoolRetriever.start(2, indexPath);
    const s = await startRetrieverServer(pool, { port: 0 });
    try {
      expect(await (await fetch(s.url + "/health")).json()).toEqual({ status: "healthy", retrievers: { total: 2, available: 2 } });
      const qs = ["storm taints", "philosophies switzerland", "GOGOL UNCONSCIOUS managements", "roost the in"];
      const results = await Promise.all(qs.flatMap((q) => [pool.search(q, 5), pool.search(q, 5)]));
      for (let i = 0; i < results.length; i++) expect(results[i]).toEqual(await local.search(qs[i >> 1]!, 5));
      expect(await pool.batchSearch(qs, 3)).toEqual(await local.batchSearch(qs, 3));
      expect(pool.poolStatus()).toEqual({ total: 2, available: 2 });
    } finally {
      await s.stop();
      await pool.close();
    }
  });

  test("a pool over a missing index fails to start with the index error", async () => {
    await expect(WorkerPoolRetriever.start(1, join(tmp, "missing"))).rejects.toThrow(/not a recall BM25 index/);
  });
});

describe("RemoteRetriever", () => {
  test("talks to /search and /batch_search and returns what the server's retriever returns", async () => {
    const remote = new RemoteRetriever(server.url + "/");
    expect(await remote.search("storm taints", 5)).toEqual(await local.search("storm taints", 5));
    expect(await remote.batchSearch(["storm taints", "taints rill"], 2)).toEqual(await local.batchSearch(["storm taints", "taints rill"], 2));
    expect(await remote.search("  ", 5)).toEqual({ docs: [], scores: [] });
  });

  test("retries 5xx and network failures with backoff; does not retry 4xx", async () => {
    let calls = 0;
    const flaky = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(req) {
        calls++;
        if (calls <= 2) return new Response("busy", { status: 503 });
        const body = (await req.json()) as { top_n: number };
        if (body.top_n === 99) return Response.json({ detail: "bad top_n" }, { status: 422 });
        return Response.json([[{ id: "x", contents: "hello" }], [1.5]]);
      },
    });
    try {
      const remote = new RemoteRetriever(`http://127.0.0.1:${flaky.port}`, { retries: 3, backoffMs: 5 });
      expect(await remote.search("q", 1)).toEqual({ docs: [{ id: "x", contents: "hello" }], scores: [1.5] });
      expect(calls).toBe(3);
      calls = 10;
      await expect(remote.search("q", 99)).rejects.toThrow("HTTP 422: bad top_n");
      expect(calls).toBe(11);
    } finally {
      flaky.stop(true);
    }
    const dead = new RemoteRetriever("http://127.0.0.1:9", { retries: 1, backoffMs: 5, timeoutMs: 2000 });
    await expect(dead.search("q", 1)).rejects.toThrow(/failed after 2 attempts/);
  });

  test("times out a server that does not answer", async () => {
    const slow = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Bun.sleep(2000).then(() => Response.json([[], []])) });
    try {
      const remote = new RemoteRetriever(`http://127.0.0.1:${slow.port}`, { retries: 1, backoffMs: 1, timeoutMs: 100 });
      await expect(remote.search("q", 1)).rejects.toThrow(/timed out after 100 ms/);
    } finally {
      slow.stop(true);
    }
  });
});
