/**
 * The on-disk layout of a recall BM25 index (a directory). All numbers little-endian.
 *
 * | file | contents |
 * | --- | --- |
 * | `recall-bm25.json` | manifest: format version, BM25 parameters, tokenizer, corpus identity, stats. Written last: a directory without it is not an index |
 * | `terms.bin` | every term's UTF-8 bytes, concatenated, terms in ascending JS string order |
 * | `terms.off` | u32 × (T + 1): byte offset of term i in terms.bin (last = end) |
 * | `terms.meta` | u32 × 3T: (segment, first posting within the segment, df) per term |
 * | `postings-NNN.doc` | u32 per posting: document number, ascending within a term |
 * | `postings-NNN.score` | f32 per posting: the BM25 term score idf · tf-part for that document (see bm25_formula.ts) |
 * | `docs.start` | f64 per document: byte offset of its row in the corpus JSONL |
 * | `docs.len` | u32 per document: byte length of that row |
 * | `docs.terms` | u32 per document: its length in terms after stop-word removal (|d|) |
 * | `terms.max` | f32 per term: the largest stored score among its postings (MaxScore's per-term upper bound) |
 * | `postings-NNN.bmax` | f32 per block of BOUND_BLOCK postings of the segment (positions [64j, 64j + 64)): their largest score |
 * | `rows.jsonl` | only for a `.jsonl.gz` or parquet corpus: its rows as plain JSONL, which docs.start/docs.len point into |
 * | `build-metrics.jsonl` | progress records written during the build |
 *
 * The manifest records every data file's size and hash (`files`); an index whose files do not match — cut short by a
 * full disk, a partial copy — is refused at open rather than answering from truncated postings.
 *
 * The bounds (`terms.max`, `postings-NNN.bmax`, manifest `scoreBounds`) let top-k search skip postings that cannot
 * reach the k-th score (score_bounds.ts, pruned_search.ts). A block is aligned to segment positions, not to terms, so
 * a block at a term boundary bounds the postings of both terms — looser, never wrong. Indexes written before the
 * bounds existed (no `scoreBounds`) are still read: the bounds are computed in memory when such an index is opened.
 *
 * Postings are split into segments of at most SEGMENT_POSTINGS entries (1 GiB per file) so every file
 * can be memory-mapped as one typed array; a term's postings never straddle two segments.
 */
import type { Bm25Params } from "./bm25_formula.ts";
import type { StemmerName } from "./stemmer.ts";

export const MANIFEST_FILE = "recall-bm25.json";
export const FORMAT = "recall-bm25";
export const FORMAT_VERSION = 1;
export const SEGMENT_POSTINGS = 1 << 28;

/** Postings per block-max entry. */
export const BOUND_BLOCK = 64;
/** The corpus rows copied into the index when the corpus itself cannot be read by byte offset (gzip, parquet). */
export const ROWS_FILE = "rows.jsonl";

export const segmentFile = (seg: number, kind: "doc" | "score" | "bmax") => `postings-${String(seg).padStart(3, "0")}.${kind}`;

export interface CorpusIdentity {
  /** Absolute path at build time. */
  path: string;
  bytes: number;
  /** Hash of the first and last MiB: a cheap check that a corpus given at serve time is the same file. */
  fingerprint: string;
}

export interface IndexStats {
  docs: number;
  terms: number;
  postings: number;
  /** Σ |d| (terms after stop words, with repetition). */
  tokens: number;
  avgDocLen: number;
  /** Size of the index files on disk. */
  indexBytes: number;
  corpusBytes: number;
  buildSeconds: number;
  docsPerSecond: number;
  peakRssBytes: number;
}

export interface IndexManifest {
  format: typeof FORMAT;
  version: number;
  createdBy: string;
  createdAt: string;
  bm25: Bm25Params & { method: "lucene" };
  tokenizer: { stemmer: StemmerName; stopwords: string[] };
  corpus: CorpusIdentity;
  segments: number[];
  stats: IndexStats;
  /** Present when the index stores per-term and per-block score bounds (`terms.max`, `postings-NNN.bmax`). */
  scoreBounds?: { blockPostings: number };
  /**
   * Present when the corpus rows are stored in the index (ROWS_FILE) because the corpus is gzip or parquet; checked at
   * open like a corpus (size and a hash of its first and last MiB), not hashed whole.
   */
  rowsFile?: { name: string; bytes: number; fingerprint: string };
  /** Size and hash of every data file, checked at open (absent in indexes built before recall checked them). */
  files?: Record<string, FileDigest>;
}

export interface FileDigest {
  bytes: number;
  /** Bun.hash (wyhash) of the contents, hex. */
  hash: string;
}

/** The data files of an index (everything the manifest vouches for). */
export function indexDataFiles(m: Pick<IndexManifest, "segments" | "scoreBounds">): string[] {
  const files = ["terms.bin", "terms.off", "terms.meta", "docs.start", "docs.len", "docs.terms"];
  if (m.scoreBounds) files.push("terms.max");
  for (let s = 0; s < m.segments.length; s++) {
    files.push(segmentFile(s, "doc"), segmentFile(s, "score"));
    if (m.scoreBounds) files.push(segmentFile(s, "bmax"));
  }
  return files;
}
