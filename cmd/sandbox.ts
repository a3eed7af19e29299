/** `recall sandbox`: isolated execution of ReCall tool code — `serve` (ReCall's /execute API) and `exec` (one call). */
import { readFileSync } from "node:fs";
import { consola } from "consola";
import { defineRecallCommand, listFlag, numberFlag, requiredStringFlag, stringFlag } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";

const poolFlags = {
  engine: { type: "string", description: "pyodide (default: CPython in WebAssembly, nothing to install) or python (system python3 with its packages; needs bubblewrap)" },
  memory_mb: { type: "string", description: "Memory one call may use, in MB (default 512)" },
  allow_url: { type: "string", description: "URL whose origin tool code may reach through requests.get/post (repeatable, or comma-separated)" },
  output_limit_kb: { type: "string", description: "Most output a call may print, in KiB (default 1024)" },
  unsafe_no_isolation: { type: "boolean", description: "With --engine python and no OS sandbox: run tools with your user's full access anyway" },
} as const;

function poolOptions(args: Record<string, unknown>) {
  const engine = stringFlag(args, "engine") ?? "pyodide";
  if (engine !== "pyodide" && engine !== "python") throw new RecallError(`flag --engine expects pyodide or python, got '${engine}'`);
  return {
    engine: engine as "pyodide" | "python",
    memoryMb: numberFlag(args, "memory_mb", { default: 512, min: 64 }),
    allowUrls: listFlag(args, "allow_url"),
    outputLimit: numberFlag(args, "output_limit_kb", { default: 1024, min: 1 }) * 1024,
    unsafeNoIsolation: args.unsafe_no_isolation === true,
  };
}

