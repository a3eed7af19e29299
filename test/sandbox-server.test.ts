/**
 * `recall sandbox serve` over HTTP (ReCall's /execute API), the remote client, and the CLI:
 * exact answers, FastAPI-style errors, limits, auth, 200 concurrent calls, graceful shutdown.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runToolCall } from "../src/sandbox/index.ts";
import { type LocalSandbox, createLocalSandbox } from "../src/sandbox/local-sandbox.ts";
import { RemoteSandbox } from "../src/sandbox/remote-sandbox.ts";
import { type SandboxServer, serveSandbox } from "../src/sandbox/server.ts";
import { PROJECT_ROOT, runRecall } from "./harness.ts";

let pool: LocalSandbox;
let open: SandboxServer;
let locked: SandboxServer;
let retriever: ReturnType<typeof Bun.serve>;
let retrieverUrl = "";

beforeAll(async () => {
  retriever = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const { query, top_n } = (await req.json()) as { query: string; top_n: number };
      return Response.json(Array.from({ length: top_n }, (_, i) => ({ id: String(i), contents: `"Doc ${i}"\nabout ${query}` })));
    },
  });
  retrieverUrl = `http://127.0.0.1:${retriever.port}`;
  pool = await createLocalSandbox({ workers: 2, memoryMb: 256, maxTimeout: 10, allowUrls: [retrieverUrl] });
  open = serveSandbox(pool, { host: "127.0.0.1", port: 0, maxBodyBytes: 64 * 1024 });
  locked = serveSandbox(pool, { host: "127.0.0.1", port: 0, maxBodyBytes: 64 * 1024, token: "s3cret" });
}, 120_000);

afterAll(async () => {
  await locked?.shutdown();
  await open?.shutdown();
  retriever?.stop(true);
});

const post = (body: unknown, opts: { url?: string; headers?: Record<string, string> } = {}) =>
  fetch(`${opts.url ?? open.url}/execute`, {
    method: "POST",
    headers: { "content-type": "application/json", ...opts.headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

describe("POST /execute", () => {
  test("answers {output, result, error} as ReCall's server does", async () => {
    const r = await post({ env: "def f(x):\n    print('x is', x)\n    return {'double': x * 2, 'half': x / 2}", call: "f(x=3)" });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    expect(await r.text()).toBe('{"output": "x is 3\\n", "result": {"double": 6, "half": 1.5}, "error": null}');
    const err = await post({ env: "", call: "int('nope')", timeout: 5 });
    expect(await err.json()).toEqual({ output: "", result: null, error: "invalid literal for int() with base 10: 'nope'" });
  });

  test("a timeout is an answer, not an HTTP error", async () => {
    const r = await post({ env: "while True:\n    pass", call: "1", timeout: 1 });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ output: "", result: null, error: "execution timed out" });
  }, 30_000);

  test("bad requests get FastAPI-style 4xx answers and the server keeps serving", async () => {
    const missing = await post({ call: "1" });
    expect(missing.status).toBe(422);
    expect(await missing.json()).toEqual({ detail: [{ type: "missing", loc: ["body", "env"], msg: "Field required" }] });
    const wrongType = await post({ env: 1, call: "1" });
    expect(wrongType.status).toBe(422);
    expect(((await wrongType.json()) as { detail: { loc: string[] }[] }).detail[0]!.loc).toEqual(["body", "env"]);
    const badTimeout = await post({ env: "", call: "1", timeout: -3 });
    expect(badTimeout.status).toBe(422);
    const notJson = await post("{not json");
    expect(notJson.status).toBe(422);
    expect(((await notJson.json()) as { detail: { type: string }[] }).detail[0]!.type).toBe("json_invalid");
    const tooBig = await post({ env: "#" + "x".repeat(100 * 1024), call: "1" });
    expect(tooBig.status).toBe(413);
    expect((await fetch(`${open.url}/execute`)).status).toBe(405);
    expect((await fetch(`${open.url}/nope`)).status).toBe(404);
    const ok = await post({ env: "", call: "'still here'" });
    expect(await ok.json()).toEqual({ output: "", result: "still here", error: null });
  });

  test("with --token, /execute needs the bearer token", async () => {
    const none = await post({ env: "", call: "1" }, { url: locked.url });
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ detail: "Not authenticated" });
    expect((await post({ env: "", call: "1" }, { url: locked.url, headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    const yes = await post({ env: "", call: "1 + 1" }, { url: locked.url, headers: { authorization: "Bearer s3cret" } });
    expect(await yes.json()).toEqual({ output: "", result: 2, error: null });
  });

  test("GET /health reports the pool", async () => {
    const h = (await (await fetch(`${open.url}/health`)).json()) as { status: string; engine: string; workers: { target: number }; osSandbox: { kind: string }; allowOrigins: string[] };
    expect(h.status).toBe("healthy");
    expect(h.engine).toBe("pyodide");
    expect(h.workers.target).toBe(2);
    expect(["bwrap", "none"]).toContain(h.osSandbox.kind);
    expect(h.allowOrigins).toEqual([retrieverUrl]);
  });

  test("200 concurrent calls all get their own right answer", async () => {
    const env = "def square(i):\n    print(i)\n    return {'i': i, 'sq': i * i}";
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => post({ env, call: `square(i=${i})` }).then((r) => r.json())));
    answers.forEach((a, i) => expect(a).toEqual({ output: `${i}\n`, result: { i, sq: i * i }, error: null }));
  }, 60_000);
});

describe("RemoteSandbox (ReCall's --sandbox_url client)", () => {
  test("returns the flattened RESULT, ReCall's wikipedia_search included", async () => {
    const remote = new RemoteSandbox(open.url);
    const env = readFileSync(join(PROJECT_ROOT, "../shared/spec/wikipedia_search_env.py"), "utf8").replaceAll("<search-url-placeholder>", retrieverUrl);
    expect(await runToolCall(remote, { env, call: "wikipedia_search(query='Ada Lovelace', top_n=2)" })).toBe('result: \n"Doc 0"\nabout Ada Lovelace\n\n"Doc 1"\nabout Ada Lovelace');
    expect(await runToolCall(remote, { env: "", call: "{'a': (1, 2.0)}" })).toBe("result: \n{'a': [1, 2.0]}");
    expect(await runToolCall(remote, { env: "while True: pass", call: "1", timeout: 1 })).toBe("error: execution timed out");
    // the same text as the in-process pool gives
    expect(await runToolCall(pool, { env: "", call: "{'a': (1, 2.0)}" })).toBe("result: \n{'a': [1, 2.0]}");
    await remote.close();
  }, 30_000);

  test("HTTP errors, a silent server, and no server read as ReCall's client reports them", async () => {
    expect(await runToolCall(new RemoteSandbox(locked.url), { env: "", call: "1" })).toBe("error: 401");
    expect(await runToolCall(new RemoteSandbox(locked.url, { token: "s3cret" }), { env: "", call: "1" })).toBe("result: \n1");
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const t0 = performance.now();
      expect(await runToolCall(new RemoteSandbox(`127.0.0.1:${silent.port}`, { timeoutMs: 300 }), { env: "", call: "1" })).toBe("error: execution timed out");
      expect(performance.now() - t0).toBeLessThan(3000);
    } finally {
      silent.stop(true);
    }
    const dead = Bun.serve({ port: 0, fetch: () => new Response("x") });
    const deadUrl = `http://127.0.0.1:${dead.port}`;
    dead.stop(true);
    const unreachable = await runToolCall(new RemoteSandbox(deadUrl, { retries: 2, backoffMs: 10 }), { env: "", call: "1" });
    expect(unreachable).toStartWith(`error: cannot reach the sandbox at ${deadUrl}/execute`);
  }, 30_000);

  test("retries 503 and then uses the answer", async () => {
    let hits = 0;
    const flaky = Bun.serve({
      port: 0,
      fetch: () => (++hits <= 2 ? new Response("busy", { status: 503 }) : new Response('{"output":"","result":3.0,"error":null}', { headers: { "content-type": "application/json" } })),
    });
    try {
      expect(await runToolCall(new RemoteSandbox(`http://127.0.0.1:${flaky.port}`, { backoffMs: 10 }), { env: "", call: "3.0" })).toBe("result: \n3.0");
      expect(hits).toBe(3);
    } finally {
      flaky.stop(true);
    }
  });
});

describe("recall sandbox CLI", () => {
  test("exec prints the JSON answer, --flat the RESULT text", () => {
    const env = "def add(a, b):\n    print('adding')\n    return a + b\n";
    const r = runRecall(["sandbox", "exec", "--env", "-", "--call", "add(a=2, b=3)"], { input: env });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"output": "adding\\n", "result": 5, "error": null}\n');
    const flat = runRecall(["sandbox", "exec", "--env", "-", "--call", "add(a=2, b=3)", "--flat"], { input: env });
    expect(flat.stdout).toBe("result: \n5\noutput: \nadding\n");
  }, 60_000);

  test("--allow_url repeats and takes commas; anything else is refused inside Python", () => {
    const r = runRecall(["sandbox", "exec", "--env", "-", "--call", "requests.get('http://c:3/')", "--allow_url", "http://a:1", "--allow-url", "http://b:2,https://d"], {
      input: "import requests",
    });
    expect(r.stdout).toBe(`{"output": "", "result": null, "error": "the sandbox does not allow requests to 'http://c:3/' (allowed: http://a:1, http://b:2, https://d)"}\n`);
  }, 60_000);

  test("exec names a bad flag value or a missing file", () => {
    const missing = runRecall(["sandbox", "exec", "--env", "/nonexistent/tools.py", "--call", "f()"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("cannot read --env /nonexistent/tools.py");
    const engine = runRecall(["sandbox", "exec", "--env", "-", "--call", "f()", "--engine", "lua"], { input: "" });
    expect(engine.code).toBe(1);
    expect(engine.stderr).toContain("flag --engine expects pyodide or python, got 'lua'");
  });

  test("serve answers, then shuts down gracefully on SIGTERM, finishing the call in flight", async () => {
    const proc = Bun.spawn([join(PROJECT_ROOT, "recall"), "sandbox", "serve", "--port", "0", "--workers", "1", "--memory_mb", "128"], {
      stdout: "pipe",
      stderr: "pipe",
      // Without NODE_ENV=test (set by bun test), which would silence consola's info lines.
      env: { ...process.env, NO_COLOR: "1", NODE_ENV: "production" },
    });
    try {
      let log = "";
      const dec = new TextDecoder();
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line in: ${log}`)), 60_000);
        const read = async (s: ReadableStream<Uint8Array>) => {
          for await (const chunk of s) {
            log += dec.decode(chunk);
            const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(log);
            if (m) {
              clearTimeout(timer);
              resolve(m[1]!);
            }
          }
        };
        void read(proc.stdout);
        void read(proc.stderr);
      });
      const slow = fetch(`${url}/execute`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ env: "import time", call: "time.sleep(1.5) or 'finished'" }) });
      await Bun.sleep(400);
      proc.kill("SIGTERM");
      const answer = await slow;
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual({ output: "", result: "finished", error: null });
      expect(await proc.exited).toBe(0);
      expect(log).toContain("isolation:");
      expect(log).toContain("SIGTERM: finishing calls in flight");
      await expect(fetch(`${url}/health`)).rejects.toThrow();
    } finally {
      proc.kill("SIGKILL"); // no orphan server if an expectation failed
    }
  }, 90_000);
});
