/** `recall retriever index|serve|search` from the shell: flags, output, ReCall's YAML config, errors. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "./harness.ts";

// consola (the CLI's logger) goes quiet under NODE_ENV=test, which bun test sets; these tests read its output.
const ENV = { ...process.env, NO_COLOR: "1", NODE_ENV: "production" };

function runRecall(args: string[]) {
  const p = Bun.spawnSync([join(PROJECT_ROOT, "recall"), ...args], { cwd: PROJECT_ROOT, stdin: "ignore", env: ENV });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

const corpus = join(PROJECT_ROOT, "fixtures/retrieval/golden_corpus.jsonl");
const tmp = mkdtempSync(join(tmpdir(), "recall-retriever-cli-"));
const idx = join(tmp, "idx");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Starts `recall retriever serve`, waits for its URL, runs `fn`, and always stops it. */
async function withServer(args: string[], fn: (url: string) => Promise<void>): Promise<void> {
  const proc = Bun.spawn([join(PROJECT_ROOT, "recall"), "retriever", "serve", "--port", "0", ...args], {
    cwd: PROJECT_ROOT, stdout: "pipe", stderr: "pipe", env: ENV,
  });
  try {
    let out = "";
    const reader = proc.stdout.getReader();
    const deadline = Date.now() + 20_000;
    while (!/http:\/\/[\d.]+:\d+/.test(out)) {
      if (Date.now() > deadline) throw new Error(`server did not start: ${out}`);
      const { value, done } = await reader.read();
      if (done) throw new Error(`server exited: ${out}${await new Response(proc.stderr).text()}`);
      out += new TextDecoder().decode(value);
    }
    await fn(out.match(/http:\/\/[\d.]+:\d+/)![0]);
  } finally {
    proc.kill();
    await proc.exited;
  }
}

describe("recall retriever CLI", () => {
  test("index prints stats; --json prints the manifest", () => {
    const r = runRecall(["retriever", "index", "--corpus-path", corpus, "--index_path", idx]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("docs      300");
    expect(r.stdout).toMatch(/terms\s+1,3\d\d/);
    const again = runRecall(["retriever", "index", "--corpus_path", corpus, "--index_path", idx]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("already holds an index");
    expect(again.stdout + again.stderr).toContain("pass --overwrite"); // the hint
    const j = runRecall(["retriever", "index", "--corpus_path", corpus, "--index_path", idx, "--overwrite", "--json", "--k1", "1.2"]);
    expect(j.code).toBe(0);
    const m = JSON.parse(j.stdout);
    expect(m.bm25).toEqual({ k1: 1.2, b: 0.75, method: "lucene" });
    expect(m.stats.docs).toBe(300);
    expect(m.tokenizer.stemmer).toBe("english");
  });

  test("index flag errors name the flag", () => {
    const r = runRecall(["retriever", "index", "--corpus_path", corpus, "--index_path", join(tmp, "x"), "--b", "2"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--b must be <= 1");
    const s = runRecall(["retriever", "index", "--corpus_path", corpus, "--index_path", join(tmp, "x"), "--stemmer", "klingon"]);
    expect(s.stderr).toContain("--stemmer must be english or none");
    const missing = runRecall(["retriever", "index", "--corpus_path", join(tmp, "nope.jsonl"), "--index_path", join(tmp, "x")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`cannot open ${join(tmp, "nope.jsonl")}: no such file or folder (ENOENT)`);
  });

  test("index takes a gzipped corpus; a bad row is one line naming the file and line", () => {
    const gz = join(tmp, "corpus.jsonl.gz");
    writeFileSync(gz, Bun.gzipSync(readFileSync(corpus)));
    const r = runRecall(["retriever", "index", "--corpus_path", gz, "--index_path", join(tmp, "gz")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("docs      300");
    const hit = runRecall(["retriever", "search", "--index_path", join(tmp, "gz"), "storm taints", "--top_n", "1", "--json"]);
    expect(JSON.parse(hit.stdout).docs[0].id).toBe("g72");
    writeFileSync(gz, Bun.gzipSync('{"id": "a", "contents": "x"}\n{"id": "b"}\n'));
    const bad = runRecall(["retriever", "index", "--corpus_path", gz, "--index_path", join(tmp, "gz-bad")]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${gz} line 2: missing "contents" (or "text") string`);
  });

  test("search prints ranked docs; --json gives {docs, scores}", () => {
    const r = runRecall(["retriever", "search", "--index_path", idx, "storm taints", "--top_n", "2", "--json"]);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.docs).toHaveLength(2);
    expect(res.docs[0].id).toBe("g72");
    const plain = runRecall(["retriever", "search", "--index_path", idx, "storm taints", "--top_n", "2"]);
    expect(plain.stdout).toMatch(/1\. \[\d+\.\d{4}\] g72/);
    const bad = runRecall(["retriever", "search", "--index_path", join(tmp, "none"), "x"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("is not a recall BM25 index");
  });

  test("serve with plain flags answers /health and /search", async () => {
    await withServer(["--index_path", idx, "--num_retriever", "2"], async (url) => {
      expect(url).toStartWith("http://127.0.0.1:");
      expect(await (await fetch(url + "/health")).json()).toEqual({ status: "healthy", retrievers: { total: 2, available: 2 } });
      const res = await fetch(url + "/search", { method: "POST", body: JSON.stringify({ query: "storm taints", top_n: 1 }) });
      expect(((await res.json()) as { id: string }[])[0]!.id).toBe("g72");
    });
  }, 30_000);

  test("serve reads ReCall's retriever_config.yaml (retrieval_topk feeds /retrieve)", async () => {
    const cfg = join(tmp, "retriever_config.yaml");
    writeFileSync(cfg, `retrieval_method: bm25\nindex_path: ${idx}\ncorpus_path: ${corpus}\nretrieval_topk: 2\nfaiss_gpu: false\n`);
    await withServer(["--config", cfg, "--num_retriever", "0"], async (url) => {
      const res = await fetch(url + "/retrieve", { method: "POST", body: JSON.stringify({ queries: ["storm taints"] }) });
      expect(((await res.json()) as { result: unknown[][] }).result[0]).toHaveLength(2);
    });
  }, 30_000);

  test("serve refuses dense retrieval methods and missing indexes with a clear message", () => {
    const cfg = join(tmp, "dense.yaml");
    writeFileSync(cfg, "retrieval_method: e5\nindex_path: indexes/e5_Flat.index\ncorpus_path: wiki.jsonl\nretrieval_topk: 3\nfaiss_gpu: true\n");
    const r = runRecall(["retriever", "serve", "--config", cfg, "--port", "0"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("retrieval_method 'e5'");
    expect(r.stderr).toContain("only bm25");
    const none = runRecall(["retriever", "serve", "--port", "0"]);
    expect(none.stderr).toContain("pass --index_path or --config");
  });

  test("--help shows flags and examples", () => {
    for (const sub of ["index", "serve", "search"]) {
      const h = runRecall(["retriever", sub, "--help"]);
      expect(h.code).toBe(0);
      expect(h.stdout).toContain("Examples:");
    }
    expect(runRecall(["retriever", "serve", "--help"]).stdout).toContain("--num_retriever");
    expect(runRecall(["retriever", "index", "--help"]).stdout).toContain("--memory_mb");
  });
});
