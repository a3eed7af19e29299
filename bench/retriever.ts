/**
 * bench/retriever: BM25 index build and search speed on a synthetic corpus, beside FlashRAG's own BM25 backend
 * (bm25s + PyStemmer, configured as FlashRAG's index builder does) on the same corpus and queries in the same run.
 *
 *   ./node_modules/.bin/bun bench/retriever.ts [--docs 100000] [--queries 1000] [--python python3] [--keep DIR]
 *                                              [--clients 16] [--http_requests 2000] [--workers 2] [--no_peer] [--reuse]
 *
 * --reuse (with --keep DIR): a DIR left by an earlier run with the same --docs and --queries keeps its corpus and index
 * (the build figures printed are then the index's own).
 * --passes N (default 3): the search figures are medians of N passes over the queries, for both engines.
 * Prints: build docs/s and peak RSS (child process), in-process queries/s single and batched, worker-pool queries/s,
 * HTTP p50/p99 latency with concurrent clients, pruned search beside exhaustive scoring (speed, and that their top-10
 * lists are identical); for the peer, the same figures, the ratios, and top-10 agreement
 * (mean overlap of the top-10 sets, identical top-1, largest score difference). The peer needs `import bm25s, Stemmer`
 * in --python (pip install bm25s PyStemmer, numba optional); without it the bench prints recall's figures alone.
 * The corpus: passages of 40–160 words drawn from a Zipf(1.0) distribution over 60,000 synthetic words with English
 * inflections (-s, -ing, -ed, -ation...) and stop words; queries: 2–6 consecutive words of a random passage.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBm25RetrieverSync } from "../src/retrieval/bm25_retriever.ts";
import { WorkerPoolRetriever } from "../src/retrieval/worker_pool.ts";
import type { SearchResult } from "../src/retrieval/types.ts";
import { mulberry32 as rng } from "../src/util/prng.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.findIndex((a) => a === `--${name}` || a === `--${name.replace(/_/g, "-")}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const DOCS = Number(opt("docs", "100000"));
const QUERIES = Number(opt("queries", "1000"));
const CLIENTS = Number(opt("clients", "16"));
const HTTP_REQUESTS = Number(opt("http_requests", "2000"));
const WORKERS = Number(opt("workers", "2"));
const PYTHON = opt("python", "python3");
const NO_PEER = argv.includes("--no_peer") || argv.includes("--no-peer");
const REUSE = argv.includes("--reuse");
const PASSES = Number(opt("passes", "3"));
const keep = opt("keep", "");
const work = keep || mkdtempSync(join(tmpdir(), "recall-bench-retriever-"));
mkdirSync(work, { recursive: true });
const ROOT = new URL("..", import.meta.url).pathname;

const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const median = (xs: number[]) => pct(xs, 50);
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

// ---------- corpus ----------
function makeCorpus(path: string): string[] {
  const r = rng(42);
  const syll = ["ka", "ri", "to", "men", "sa", "lo", "ver", "an", "di", "po", "tur", "el", "mi", "gra", "on", "be", "stel", "fu", "ni", "zo", "dra", "qui", "mar", "tes"];
  const suffix = ["", "", "", "s", "ing", "ed", "ation", "er", "ly", "ness", "es", "ment"];
  const stops = ["the", "of", "and", "in", "to", "a", "is", "was", "for", "on", "with", "that", "by", "as", "at"];
  const vocab: string[] = [];
  const seen = new Set<string>();
  while (vocab.length < 60_000) {
    let w = "";
    const n = 2 + Math.floor(r() * 3);
    for (let i = 0; i < n; i++) w += syll[Math.floor(r() * syll.length)];
    w += suffix[Math.floor(r() * suffix.length)];
    if (!seen.has(w)) {
      seen.add(w);
      vocab.push(w);
    }
  }
  const cdf = new Float64Array(vocab.length);
  let acc = 0;
  for (let i = 0; i < vocab.length; i++) cdf[i] = acc += 1 / (i + 1);
  const pick = () => {
    const x = r() * acc;
    let lo = 0, hi = cdf.length - 1;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (cdf[m]! < x) lo = m + 1;
      else hi = m;
    }
    return vocab[lo]!;
  };
  const bodies: string[] = [];
  const sampleEvery = Math.max(1, Math.floor(DOCS / (QUERIES * 4)));
  let chunk: string[] = [];
  writeFileSync(path, "");
  const fd = require("node:fs").openSync(path, "w");
  for (let d = 0; d < DOCS; d++) {
    const len = 40 + Math.floor(r() * 121);
    const words: string[] = [];
    for (let i = 0; i < len; i++) words.push(r() < 0.3 ? stops[Math.floor(r() * stops.length)]! : pick());
    const body = words.join(" ");
    if (d % sampleEvery === 0) bodies.push(body);
    chunk.push(JSON.stringify({ id: String(d), contents: `"${pick()} ${pick()}"\n${body}.` }));
    if (chunk.length === 10_000) {
      require("node:fs").writeSync(fd, chunk.join("\n") + "\n");
      chunk = [];
    }
  }
  if (chunk.length) require("node:fs").writeSync(fd, chunk.join("\n") + "\n");
  require("node:fs").closeSync(fd);
  const queries: string[] = [];
  for (let q = 0; q < QUERIES; q++) {
    const words = bodies[Math.floor(r() * bodies.length)]!.split(" ");
    const k = 2 + Math.floor(r() * 5);
    const s = Math.floor(r() * (words.length - k));
    queries.push(words.slice(s, s + k).join(" "));
  }
  return queries;
}

const corpusPath = join(work, "corpus.jsonl");
const indexPath = join(work, "index");
const queriesPath = join(work, "queries.json");
// --reuse: a --keep folder from an earlier run with the same --docs and --queries keeps its corpus and index.
const reusable = (): boolean => {
  if (!REUSE || !existsSync(queriesPath) || !existsSync(join(indexPath, "recall-bm25.json"))) return false;
  const m = JSON.parse(readFileSync(join(indexPath, "recall-bm25.json"), "utf8"));
  return m.stats.docs === DOCS && m.scoreBounds !== undefined && (JSON.parse(readFileSync(queriesPath, "utf8")) as string[]).length === QUERIES;
};
const reused = reusable();
let t = performance.now();
const queries: string[] = reused ? JSON.parse(readFileSync(queriesPath, "utf8")) : makeCorpus(corpusPath);
const corpusBytes = Bun.file(corpusPath).size;
writeFileSync(queriesPath, JSON.stringify(queries));
console.log(`corpus: ${fmt(DOCS)} passages, ${fmt(corpusBytes / 2 ** 20, 1)} MiB (${reused ? "reused" : `generated in ${fmt((performance.now() - t) / 1000, 1)} s`}); ${fmt(queries.length)} queries`);

// ---------- recall: build (child process, for a clean peak RSS) ----------
let manifest;
if (reused) {
  manifest = JSON.parse(readFileSync(join(indexPath, "recall-bm25.json"), "utf8"));
} else {
  rmSync(indexPath, { recursive: true, force: true });
  t = performance.now();
  const build = Bun.spawnSync([join(ROOT, "recall"), "retriever", "index", "--corpus_path", corpusPath, "--index_path", indexPath, "--json"], { stderr: "inherit" });
  if (build.exitCode !== 0) throw new Error("recall retriever index failed");
  manifest = JSON.parse(build.stdout.toString());
}
const buildSeconds = reused ? (manifest.stats.buildSeconds as number) : (performance.now() - t) / 1000;
const ours = {
  buildSeconds,
  docsPerSecond: DOCS / buildSeconds,
  peakRssMiB: manifest.stats.peakRssBytes / 2 ** 20,
  indexMiB: manifest.stats.indexBytes / 2 ** 20,
  terms: manifest.stats.terms as number,
  postings: manifest.stats.postings as number,
};
console.log(`recall build${reused ? " (reused index, its own figures)" : ""}: ${fmt(ours.buildSeconds, 1)} s wall${reused ? "" : " (process start included)"}, ${fmt(ours.docsPerSecond)} docs/s, peak RSS ${fmt(ours.peakRssMiB)} MiB, index ${fmt(ours.indexMiB)} MiB, ${fmt(ours.terms)} terms, ${fmt(ours.postings)} postings`);

// ---------- peer: FlashRAG's bm25s backend ----------
const PEER = `
import json, resource, sys, time
import bm25s, Stemmer
try:
    import numba  # noqa: F401  (FlashRAG uses backend="numba")
    backend = "numba"
except ImportError:
    backend = "numpy"
corpus_path, queries_path, out_path = sys.argv[1:4]
passes = int(sys.argv[4])
t0 = time.perf_counter()
texts = [json.loads(l)["contents"] for l in open(corpus_path, encoding="utf-8") if l.strip()]
tok = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer("english"))
ct = tok.tokenize(texts, return_as="tuple", show_progress=False)
m = bm25s.BM25(backend=backend)
m.index(ct, show_progress=False)
build = time.perf_counter() - t0
del texts
qs = json.load(open(queries_path))
qt = [tok.tokenize([q], return_as="tuple", update_vocab=False, show_progress=False) for q in qs]
for x in qt: m.retrieve(x, k=10, show_progress=False)  # warm-up, one pass, as for recall
single, single_cpu, batched = [], [], []
for p in range(passes):
    t1, c1 = time.perf_counter(), time.process_time()
    res = []
    for x in qt:
        d, s = m.retrieve(x, k=10, show_progress=False)
        res.append({"docs": [int(v) for v in d[0]], "scores": [float(v) for v in s[0]]})
    single.append(time.perf_counter() - t1)
    single_cpu.append(time.process_time() - c1)
    t2 = time.perf_counter()
    allq = tok.tokenize(qs, return_as="tuple", update_vocab=False, show_progress=False)
    m.retrieve(allq, k=10, show_progress=False)
    batched.append(time.perf_counter() - t2)
json.dump({"backend": backend, "bm25s": bm25s.__version__, "build": build, "single": single, "single_cpu": single_cpu, "batched": batched,
           "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "results": res}, open(out_path, "w"))
`;
interface PeerResult {
  backend: string; bm25s: string; build: number; single: number[]; single_cpu: number[]; batched: number[]; peak_rss: number; results: { docs: number[]; scores: number[] }[];
}
// The peer runs before recall's searches so that both engines' search passes are next to each other in time (the
// machine is shared and its load drifts over minutes).
let peerFound = !NO_PEER;
if (peerFound && Bun.spawnSync([PYTHON, "-c", "import bm25s, Stemmer"], { stderr: "pipe" }).exitCode !== 0) {
  console.log(`peer skipped: ${PYTHON} cannot import bm25s and PyStemmer (pip install bm25s PyStemmer; pass --python PATH)`);
  peerFound = false;
}
const peer: PeerResult = peerFound ? runPeer() : { backend: "", bm25s: "", build: 1, single: [1], single_cpu: [1], batched: [1], peak_rss: 0, results: [] };
function runPeer(): PeerResult {
  writeFileSync(join(work, "peer.py"), PEER);
  const peerRun = Bun.spawnSync([PYTHON, join(work, "peer.py"), corpusPath, join(work, "queries.json"), join(work, "peer.json"), String(PASSES)], { stderr: "inherit" });
  if (peerRun.exitCode !== 0) throw new Error("peer failed");
  return JSON.parse(readFileSync(join(work, "peer.json"), "utf8")) as PeerResult;
}
const peerSingleQps = median(peer.single.map((s) => queries.length / s)), peerBatchQps = median(peer.batched.map((s) => queries.length / s));
const peerSingleCpuQps = median(peer.single_cpu.map((s) => queries.length / s));
if (peerFound) console.log(`bm25s ${peer.bm25s} (${peer.backend} backend, FlashRAG settings) build: ${fmt(peer.build, 1)} s (${fmt(DOCS / peer.build)} docs/s, corpus read + tokenize + index), peak RSS ${fmt(peer.peak_rss / 2 ** 20)} MiB`);
if (peerFound) console.log(`bm25s search: single ${fmt(peerSingleQps)} q/s (${fmt(peerSingleCpuQps)} per CPU second), batched (all ${fmt(queries.length)} in one call) ${fmt(peerBatchQps)} q/s; medians of ${PASSES} passes: single ${peer.single.map((s) => fmt(queries.length / s)).join(", ")}, batched ${peer.batched.map((s) => fmt(queries.length / s)).join(", ")}`);


// ---------- recall: search in-process ----------
const r = openBm25RetrieverSync(indexPath);
for (const q of queries) r.searchSync(q, 10); // warm-up, one pass (page cache, JIT): a retriever serves for hours
const lat: number[] = [];
const ourResults: SearchResult[] = [];
t = performance.now();
for (const q of queries) {
  const t1 = performance.now();
  ourResults.push(r.searchSync(q, 10));
  lat.push(performance.now() - t1);
}
const singleQps = queries.length / ((performance.now() - t) / 1000);
// On a shared machine one pass can land on a busy moment: the figures below are medians of --passes passes, and the
// single-query ones also per second of this process's CPU time (what the search costs, whatever else runs).
const idsRuns: number[] = [], idsCpuRuns: number[] = [], batchRuns: number[] = [];
for (let pass = 0; pass < PASSES; pass++) {
  const cpu0 = process.cpuUsage();
  t = performance.now();
  for (const q of queries) r.index.search(q, 10);
  idsRuns.push(queries.length / ((performance.now() - t) / 1000));
  const cpu = process.cpuUsage(cpu0);
  idsCpuRuns.push(queries.length / ((cpu.user + cpu.system) / 1e6));
  t = performance.now();
  for (let i = 0; i < queries.length; i += 64) await r.batchSearch(queries.slice(i, i + 64), 10);
  batchRuns.push(queries.length / ((performance.now() - t) / 1000));
}
const idsQps = median(idsRuns), idsCpuQps = median(idsCpuRuns), batchQps = median(batchRuns);
t = performance.now();
for (const q of queries) r.index.searchExhaustive(q, 10);
const exhaustiveQps = queries.length / ((performance.now() - t) / 1000);
const same = queries.filter((q) => JSON.stringify(r.index.search(q, 10)) === JSON.stringify(r.index.searchExhaustive(q, 10))).length;
console.log(`recall search in-process: single ${fmt(singleQps)} q/s (p50 ${fmt(pct(lat, 50), 2)} ms, p99 ${fmt(pct(lat, 99), 2)} ms), batched(64) ${fmt(batchQps)} q/s; ids and scores only (no corpus row reads, like bm25s) ${fmt(idsQps)} q/s (${fmt(idsCpuQps)} per CPU second); medians of ${PASSES} passes: ids ${idsRuns.map((x) => fmt(x)).join(", ")}, batched ${batchRuns.map((x) => fmt(x)).join(", ")}`);
console.log(`recall pruned (MaxScore + block-max) vs exhaustive scoring, ids and scores: ${fmt(idsQps)} vs ${fmt(exhaustiveQps)} q/s (${fmt(idsQps / exhaustiveQps, 1)}×); identical top-10 on ${same}/${queries.length} queries`);
await r.close();

const pool = await WorkerPoolRetriever.start(WORKERS, indexPath);
const poolPass = () => {
  const batches: Promise<SearchResult[]>[] = [];
  for (let i = 0; i < queries.length; i += 64) batches.push(pool.batchSearch(queries.slice(i, i + 64), 10));
  return Promise.all(batches);
};
await poolPass(); // warm-up: fresh workers start in the JIT's slow tiers
t = performance.now();
await poolPass();
const poolQps = queries.length / ((performance.now() - t) / 1000);
await pool.close();
console.log(`recall search, ${WORKERS} worker threads, concurrent batches of 64: ${fmt(poolQps)} q/s`);

// ---------- recall: HTTP under concurrent load ----------
const server = Bun.spawn([join(ROOT, "recall"), "retriever", "serve", "--index_path", indexPath, "--port", "0", "--num_retriever", String(WORKERS)], { stdout: "pipe", stderr: "inherit", env: { ...process.env, NODE_ENV: "production", NO_COLOR: "1" } });
let url = "";
{
  const reader = server.stdout.getReader();
  let out = "";
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error("server exited: " + out);
    out += new TextDecoder().decode(value);
    url = out.match(/http:\/\/[\d.]+:\d+/)?.[0] ?? "";
  }
}
const httpLat: number[] = [];
let next = 0, failed = 0;
t = performance.now();
await Promise.all(
  Array.from({ length: CLIENTS }, async () => {
    while (next < HTTP_REQUESTS) {
      const q = queries[next++ % queries.length]!;
      const t1 = performance.now();
      const res = await fetch(url + "/search", { method: "POST", body: JSON.stringify({ query: q, top_n: 10, return_score: true }) });
      await res.arrayBuffer();
      if (!res.ok) failed++;
      httpLat.push(performance.now() - t1);
    }
  }),
);
const httpQps = HTTP_REQUESTS / ((performance.now() - t) / 1000);
server.kill();
await server.exited;
console.log(`recall HTTP /search, ${CLIENTS} concurrent clients, ${fmt(HTTP_REQUESTS)} requests, ${WORKERS} workers: ${fmt(httpQps)} req/s, p50 ${fmt(pct(httpLat, 50), 2)} ms, p99 ${fmt(pct(httpLat, 99), 2)} ms, ${failed} failed`);

if (!peerFound) {
  if (!keep) rmSync(work, { recursive: true, force: true });
  process.exit(0);
}
// agreement
let overlap = 0, top1 = 0, maxDiff = 0, counted = 0;
for (let i = 0; i < queries.length; i++) {
  const p = peer.results[i]!, o = ourResults[i]!;
  const pDocs = p.docs.filter((_, j) => p.scores[j]! > 0);
  const oDocs = o.docs.map((d) => Number(d.id));
  if (pDocs.length === 0 && oDocs.length === 0) continue;
  counted++;
  const ps = new Set(pDocs);
  overlap += oDocs.filter((d) => ps.has(d)).length / Math.max(pDocs.length, oDocs.length);
  if (oDocs[0] === pDocs[0] || Math.abs((o.scores[0] ?? 0) - (p.scores[0] ?? 0)) < 1e-5) top1++;
  for (let j = 0; j < Math.min(o.scores.length, pDocs.length); j++) maxDiff = Math.max(maxDiff, Math.abs(o.scores[j]! - p.scores[j]!));
}
console.log(`top-10 agreement over ${counted} queries: mean overlap ${fmt((100 * overlap) / counted, 2)}%, same top-1 (or tied score) ${fmt((100 * top1) / counted, 2)}%, max score difference at equal rank ${maxDiff.toExponential(2)}`);
console.log(`ratios recall/bm25s: build speed ${fmt(peer.build / ours.buildSeconds, 2)}×, peak RSS ${fmt(ours.peakRssMiB / (peer.peak_rss / 2 ** 20), 2)}×, single-query q/s ${fmt(singleQps / peerSingleQps, 2)}× (ids only ${fmt(idsQps / peerSingleQps, 2)}×; per CPU second ${fmt(idsCpuQps / peerSingleCpuQps, 2)}×), batched q/s ${fmt(batchQps / peerBatchQps, 2)}× (in-process; ids only ${fmt(idsQps / peerBatchQps, 2)}×), ${fmt(poolQps / peerBatchQps, 2)}× (${WORKERS} workers)`);
if (!keep) rmSync(work, { recursive: true, force: true });
