/** `recall retriever index|serve|search`: BM25 over a FlashRAG corpus, served with ReCall's retriever API. */
import { consola } from "consola";
import { defineRecallCommand, numberFlag, requiredStringFlag, stringFlag } from "../src/cli/command.ts";
import { RecallError } from "../src/errors.ts";
import { progressPrinter } from "../src/retrieval/build_progress.ts";
import { openBm25RetrieverSync } from "../src/retrieval/bm25_retriever.ts";
import { buildBm25Index } from "../src/retrieval/index_builder.ts";
import { parseServeCommandLine, SERVE_ARGS } from "../src/retrieval/serve_config.ts";
import { startRetrieverServer } from "../src/retrieval/server.ts";
import { parseStemmerName } from "../src/retrieval/stemmer.ts";
import { resolveStopwords } from "../src/retrieval/stopwords.ts";
import type { Retriever } from "../src/retrieval/types.ts";
import { WorkerPoolRetriever } from "../src/retrieval/worker_pool.ts";

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

const index = defineRecallCommand({
  meta: { name: "index", description: "Build a BM25 index (bm25s/Lucene scoring, Snowball English stemming) from a FlashRAG corpus: JSONL, gzipped JSONL (.jsonl.gz) or parquet." },
  examples: [
    "recall retriever index --corpus_path fixtures/retrieval/golden_corpus.jsonl --index_path /tmp/golden-bm25",
    "recall retriever index --corpus_path wiki18_100w.jsonl --index_path indexes/wiki-bm25 --memory_mb 4096",
    "recall retriever index --corpus_path wiki18_100w.jsonl.gz --index_path indexes/wiki-bm25",
    "recall retriever index --corpus_path corpus.jsonl --index_path idx --k1 1.2 --b 0.75 --stemmer none --stopwords none --overwrite",
  ],
  args: {
    corpus_path: { type: "string", description: "corpus: JSONL, .jsonl.gz or .parquet; rows {id, contents} or {id, title, text}" },
    index_path: { type: "string", description: "Directory to write the index to (built in <dir>.partial, renamed when complete)" },
    k1: { type: "string", description: "BM25 k1 (default 1.5, as bm25s/FlashRAG)" },
    b: { type: "string", description: "BM25 b (default 0.75)" },
    stemmer: { type: "string", description: "english (Snowball, = PyStemmer 'english') or none (default english)" },
    stopwords: { type: "string", description: "english (bm25s's 33-word list), none, a file with one word per line, or a comma list (default english)" },
    memory_mb: { type: "string", description: "Memory for in-memory postings before a run is flushed to disk (default 1024)" },
    overwrite: { type: "boolean", description: "Replace an existing index at --index_path" },
    resume: { type: "boolean", default: true, description: "Resume an interrupted build of the same corpus and settings (--no-resume starts over)" },
    json: { type: "boolean", description: "Print the index manifest (settings and stats) as JSON" },
  },
  run({ args }) {
    const manifest = buildBm25Index({
      corpusPath: requiredStringFlag(args, "corpus_path"),
      indexPath: requiredStringFlag(args, "index_path"),
      bm25: { k1: numberFlag(args, "k1", { default: 1.5, min: 0 }), b: numberFlag(args, "b", { default: 0.75, min: 0, max: 1 }) },
      stemmer: parseStemmerName(stringFlag(args, "stemmer")),
      stopwords: resolveStopwords(stringFlag(args, "stopwords")),
      memoryMb: numberFlag(args, "memory_mb", { default: 1024, min: 1 }),
      overwrite: args.overwrite === true,
      resume: args.resume !== false,
      onProgress: args.json ? undefined : progressPrinter(),
    });
    const s = manifest.stats;
    if (args.json) {
      console.log(JSON.stringify(manifest, null, 2));
      return;
    }
    consola.success(`index written to ${stringFlag(args, "index_path")}`);
    consola.log(`  docs      ${s.docs.toLocaleString("en-US")}  (avg ${s.avgDocLen.toFixed(1)} terms)`);
    consola.log(`  terms     ${s.terms.toLocaleString("en-US")}`);
    consola.log(`  postings  ${s.postings.toLocaleString("en-US")}`);
    consola.log(`  bytes     corpus ${mib(s.corpusBytes)}, index ${mib(s.indexBytes)}`);
    consola.log(`  time      ${s.buildSeconds.toFixed(1)} s, ${Math.round(s.docsPerSecond).toLocaleString("en-US")} docs/s, peak RSS ${mib(s.peakRssBytes)}`);
  },
});

