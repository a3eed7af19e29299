/**
 * An opened BM25 index: the manifest, the term dictionary, the postings segments and their score bounds,
 * memory-mapped. `search` turns a query into terms with the index's own tokenizer settings and returns the documents
 * with the highest sum of stored per-(term, document) scores over the query terms (repeated terms count again),
 * pruning with the score bounds (pruned_search.ts); `searchExhaustive` adds up every posting and gives the same answer.
 * Only documents that contain at least one query term are returned.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { consola } from "consola";
import { RecallError } from "../errors.ts";
import { asF32, asU32, mapFile } from "./binary_io.ts";
import { verifyIndexFiles } from "./index_integrity.ts";
import { BOUND_BLOCK, FORMAT, FORMAT_VERSION, MANIFEST_FILE, segmentFile, type IndexManifest } from "./index_format.ts";
import { maxScoreTopK, type TermPostings } from "./pruned_search.ts";
import { blockMaxOf, termMaxOf } from "./score_bounds.ts";
import { TermDictionary } from "./term_dictionary.ts";
import { Bm25Tokenizer } from "./tokenizer.ts";
import { topK } from "./top_k.ts";

export interface DocHits {
  /** Document numbers (row order in the corpus), best first. */
  docs: number[];
  scores: number[];
}

/** Indexes already told (once per process) that their bounds were computed at open. */
const warnedNoBounds = new Set<string>();

export class Bm25Index {
  readonly tokenizer: Bm25Tokenizer;
  private readonly dict: TermDictionary;
  private readonly segDocs: Uint32Array[] = [];
  private readonly segScores: Float32Array[] = [];
  private readonly segBlockMax: Float32Array[] = [];
  private readonly termMax: Float32Array;
  private acc: Float32Array | undefined;
  private touched = new Uint32Array(1 << 16);

  private constructor(readonly dir: string, readonly manifest: IndexManifest) {
    this.tokenizer = new Bm25Tokenizer({ stemmer: manifest.tokenizer.stemmer, stopwords: manifest.tokenizer.stopwords });
    this.dict = new TermDictionary(dir);
    for (let s = 0; s < manifest.segments.length; s++) {
      this.segDocs.push(asU32(mapFile(join(dir, segmentFile(s, "doc")))));
      this.segScores.push(asF32(mapFile(join(dir, segmentFile(s, "score")))));
    }
    if (manifest.scoreBounds?.blockPostings === BOUND_BLOCK) {
      this.termMax = asF32(mapFile(join(dir, "terms.max")));
      for (let s = 0; s < manifest.segments.length; s++) this.segBlockMax.push(asF32(mapFile(join(dir, segmentFile(s, "bmax")))));
    } else {
      // Built by a recall without stored bounds: compute them (one pass over the scores) so search still prunes.
      const t0 = performance.now();
      this.termMax = termMaxOf(this.dict.meta, this.segScores);
      for (const scores of this.segScores) this.segBlockMax.push(blockMaxOf(scores));
      if (!warnedNoBounds.has(dir)) {
        warnedNoBounds.add(dir);
        consola.warn(
          `index '${dir}' has no stored score bounds (built by an older recall); computed them in ${((performance.now() - t0) / 1000).toFixed(1)} s at open — rebuild it with 'recall retriever index --overwrite' to skip this`,
        );
      }
    }
  }

  static open(dir: string): Bm25Index {
    return new Bm25Index(dir, readManifest(dir));
  }

  get numDocs(): number {
    return this.manifest.stats.docs;
  }

  /** The query's terms found in the index, with how often each occurs in the query. */
  queryTerms(query: string): Map<string, number> {
    const counts = new Map<string, number>();
    this.tokenizer.forEachTerm(query, (t) => counts.set(t, (counts.get(t) ?? 0) + 1));
    return counts;
  }

  /** The top `topN` documents, skipping the postings that cannot reach them. */
  search(query: string, topN: number): DocHits {
    if (topN <= 0) return { docs: [], scores: [] };
    const terms: TermPostings[] = [];
    for (const [term, qtf] of this.queryTerms(query)) {
      const t = this.dict.find(term);
      if (t < 0) continue;
      const meta = this.dict.meta, seg = meta[3 * t]!, start = meta[3 * t + 1]!;
      terms.push({
        docs: this.segDocs[seg]!, scores: this.segScores[seg]!, blockMax: this.segBlockMax[seg]!,
        start, end: start + meta[3 * t + 2]!, qtf, maxScore: this.termMax[t]!,
      });
    }
    return maxScoreTopK(terms, topN);
  }

  /** The same answer as `search`, from every posting of every query term (the reference the pruned search is tested against). */
  searchExhaustive(query: string, topN: number): DocHits {
    if (topN <= 0) return { docs: [], scores: [] };
    const acc = (this.acc ??= new Float32Array(this.numDocs));
    let touched = this.touched;
    let nt = 0;
    for (const [term, qtf] of this.queryTerms(query)) {
      const e = this.dict.lookup(term);
      if (!e) continue;
      const docs = this.segDocs[e.segment]!;
      const scores = this.segScores[e.segment]!;
      const end = e.start + e.df;
      if (touched.length < nt + e.df) {
        const bigger = new Uint32Array(Math.min(this.numDocs, Math.max(nt + e.df, touched.length * 2)));
        bigger.set(touched.subarray(0, nt));
        touched = this.touched = bigger;
      }
      for (let p = e.start; p < end; p++) {
        const d = docs[p]!;
        const v = acc[d]!;
        if (v === 0) touched[nt++] = d;
        acc[d] = v + qtf * scores[p]!;
      }
    }
    const hits = topK(touched, nt, acc, topN);
    for (let i = 0; i < nt; i++) acc[touched[i]!] = 0;
    return hits;
  }
}
export function readManifest(dir: string): IndexManifest {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) {
    if (existsSync(join(dir, "params.index.json")) || existsSync(join(dir, "vocab.index.json"))) {
      throw new RecallError(`--index_path '${dir}' is a bm25s (FlashRAG) index; recall reads its own format`, {
        hint: `build one from the same corpus: recall retriever index --corpus_path CORPUS.jsonl --index_path ${dir}-recall`,
      });
    }
    if (existsSync(`${dir}.partial`)) {
      throw new RecallError(`--index_path '${dir}' is not finished (an interrupted build left '${dir}.partial')`, {
        hint: "run the same 'recall retriever index' command again to resume it",
      });
    }
    throw new RecallError(`--index_path '${dir}' is not a recall BM25 index (no ${MANIFEST_FILE})`, {
      hint: "build one with: recall retriever index --corpus_path CORPUS.jsonl --index_path DIR",
    });
  }
  let m: IndexManifest;
  try {
    m = JSON.parse(readFileSync(path, "utf8")) as IndexManifest;
  } catch (e) {
    throw new RecallError(`${path}: unreadable manifest (${(e as Error).message})`);
  }
  if (m.format !== FORMAT || m.version !== FORMAT_VERSION) {
    throw new RecallError(`${path}: index format ${m.format} v${m.version}, this recall reads ${FORMAT} v${FORMAT_VERSION}`, { hint: "rebuild the index" });
  }
  verifyIndexFiles(dir, m);
  return m;
}
