/**
 * Builds a BM25 index from a JSONL corpus in two streaming phases, with memory bounded by
 * `memoryMb` whatever the corpus size:
 *
 * 1. invert: read rows one at a time, tokenize, and collect (term, doc, tf) postings for a block of
 *    documents in flat typed arrays; when the block fills the budget, sort it by term and flush it as
 *    a run file (posting_run.ts). Per-document tables (row offset, row length, |d|) are appended as
 *    rows are read. After each run the position in the corpus is checkpointed (progress.json), so an
 *    interrupted build resumes from the last run instead of starting over.
 * 2. merge: k-way merge of the runs term by term; each term's postings get their BM25 scores
 *    (now that N, df and avgdl are known) and are appended to the postings segments, and the term to
 *    the dictionary.
 *
 * Everything is written under `<index_path>.partial/`; the manifest is written last and the directory
 * renamed to `<index_path>` only when complete, so a crashed build never leaves something that looks
 * like an index.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { RecallError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { BinaryWriter, asU32, mapFile } from "./binary_io.ts";
import { bm25Idf, DEFAULT_BM25, type Bm25Params } from "./bm25_formula.ts";
import { corpusIdentity, sameCorpus } from "./corpus_identity.ts";
import { CorpusDecoder, corpusFormat } from "./corpus_decoder.ts";
import { readCorpusRows } from "./corpus_reader.ts";
import { indexFileDigests } from "./index_integrity.ts";
import { BOUND_BLOCK, FORMAT, FORMAT_VERSION, MANIFEST_FILE, ROWS_FILE, SEGMENT_POSTINGS, segmentFile, type CorpusIdentity, type IndexManifest } from "./index_format.ts";
import { RunReader, writeRun } from "./posting_run.ts";
import { BlockMaxWriter, rangeMax } from "./score_bounds.ts";
import type { StemmerName } from "./stemmer.ts";
import { TermDictionaryWriter } from "./term_dictionary.ts";
import { Bm25Tokenizer } from "./tokenizer.ts";

export interface BuildOptions {
  corpusPath: string;
  indexPath: string;
  bm25?: Bm25Params;
  stemmer?: StemmerName;
  stopwords?: string[];
  /** Memory for the in-memory block of postings (default 1024 MiB). */
  memoryMb?: number;
  /** Replace an existing index at indexPath. */
  overwrite?: boolean;
  /** Continue an interrupted build of the same corpus with the same settings (default true). */
  resume?: boolean;
  /** Called at most every `progressEveryMs` (default 500) and once at the end of each phase. */
  onProgress?: (p: BuildProgress) => void;
  progressEveryMs?: number;
  /** Postings per segment file (default SEGMENT_POSTINGS; smaller only to exercise splitting in tests). */
  segmentPostings?: number;
}

export interface BuildProgress {
  phase: "invert" | "merge";
  docs: number;
  bytesRead: number;
  totalBytes: number;
  /** Merge phase: terms written so far. */
  terms: number;
  runs: number;
  elapsedSeconds: number;
  docsPerSecond: number;
  /** Fraction of the phase done, 0..1. */
  fraction: number;
  etaSeconds: number | undefined;
  resumedFromDoc: number;
  done: boolean;
}

interface Checkpoint {
  version: number;
  corpus: CorpusIdentity;
  bm25: Bm25Params;
  tokenizer: { stemmer: StemmerName; stopwords: string[] };
  nextByteOffset: number;
  nextLine: number;
  docs: number;
  tokens: number;
  runs: string[];
}

const BYTES_PER_POSTING = 24; // block arrays (10 B) + sort output (6 B) + share of the block vocabulary

