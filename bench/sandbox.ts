/**
 * bench/sandbox: the sandbox's start-up and call speed, beside the unsafe floor that ReCall's own
 * server stands on (CPython `exec()` in-process, same env and call, same loopback retriever).
 *
 *   ./node_modules/.bin/bun bench/sandbox.ts [--workers 2] [--calls 400] [--concurrency 8] [--http_clients 8]
 *                                            [--python python3] [--no_peer] [--no_os_sandbox] [--python_engine]
 *
 * Prints:
 *  - cold start: the first start on a machine (interpreter snapshot made, then a worker restored from it),
 *    one worker restored from the snapshot (spawn → ready, mean of the pool's), and the whole pool;
 *  - warm pool (after 600 warm-up calls), in-process: per-call latency p50/p99 one call at a time, and calls/s with --concurrency callers,
 *    for a trivial tool (`add(a=1, b=2)`) and ReCall's wikipedia_search env (a requests.post through the
 *    allow-list proxy to a loopback retriever, 5 passages back);
 *  - the same two over HTTP (`POST /execute` to `recall sandbox serve` running as its own process, --http_clients
 *    concurrent clients; the loopback retriever stays in this process);
 *  - with --python_engine: `--engine python` (a fresh python3 process per call), trivial tool, in-process
 *    (under bubblewrap when usable, else with --unsafe_no_isolation);
 *  - the peer: CPython exec() of the same env + call in one process (no isolation, no limits), calls/s.
 *
 * Every Pyodide call includes putting the whole interpreter back afterwards (copying ~30 MiB of
 * WebAssembly memory), which is most of a trivial call's cost.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalSandbox, type LocalSandbox } from "../src/sandbox/local-sandbox.ts";
import type { ExecuteRequest } from "../src/sandbox/types.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.findIndex((a) => a === `--${name}` || a === `--${name.replace(/_/g, "-")}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const flag = (name: string) => argv.includes(`--${name}`) || argv.includes(`--${name.replace(/_/g, "-")}`);
const WORKERS = Number(opt("workers", "2"));
const CALLS = Number(opt("calls", "400"));
const CONCURRENCY = Number(opt("concurrency", "8"));
const HTTP_CLIENTS = Number(opt("http_clients", "8"));
const PYTHON = opt("python", "python3");
const OS_SANDBOX = flag("no_os_sandbox") ? "none" : "auto";
const ROOT = new URL("..", import.meta.url).pathname;

const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

// A loopback retriever shaped like ReCall's: POST /search {query, top_n} → [{id, contents}].
const retriever = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const { query, top_n } = (await req.json()) as { query: string; top_n: number };
    return Response.json(Array.from({ length: top_n }, (_, i) => ({ id: String(i), contents: `"Title ${i}"\nPassage ${i} about ${query}. `.repeat(4) })));
  },
});
const retrieverUrl = `http://127.0.0.1:${retriever.port}`;
const wikiEnv = readFileSync(join(ROOT, "../shared/spec/wikipedia_search_env.py"), "utf8").replaceAll("<search-url-placeholder>", retrieverUrl);
const TRIVIAL: ExecuteRequest = { env: "def add(a, b):\n    return a + b\n", call: "add(a=1, b=2)" };
const WIKI: ExecuteRequest = { env: wikiEnv, call: "wikipedia_search(query='who wrote the analytical engine notes', top_n=5)" };

console.log(`machine: ${navigator.hardwareConcurrency} cores; ${WORKERS} workers, OS sandbox ${OS_SANDBOX}`);

// ---------- cold start ----------
{
  const cache = mkdtempSync(join(tmpdir(), "recall-bench-sbx-cache-"));
  const saved = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = cache;
  try {
    const t0 = performance.now();
    const first = await createLocalSandbox({ workers: 1, osSandbox: OS_SANDBOX });
    const firstMs = performance.now() - t0;
    await first.close();
    const t1 = performance.now();
    const again = await createLocalSandbox({ workers: 1, osSandbox: OS_SANDBOX });
    const againMs = performance.now() - t1;
    await again.close();
    console.log(`cold start, first on this machine (snapshot made, then 1 worker): ${fmt(firstMs / 1000, 2)} s; next start, 1 worker from the snapshot: ${fmt(againMs / 1000, 2)} s`);
  } finally {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    rmSync(cache, { recursive: true, force: true });
  }
}
const t0 = performance.now();
const pool = await createLocalSandbox({ workers: WORKERS, osSandbox: OS_SANDBOX, allowUrls: [retrieverUrl] });
const poolMs = performance.now() - t0;
const st = pool.stats();
console.log(`cold start, pool of ${WORKERS}: ${fmt(poolMs / 1000, 2)} s (worker spawn → ready, mean ${fmt(st.coldStartMs.mean)} ms); isolation: ${st.osSandbox.kind}`);

// ---------- warm pool, in-process ----------
// Warm-up: the engine compiles hot WebAssembly to faster tiers over the first few hundred calls.
{
  const tw = performance.now();
  await Promise.all(Array.from({ length: 4 }, async (_, k) => {
    for (let i = 0; i < 150; i++) await pool.execute(k % 2 ? WIKI : TRIVIAL);
  }));
  console.log(`warm-up: 600 calls in ${fmt((performance.now() - tw) / 1000, 1)} s`);
}
async function inProcess(name: string, req: ExecuteRequest, sb: LocalSandbox): Promise<number> {
  for (let i = 0; i < 10; i++) await sb.execute(req);
  const lat: number[] = [];
  for (let i = 0; i < Math.min(CALLS, 200); i++) {
    const t = performance.now();
    const a = await sb.execute(req);
    lat.push(performance.now() - t);
    if (a.error) throw new Error(`${name}: ${a.error}`);
  }
  let next = 0;
  const tc = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < CALLS) {
        const a = await sb.execute(req);
        if (a.error) throw new Error(`${name}: ${a.error}`);
      }
    }),
  );
  const rate = CALLS / ((performance.now() - tc) / 1000);
  console.log(`in-process ${name}: one at a time p50 ${fmt(pct(lat, 50), 2)} ms, p99 ${fmt(pct(lat, 99), 2)} ms; ${CONCURRENCY} concurrent callers ${fmt(rate)} calls/s`);
  return rate;
}
const trivialRate = await inProcess("trivial tool", TRIVIAL, pool);
const wikiRate = await inProcess("ReCall wikipedia_search env", WIKI, pool);

// ---------- HTTP: `recall sandbox serve` in its own process, as a trainer would use it ----------
await pool.close();
const serve = Bun.spawn([process.execPath, join(ROOT, "cmd/main.ts"), "sandbox", "serve", "--port", "0", "--workers", String(WORKERS), "--allow_url", retrieverUrl], {
  stdout: "pipe",
  stderr: "inherit",
  env: { ...process.env, NODE_ENV: "production", NO_COLOR: "1" },
});
const serverUrl = await new Promise<string>((resolve, reject) => {
  let log = "";
  const timer = setTimeout(() => reject(new Error(`recall sandbox serve did not start: ${log}`)), 120_000);
  void (async () => {
    for await (const chunk of serve.stdout) {
      log += new TextDecoder().decode(chunk);
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!); // keep draining: closing the pipe would kill the server (EPIPE)
      }
    }
  })();
});
async function overHttp(name: string, req: ExecuteRequest): Promise<void> {
  const body = JSON.stringify(req);
  const one = () => fetch(`${serverUrl}/execute`, { method: "POST", headers: { "content-type": "application/json" }, body }).then((r) => r.json() as Promise<{ error: string | null }>);
  for (let i = 0; i < 300; i++) await one(); // the new workers warm up too
  const lat: number[] = [];
  let next = 0;
  let failed = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: HTTP_CLIENTS }, async () => {
      while (next++ < CALLS) {
        const s = performance.now();
        const a = await one();
        lat.push(performance.now() - s);
        if (a.error) failed++;
      }
    }),
  );
  const rate = CALLS / ((performance.now() - t) / 1000);
  console.log(`HTTP /execute to \`recall sandbox serve\` (another process) ${name}, ${HTTP_CLIENTS} clients: ${fmt(rate)} calls/s, p50 ${fmt(pct(lat, 50), 2)} ms, p99 ${fmt(pct(lat, 99), 2)} ms, ${failed} failed`);
}
try {
  await overHttp("trivial tool", TRIVIAL);
  await overHttp("ReCall wikipedia_search env", WIKI);
} finally {
  serve.kill("SIGTERM");
  await serve.exited;
}

// ---------- --engine python: one fresh process per call ----------
if (flag("python_engine")) {
  const py = await createLocalSandbox({ engine: "python", workers: WORKERS, osSandbox: OS_SANDBOX, unsafeNoIsolation: true });
  try {
    await inProcess(`trivial tool, --engine python (${py.os.kind === "bwrap" ? "bubblewrap" : "no OS sandbox"}, a process per call)`, TRIVIAL, py);
  } finally {
    await py.close();
  }
}

// ---------- peer: CPython exec() in-process (ReCall's server without HTTP) ----------
if (!flag("no_peer")) {
  const dir = mkdtempSync(join(tmpdir(), "recall-bench-sbx-peer-"));
  try {
    const script = join(dir, "peer.py");
    writeFileSync(
      script,
      `
import contextlib, io, json, sys, time
reqs = json.load(sys.stdin)
out = {}
for name, env, call, n in reqs:
    t = time.perf_counter()
    for _ in range(n):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            g = {}
            exec(compile(env, '<env>', 'exec'), g)
            exec(compile(f"response = {call}", '<call>', 'exec'), g)
    out[name] = n / (time.perf_counter() - t)
print(json.dumps(out))
`,
    );
    const input = JSON.stringify([["trivial", TRIVIAL.env, TRIVIAL.call, CALLS], ["wiki", WIKI.env, WIKI.call, CALLS]]);
    // Async: the loopback retriever lives in this process and must keep answering the peer.
    const p = Bun.spawn([PYTHON, script], { stdin: Buffer.from(input), stdout: "pipe", stderr: "pipe" });
    const [code, stdout, stderr] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    if (code !== 0) {
      console.log(`peer skipped: ${PYTHON} failed (${stderr.trim().split("\n").pop()}); the wikipedia env needs the requests package`);
    } else {
      const peer = JSON.parse(stdout) as { trivial: number; wiki: number };
      console.log(`peer CPython exec() in one process, one at a time (no isolation, no limits): trivial ${fmt(peer.trivial)} calls/s, wikipedia_search ${fmt(peer.wiki)} calls/s`);
      console.log(`ratio recall pool (${CONCURRENCY} callers) / peer: trivial ${fmt(trivialRate / peer.trivial, 3)}×, wikipedia_search ${fmt(wikiRate / peer.wiki, 2)}×`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
retriever.stop(true);