const serve = defineRecallCommand({
  meta: { name: "serve", description: "Serve a BM25 index over ReCall's retriever HTTP API (/health, /search, /batch_search, Search-R1's /retrieve)." },
  examples: [
    "recall retriever serve --index_path /tmp/golden-bm25 --port 8000",
    "recall retriever serve --config retriever_config.yaml --num_retriever 2 --port 8000",
    "curl -s localhost:8000/search -H 'content-type: application/json' -d '{\"query\": \"nobel prize physics\", \"top_n\": 3, \"return_score\": true}'",
  ],
  args: SERVE_ARGS,
  async run({ rawArgs }) {
    const cfg = parseServeCommandLine(rawArgs);
    const n = cfg.num_retriever;
    // Open once here so a bad path or a changed corpus fails before anything starts.
    const local = openBm25RetrieverSync(cfg.index_path, cfg.corpus_path);
    let retriever: Retriever = local;
    if (n > 0) {
      try {
        retriever = await WorkerPoolRetriever.start(n, cfg.index_path, cfg.corpus_path);
        await local.close();
      } catch (e) {
        if (e instanceof RecallError && !/did not start|failed to start/.test(e.message)) throw e;
        consola.warn(`worker threads unavailable (${(e as Error).message}); searching on the server thread`);
      }
    }
    let server: Awaited<ReturnType<typeof startRetrieverServer>>;
    try {
      server = await startRetrieverServer(retriever, {
        host: cfg.host,
        port: cfg.port,
        defaultTopK: cfg.retrieval_topk,
        logRequests: cfg.log_requests,
        limits: { maxTopN: cfg.max_top_n, maxBatch: cfg.max_batch, maxResults: cfg.max_results },
      });
    } catch (e) {
      await retriever.close(); // worker threads would keep the process alive after the error
      throw e;
    }
    const m = local.index.manifest;
    consola.success(`retriever serving ${m.stats.docs.toLocaleString("en-US")} docs from ${cfg.index_path} at ${server.url} (${n > 0 && retriever !== local ? `${n} worker${n > 1 ? "s" : ""}` : "in-thread"})`);
    const shutdown = async () => {
      await server.stop();
      await retriever.close();
      process.exit(0);
    };
    process.on("SIGINT", shutdown);
    process.on("SIGTERM", shutdown);
    await new Promise(() => {});
  },
});

const search = defineRecallCommand({
  meta: { name: "search", description: "Query a BM25 index from the shell (in-process, no server)." },
  examples: [
    "recall retriever search --index_path /tmp/golden-bm25 'storm taints' --top_n 3",
    "recall retriever search --index_path /tmp/golden-bm25 'storm taints' --json",
  ],
  args: {
    query: { type: "positional", description: "The query text", required: true },
    index_path: { type: "string", description: "Index directory" },
    corpus_path: { type: "string", description: "Corpus JSONL (default: the path stored in the index)" },
    top_n: { type: "string", description: "Number of documents (default 5)" },
    json: { type: "boolean", description: "Print {docs, scores} as JSON" },
  },
  async run({ args }) {
    const r = openBm25RetrieverSync(requiredStringFlag(args, "index_path"), stringFlag(args, "corpus_path"));
    const res = r.searchSync(String(args.query), numberFlag(args, "top_n", { default: 5, integer: true, min: 0 }));
    await r.close();
    if (args.json) {
      console.log(JSON.stringify(res, null, 2));
      return;
    }
    if (res.docs.length === 0) consola.info("no document contains any of the query's terms");
    res.docs.forEach((d, i) => {
      const text = d.contents.replace(/\s+/g, " ");
      console.log(`${String(i + 1).padStart(2)}. [${res.scores[i]!.toFixed(4)}] ${d.id}  ${text.length > 160 ? text.slice(0, 157) + "..." : text}`);
    });
  },
});

export default defineRecallCommand({
  meta: { name: "retriever", description: "BM25 retrieval over a FlashRAG corpus: build an index, serve ReCall's /search API, or query it." },
  examples: [
    "recall retriever index --corpus_path fixtures/retrieval/golden_corpus.jsonl --index_path /tmp/golden-bm25",
    "recall retriever serve --index_path /tmp/golden-bm25 --port 8000",
    "recall retriever search --index_path /tmp/golden-bm25 'storm taints'",
  ],
  subCommands: { index, serve, search },
});