export function buildBm25Index(opts: BuildOptions): IndexManifest {
  const t0 = performance.now();
  const bm25 = opts.bm25 ?? DEFAULT_BM25;
  if (!(bm25.k1 >= 0) || !(bm25.b >= 0 && bm25.b <= 1)) throw new RecallError(`BM25 parameters out of range: k1=${bm25.k1} (>= 0), b=${bm25.b} (0..1)`);
  const tokenizerSpec = { stemmer: opts.stemmer ?? "english", stopwords: opts.stopwords ?? [] } as const;
  const indexPath = resolve(opts.indexPath);
  const partial = `${indexPath}.partial`;
  const format = corpusFormat(opts.corpusPath);
  const corpus = corpusIdentity(opts.corpusPath);
  if (corpus.path === indexPath || corpus.path.startsWith(indexPath + "/")) {
    throw new RecallError(`--index_path '${opts.indexPath}' would contain the corpus itself; choose another directory`);
  }
  checkTarget(indexPath, opts.overwrite ?? false);

  // Resume or start fresh.
  let cp: Checkpoint | undefined;
  const cpPath = join(partial, "progress.json");
  if ((opts.resume ?? true) && existsSync(cpPath)) {
    try {
      const old = JSON.parse(readFileSync(cpPath, "utf8")) as Checkpoint;
      const same = old.version === FORMAT_VERSION && sameCorpus(old.corpus, corpus) && old.bm25.k1 === bm25.k1 && old.bm25.b === bm25.b &&
        old.tokenizer.stemmer === tokenizerSpec.stemmer && JSON.stringify(old.tokenizer.stopwords) === JSON.stringify(tokenizerSpec.stopwords);
      if (same) cp = old;
    } catch {
      cp = undefined;
    }
  }
  if (!cp) {
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    cp = { version: FORMAT_VERSION, corpus, bm25, tokenizer: { ...tokenizerSpec, stopwords: [...tokenizerSpec.stopwords] }, nextByteOffset: 0, nextLine: 0, docs: 0, tokens: 0, runs: [] };
  } else {
    for (const f of readdirSync(partial)) if (f.startsWith("run-") && !cp.runs.includes(f)) rmSync(join(partial, f));
    truncateSync(join(partial, "docs.start"), cp.docs * 8);
    truncateSync(join(partial, "docs.len"), cp.docs * 4);
    truncateSync(join(partial, "docs.terms"), cp.docs * 4);
  }
  // A gzip or parquet corpus is decoded into the index (ROWS_FILE), and row offsets point there.
  const rowsPath = format === "jsonl" ? opts.corpusPath : join(partial, ROWS_FILE);
  // On resume the decoder rewrites (identical bytes) whatever of the rows file a crash may have lost.
  let rowsKept = 0;
  if (format !== "jsonl") {
    rowsKept = existsSync(rowsPath) ? Math.min(statSync(rowsPath).size, cp.nextByteOffset) : 0;
    if (!existsSync(rowsPath)) writeFileSync(rowsPath, "");
    truncateSync(rowsPath, rowsKept);
  }
  const resumedFromDoc = cp.docs;
  const metricsPath = join(partial, "build-metrics.jsonl");
  const tokenizer = new Bm25Tokenizer(tokenizerSpec);

  // ---- phase 1: invert ----
  const capacity = Math.max(1 << 10, Math.floor(((opts.memoryMb ?? 1024) * 2 ** 20) / BYTES_PER_POSTING));
  // Block arrays start small and double up to `capacity`, so small corpora use little memory.
  let pTerm: Uint32Array = new Uint32Array(Math.min(capacity, 1 << 20));
  let pDoc: Uint32Array = new Uint32Array(pTerm.length);
  let pTf: Uint16Array = new Uint16Array(pTerm.length);
  let n = 0;
  let vocab = new Map<string, number>();
  let blockTerms: string[] = [];
  let lastDoc = new Int32Array(1 << 16).fill(-1);
  let slot = new Uint32Array(1 << 16);

  const startW = new BinaryWriter(join(partial, "docs.start"), { append: true });
  const lenW = new BinaryWriter(join(partial, "docs.len"), { append: true });
  const termsW = new BinaryWriter(join(partial, "docs.terms"), { append: true });

  let docs = cp.docs;
  let tokens = cp.tokens;
  let bytesRead = format === "jsonl" ? cp.nextByteOffset : 0; // of the corpus file (compressed bytes for gzip)
  const every = opts.progressEveryMs ?? 500;
  let lastReport = 0;
  let phaseT0 = t0;
  let phaseFrom = 0; // fraction already done when this phase (or a resumed build) started
  const report = (phase: "invert" | "merge", fraction: number, terms: number, done: boolean) => {
    const now = performance.now();
    if (!done && now - lastReport < every) return;
    lastReport = now;
    const elapsed = (now - t0) / 1000;
    const rate = (docs - resumedFromDoc) / Math.max(elapsed, 1e-9);
    const p: BuildProgress = {
      phase, docs, bytesRead, totalBytes: corpus.bytes, terms, runs: cp!.runs.length, elapsedSeconds: elapsed, docsPerSecond: rate,
      fraction, etaSeconds: eta((now - phaseT0) / 1000, phaseFrom, fraction), resumedFromDoc, done,
    };
    appendFileSync(metricsPath, JSON.stringify({ time: new Date().toISOString(), ...p, rssBytes: process.memoryUsage().rss }) + "\n");
    opts.onProgress?.(p);
  };
  const invertFraction = () => (corpus.bytes > 0 ? bytesRead / corpus.bytes : 1);
  phaseFrom = invertFraction();

  const flushRun = (nextByteOffset: number, nextLine: number) => {
    if (n > 0) {
      const name = `run-${String(cp!.runs.length).padStart(5, "0")}.bin`;
      writeRun(join(partial, name), invertBlock(blockTerms, pTerm, pDoc, pTf, n));
      cp!.runs.push(name);
    }
    startW.sync();
    lenW.sync();
    termsW.sync();
    cp!.nextByteOffset = nextByteOffset;
    cp!.nextLine = nextLine;
    cp!.docs = docs;
    cp!.tokens = tokens;
    writeFileSync(cpPath + ".tmp", JSON.stringify(cp));
    renameSync(cpPath + ".tmp", cpPath);
    lastDoc.fill(-1, 0, blockTerms.length);
    vocab = new Map();
    blockTerms = [];
    n = 0;
  };

  let docNo = 0;
  let dl = 0;
  const onTerm = (term: string) => {
    dl++;
    let tid = vocab.get(term);
    if (tid === undefined) {
      tid = blockTerms.length;
      vocab.set(term, tid);
      blockTerms.push(term);
      if (tid >= lastDoc.length) {
        const nl = new Int32Array(lastDoc.length * 2).fill(-1);
        nl.set(lastDoc);
        lastDoc = nl;
        const ns = new Uint32Array(slot.length * 2);
        ns.set(slot);
        slot = ns;
      }
    }
    if (lastDoc[tid] !== docNo) {
      lastDoc[tid] = docNo;
      slot[tid] = n;
      pTerm[n] = tid;
      pDoc[n] = docNo;
      pTf[n] = 1;
      n++;
    } else {
      const s = slot[tid]!;
      if (pTf[s]! < 0xffff) pTf[s]!++;
    }
  };

  let prevEnd = cp.nextByteOffset;
  let prevLine = cp.nextLine;
  const decoder = format === "jsonl" ? undefined : CorpusDecoder.start(opts.corpusPath, format, rowsPath, rowsKept);
  const rows = readCorpusRows(rowsPath, { byteOffset: cp.nextByteOffset, line: cp.nextLine }, { label: opts.corpusPath, unit: format === "parquet" ? "row" : "line", decoder });
  try {
    for (const row of rows) {
      const text = row.doc.contents;
      // Room for this document's postings (never more than its length in UTF-16 units + 1).
      if (capacity - n < text.length + 1 || vocab.size > capacity / 4) flushRun(prevEnd, prevLine);
      if (pTerm.length - n < text.length + 1) {
        const grow = Math.max(n + text.length + 1, Math.min(capacity, pTerm.length * 2));
        pTerm = growU32(pTerm, grow);
        pDoc = growU32(pDoc, grow);
        const t = new Uint16Array(grow);
        t.set(pTf);
        pTf = t;
      }
      docNo = docs;
      dl = 0;
      tokenizer.forEachTerm(text, onTerm);
      startW.f64(row.start);
      lenW.u32(row.end - row.start);
      termsW.u32(dl);
      tokens += dl;
      docs++;
      bytesRead = decoder ? Math.round(decoder.sourceFraction * corpus.bytes) : row.end;
      prevEnd = row.end;
      prevLine = row.line;
      report("invert", invertFraction(), 0, false);
    }
  } finally {
    decoder?.close();
  }
  if (docs === 0) throw new RecallError(`corpus '${opts.corpusPath}' has no rows`);
  bytesRead = corpus.bytes;
  flushRun(decoder ? prevEnd : corpus.bytes, prevLine);
  startW.close();
  lenW.close();
  termsW.close();
  report("invert", 1, 0, true);
  pTerm = pDoc = new Uint32Array(0);
  pTf = new Uint16Array(0);

  // ---- phase 2: merge ----
  phaseT0 = performance.now();
  phaseFrom = 0;
  const docTerms = asU32(mapFile(join(partial, "docs.terms")));
  const avgDocLen = tokens / docs;
  const readers = cp.runs.map((r) => new RunReader(join(partial, r)));
  const dict = new TermDictionaryWriter(partial);
  const segments: number[] = [];
  let seg = 0, segCount = 0;
  let docW = new BinaryWriter(join(partial, segmentFile(0, "doc")));
  let scoreW = new BinaryWriter(join(partial, segmentFile(0, "score")));
  let bmaxW = new BlockMaxWriter(join(partial, segmentFile(0, "bmax")));
  const termMaxW = new BinaryWriter(join(partial, "terms.max"));
  let mDocs: Uint32Array = new Uint32Array(1 << 16);
  let mTfs: Uint16Array = new Uint16Array(1 << 16);
  let mScores: Float32Array = new Float32Array(1 << 16);
  let postings = 0;
  const { k1, b } = bm25;
  const segmentCap = Math.min(opts.segmentPostings ?? SEGMENT_POSTINGS, SEGMENT_POSTINGS);
  for (;;) {
    let min: string | undefined;
    for (const r of readers) if (r.term !== undefined && (min === undefined || r.term < min)) min = r.term;
    if (min === undefined) break;
    let total = 0;
    for (const r of readers) if (r.term === min) total += r.count;
    if (mDocs.length < total) {
      const cap = Math.max(total, mDocs.length * 2);
      mDocs = new Uint32Array(cap);
      mTfs = new Uint16Array(cap);
      mScores = new Float32Array(cap);
    }
    let at = 0;
    for (const r of readers) {
      if (r.term === min) {
        const c = r.count;
        r.take(mDocs, mTfs, at);
        at += c;
      }
    }
    if (segCount > 0 && segCount + total > segmentCap) {
      docW.close();
      scoreW.close();
      bmaxW.close();
      segments.push(segCount);
      seg++;
      segCount = 0;
      docW = new BinaryWriter(join(partial, segmentFile(seg, "doc")));
      scoreW = new BinaryWriter(join(partial, segmentFile(seg, "score")));
      bmaxW = new BlockMaxWriter(join(partial, segmentFile(seg, "bmax")));
    }
    const idf = bm25Idf(total, docs);
    for (let i = 0; i < total; i++) {
      const tf = mTfs[i]!;
      mScores[i] = (idf * tf) / (tf + k1 * (1 - b + (b * docTerms[mDocs[i]!]!) / avgDocLen));
    }
    docW.bytesOf(mDocs.subarray(0, total));
    scoreW.bytesOf(mScores.subarray(0, total));
    bmaxW.add(mScores, total);
    termMaxW.f32(rangeMax(mScores, 0, total));
    dict.add(min, { segment: seg, start: segCount, df: total });
    segCount += total;
    postings += total;
    if ((dict.count & 0xfff) === 0) report("merge", Math.min(0.999, postings / Math.max(1, estimatePostings(partial, cp.runs))), dict.count, false);
  }
  docW.close();
  scoreW.close();
  bmaxW.close();
  termMaxW.close();
  segments.push(segCount);
  dict.close();
  for (const r of readers) r.close();
  report("merge", 1, dict.count, true);

  for (const r of cp.runs) rmSync(join(partial, r));
  rmSync(cpPath, { force: true });
  const seconds = (performance.now() - t0) / 1000;
  const manifest: IndexManifest = {
    format: FORMAT,
    version: FORMAT_VERSION,
    createdBy: `recall ${VERSION}`,
    createdAt: new Date().toISOString(),
    bm25: { ...bm25, method: "lucene" },
    tokenizer: { stemmer: tokenizerSpec.stemmer, stopwords: [...tokenizerSpec.stopwords] },
    corpus,
    segments,
    scoreBounds: { blockPostings: BOUND_BLOCK },
    ...(decoder ? { rowsFile: { name: ROWS_FILE, ...rowsIdentity(rowsPath) } } : {}),
    stats: {
      docs, terms: dict.count, postings, tokens, avgDocLen, indexBytes: 0, corpusBytes: corpus.bytes,
      buildSeconds: seconds, docsPerSecond: (docs - resumedFromDoc) / seconds, peakRssBytes: peakRss(),
    },
  };
  manifest.files = indexFileDigests(partial, manifest);
  manifest.stats.indexBytes = dirBytes(partial);
  writeFileSync(join(partial, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
  install(partial, indexPath);
  return manifest;
}

/** Counting sort of a block's postings by term (terms in string order), keeping doc order within a term. */
function invertBlock(terms: string[], pTerm: Uint32Array, pDoc: Uint32Array, pTf: Uint16Array, n: number) {
  const T = terms.length;
  const order = Array.from({ length: T }, (_, i) => i).sort((a, b) => (terms[a]! < terms[b]! ? -1 : 1));
  const counts = new Uint32Array(T);
  for (let i = 0; i < n; i++) counts[pTerm[i]!]!++;
  const cursor = new Uint32Array(T);
  const starts = new Uint32Array(T + 1);
  let acc = 0;
  for (let r = 0; r < T; r++) {
    const tid = order[r]!;
    starts[r] = acc;
    cursor[tid] = acc;
    acc += counts[tid]!;
  }
  starts[T] = acc;
  const docs = new Uint32Array(n);
  const tfs = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const pos = cursor[pTerm[i]!]!++;
    docs[pos] = pDoc[i]!;
    tfs[pos] = pTf[i]!;
  }
  return { terms: order.map((i) => terms[i]!), starts, docs, tfs };
}

function eta(phaseSeconds: number, from: number, fraction: number): number | undefined {
  const done = fraction - from;
  if (!(done > 0) || fraction >= 1) return undefined;
  return (phaseSeconds * (1 - fraction)) / done;
}

function growU32(a: Uint32Array, min: number): Uint32Array {
  const b = new Uint32Array(Math.max(min, a.length));
  b.set(a);
  return b;
}

let postingsEstimate: { key: string; value: number } | undefined;
/** Total postings across runs (from run file sizes: 6 bytes a posting plus small term headers). */
function estimatePostings(dir: string, runs: string[]): number {
  const key = dir + runs.length;
  if (postingsEstimate?.key !== key) {
    let bytes = 0;
    for (const r of runs) bytes += statSync(join(dir, r)).size;
    postingsEstimate = { key, value: bytes / 6.5 };
  }
  return postingsEstimate.value;
}

function checkTarget(indexPath: string, overwrite: boolean): void {
  if (!existsSync(indexPath)) return;
  const isDir = statSync(indexPath).isDirectory();
  const entries = isDir ? readdirSync(indexPath) : ["(a file)"];
  if (entries.length === 0) return;
  if (isDir && entries.includes(MANIFEST_FILE)) {
    if (!overwrite) throw new RecallError(`--index_path '${indexPath}' already holds an index`, { hint: "pass --overwrite to replace it" });
    return;
  }
  throw new RecallError(`--index_path '${indexPath}' exists and is not a recall index; refusing to replace it`, { hint: "choose an empty or new directory" });
}

/** Moves the finished build into place; an index already there is replaced only after the new one is complete. */
function install(partial: string, indexPath: string): void {
  if (existsSync(indexPath)) {
    const old = `${indexPath}.old-${process.pid}`;
    renameSync(indexPath, old);
    renameSync(partial, indexPath);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(partial, indexPath);
  }
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) total += statSync(join(dir, f)).size;
  return total;
}

function peakRss(): number {
  const maxRss = process.resourceUsage().maxRSS; // KiB on Linux and macOS
  return maxRss > 0 ? maxRss * 1024 : process.memoryUsage().rss;
}

function rowsIdentity(path: string): { bytes: number; fingerprint: string } {
  const { bytes, fingerprint } = corpusIdentity(path);
  return { bytes, fingerprint };
}
