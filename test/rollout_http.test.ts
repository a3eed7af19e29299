/**
 * The remote generators' HTTP layer against a real local server: per-request timeout, retries with
 * backoff on 429 (honouring Retry-After) / 5xx / connection refused, no retry on other 4xx, and the
 * short failure reasons used for failure accounting.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { HttpFailure, normalizeBaseUrl, postJson, type HttpOptions } from "../src/rollout/remote/http.ts";
import { SglangGenerator } from "../src/rollout/remote/sglang.ts";

let hits = 0;
const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(req) {
    hits++;
    const path = new URL(req.url).pathname;
    if (path === "/slow") {
      await Bun.sleep(400);
      return Response.json({ ok: true });
    }
    if (path === "/429-then-ok") return hits % 2 === 1 ? new Response("slow down", { status: 429, headers: { "retry-after": "0" } }) : Response.json({ ok: 2 });
    if (path === "/400") return new Response("bad field", { status: 400 });
    if (path === "/500") return new Response("boom", { status: 500 });
    if (path === "/garbage") return new Response("<html>", { status: 200 });
    if (path === "/generate") return Response.json({ text: "hi", meta_info: { finish_reason: { type: "abort", message: "prompt too long" } } });
    return Response.json({ echo: await req.json() });
  },
});
afterAll(() => void server.stop(true));
const base = `http://127.0.0.1:${server.port}`;
const opts = (o: Partial<HttpOptions> = {}): HttpOptions => ({ timeoutMs: 2000, retries: 2, backoffMs: 1, maxBackoffMs: 5, ...o });

describe("postJson", () => {
  test("round trip", async () => {
    expect(await postJson(`${base}/echo`, { a: 1 }, opts())).toEqual({ echo: { a: 1 } });
  });
  test("per-request timeout, retried, then a 'timeout' failure", async () => {
    const retries: string[] = [];
    const t0 = performance.now();
    const e = await postJson(`${base}/slow`, {}, opts({ timeoutMs: 100, retries: 1, onRetry: (i) => retries.push(i.reason) })).catch((x) => x);
    expect(e).toBeInstanceOf(HttpFailure);
    expect((e as HttpFailure).reason).toBe("timeout after 0.1s");
    expect((e as HttpFailure).attempts).toBe(2);
    expect(retries).toEqual(["timeout after 0.1s"]);
    expect(performance.now() - t0).toBeLessThan(1500);
  });
  test("429 with Retry-After is retried", async () => {
    hits = 0;
    expect(await postJson(`${base}/429-then-ok`, {}, opts())).toEqual({ ok: 2 });
  });
  test("400 fails at once; 500 after the retries; unreadable body; connection refused", async () => {
    hits = 0;
    const bad = (await postJson(`${base}/400`, {}, opts()).catch((x) => x)) as HttpFailure;
    expect([bad.reason, bad.attempts, hits]).toEqual(["HTTP 400", 1, 1]);
    expect(bad.message).toContain("bad field");
    hits = 0;
    const boom = (await postJson(`${base}/500`, {}, opts()).catch((x) => x)) as HttpFailure;
    expect([boom.reason, boom.attempts, hits]).toEqual(["HTTP 500", 3, 3]);
    const garbage = (await postJson(`${base}/garbage`, {}, opts({ retries: 0 })).catch((x) => x)) as HttpFailure;
    expect(garbage.reason).toBe("unreadable JSON body");
    const refused = (await postJson("http://127.0.0.1:9/x", {}, opts({ retries: 1 })).catch((x) => x)) as HttpFailure;
    expect(refused.kind).toBe("connection");
    expect(refused.attempts).toBe(2);
  });
  test("an aborted run stops waiting at once", async () => {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error("stop")), 50);
    await expect(postJson(`${base}/slow`, {}, opts({ signal: ctl.signal }))).rejects.toThrow("stop");
  });
  test("host:port as ReCall's scripts pass it", () => {
    expect(normalizeBaseUrl("127.0.0.1:30000/")).toBe("http://127.0.0.1:30000");
    expect(normalizeBaseUrl("https://x.y/v1")).toBe("https://x.y/v1");
  });
  test("SGLang abort finish reason is a failure with the server's message", async () => {
    const g = new SglangGenerator(base, opts());
    await expect(g.complete("p", { maxNewTokens: 4, temperature: 0 })).rejects.toThrow(/generation aborted by server: prompt too long/);
  });
});