const serve = defineRecallCommand({
  meta: { name: "serve", description: "Serve ReCall's sandbox API (POST /execute, GET /health) from a warm pool of isolated workers." },
  examples: [
    "recall sandbox serve --port 8080",
    "recall sandbox serve --workers 4 --allow_url http://127.0.0.1:8000 --max_timeout 20 --memory_mb 256",
    "RECALL_SANDBOX_TOKEN=secret recall sandbox serve --host 0.0.0.0 --allow_host sandbox.internal",
  ],
  args: {
    port: { type: "string", description: "TCP port (default 8080; 0 picks a free one)" },
    host: { type: "string", description: "Address to bind (default 127.0.0.1)" },
    workers: { type: "string", description: "Warm worker processes (default: number of CPU cores)" },
    max_timeout: { type: "string", description: "Largest per-call timeout a request may ask for, in seconds (default 30)" },
    token: { type: "string", description: "Require 'Authorization: Bearer TOKEN' on /execute (default: $RECALL_SANDBOX_TOKEN, else open)" },
    max_body_kb: { type: "string", description: "Largest request body, in KiB (default 4096)" },
    allow_host: { type: "string", description: "Host name the server answers to besides loopback and the bound address (repeatable; '*': any). Other Host or Origin headers get 403" },
    verbose: { type: "boolean", description: "Log one debug line per call: duration, queue wait, outcome, worker" },
    ...poolFlags,
  },
  async run({ args }) {
    const { createLocalSandbox } = await import("../src/sandbox/local-sandbox.ts");
    const { serveSandbox } = await import("../src/sandbox/server.ts");
    if (args.verbose) consola.level = 4;
    const port = numberFlag(args, "port", { default: 8080, integer: true, min: 0, max: 65535 });
    const host = stringFlag(args, "host") ?? "127.0.0.1";
    const token = stringFlag(args, "token") ?? process.env.RECALL_SANDBOX_TOKEN;
    const opts = poolOptions(args);
    const workersFlag = stringFlag(args, "workers");
    const t0 = performance.now();
    const pool = await createLocalSandbox({
      ...opts,
      workers: workersFlag === undefined ? undefined : numberFlag(args, "workers", { integer: true, min: 1 }),
      maxTimeout: numberFlag(args, "max_timeout", { default: 30, min: 0.1 }),
      onCall: (c) => consola.debug(`execute ${c.ms.toFixed(1)} ms (queued ${c.waitMs.toFixed(1)} ms) ${c.outcome}${c.worker ? ` worker ${c.worker}` : ""}`),
    });
    let server;
    try {
      server = serveSandbox(pool, {
        host,
        port,
        token: token || undefined,
        maxBodyBytes: numberFlag(args, "max_body_kb", { default: 4096, min: 1 }) * 1024,
        allowHosts: listFlag(args, "allow_host"),
      });
    } catch (e) {
      await pool.close();
      throw new RecallError(`cannot listen on ${host}:${port}: ${(e as Error).message}`, { hint: "pick another --port, or 0 for a free one" });
    }
    const s = pool.stats();
    consola.success(`sandbox listening on ${server.url} — ${s.workers.target} ${s.engine} worker${s.workers.target === 1 ? "" : "s"} ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    consola.info(`isolation: ${s.osSandbox.detail}`);
    consola.info(`network: ${s.allowOrigins.length ? `requests to ${s.allowOrigins.join(", ")} only` : "none (no --allow_url)"}; auth: ${token ? "bearer token" : "none"}`);
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        consola.info(`${sig}: finishing calls in flight, then stopping`);
        void server.shutdown().then(resolve);
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
  },
});

const exec = defineRecallCommand({
  meta: { name: "exec", description: "Run one tool call in the sandbox and print ReCall's JSON answer {output, result, error}." },
  examples: [
    "recall sandbox exec --env tools.py --call 'f(x=1)'",
    "echo 'def add(a, b): return a + b' | recall sandbox exec --env - --call 'add(a=1, b=2)' --flat",
    "recall sandbox exec --env ../shared/spec/wikipedia_search_env.py --search_url http://127.0.0.1:8000 --call \"wikipedia_search(query='Paris')\"",
  ],
  args: {
    env: { type: "string", description: "Python file defining the tools ('-' reads stdin)", required: true },
    call: { type: "string", description: "Call expression, e.g. 'f(x=1)'", required: true },
    timeout: { type: "string", description: "Wall-clock limit in seconds (default 5)" },
    search_url: { type: "string", description: "Replace <search-url-placeholder> in the env with this URL and allow it (ReCall's wikipedia_search)" },
    flat: { type: "boolean", description: "Print the flattened RESULT text a model would see instead of JSON" },
    ...poolFlags,
  },
  async run({ args }) {
    const { createLocalSandbox } = await import("../src/sandbox/local-sandbox.ts");
    const { answerToJson } = await import("../src/sandbox/answer.ts");
    const { flattenAnswer } = await import("../src/sandbox/flatten.ts");
    const envFile = requiredStringFlag(args, "env");
    let env: string;
    try {
      env = envFile === "-" ? readFileSync(0, "utf8") : readFileSync(envFile, "utf8");
    } catch (e) {
      throw new RecallError(`cannot read --env ${envFile}: ${(e as Error).message}`);
    }
    const opts = poolOptions(args);
    const searchUrl = stringFlag(args, "search_url");
    if (searchUrl) {
      env = env.replaceAll("<search-url-placeholder>", searchUrl.replace(/\/+$/, ""));
      opts.allowUrls.push(searchUrl);
    }
    const timeout = numberFlag(args, "timeout", { default: 5, min: 0.1 });
    const pool = await createLocalSandbox({ ...opts, workers: 1, maxTimeout: Math.max(30, timeout) });
    try {
      const answer = await pool.execute({ env, call: requiredStringFlag(args, "call"), timeout });
      console.log(args.flat ? flattenAnswer(answer) : answerToJson(answer));
    } finally {
      await pool.close();
    }
  },
});

const worker = defineRecallCommand({
  meta: { name: "worker", description: "(internal) one sandbox worker process, driven over stdin/stdout", hidden: true },
  args: {
    assets: { type: "string", description: "Directory with Pyodide's runtime files", required: true },
    memory_mb: { type: "string", description: "Memory cap in MB", required: true },
    snapshot: { type: "string", description: "Start from this interpreter memory snapshot" },
    make_snapshot: { type: "string", description: "Write an interpreter memory snapshot to this path and exit" },
  },
  async run({ args }) {
    const { makePyodideSnapshot, runPyodideWorker } = await import("../src/sandbox/pyodide-worker.ts");
    const assetsDir = requiredStringFlag(args, "assets");
    const out = stringFlag(args, "make_snapshot");
    if (out) return makePyodideSnapshot(assetsDir, out);
    await runPyodideWorker({ assetsDir, memoryBytes: numberFlag(args, "memory_mb", { min: 64 }) * 2 ** 20, snapshotPath: stringFlag(args, "snapshot") });
  },
});

export default defineRecallCommand({
  meta: { name: "sandbox", description: "Isolated execution of tool code: ReCall's /execute API, or one call from the shell." },
  examples: ["recall sandbox serve --port 8080", "recall sandbox exec --env tools.py --call 'f(x=1)'"],
  subCommands: { serve, exec, worker },
});
