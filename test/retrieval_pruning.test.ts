/**
 * Dynamic pruning (MaxScore + block-max, src/retrieval/pruned_search.ts) must return exactly what exhaustive scoring
 * returns: same documents, same float32 scores, ties to the lower document number. Randomized corpora of odd sizes
 * (Zipf words, duplicated passages for exact ties, passages of stop words only), split into many segments so blocks
 * straddle terms and segments; queries with repeated terms, unknown words, stop words only, nothing at all; k from 1
 * to more than the matching documents. Also: stored bounds equal the ones computed at open, and an index written
 * without bounds still opens and answers the same.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asF32, mapFile } from "../src/retrieval/binary_io.ts";
import { Bm25Index } from "../src/retrieval/bm25_index.ts";
import { buildBm25Index } from "../src/retrieval/index_builder.ts";
import { segmentFile } from "../src/retrieval/index_format.ts";
import { blockMaxOf, termMaxOf } from "../src/retrieval/score_bounds.ts";
import { ENGLISH_STOPWORDS } from "../src/retrieval/stopwords.ts";
import { TermDictionary } from "../src/retrieval/term_dictionary.ts";
import { rng } from "./harness.ts";

const tmp = mkdtempSync(join(tmpdir(), "recall-pruning-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const stop = [...ENGLISH_STOPWORDS];

interface Case {
  dir: string;
  vocab: string[];
  docs: number;
}

/** A random corpus: Zipf-distributed words (a few very frequent, most rare), some passages duplicated. */
function makeCorpus(name: string, seed: number, docs: number, vocabSize: number, segmentPostings?: number): Case {
  const r = rng(seed);
  const vocab = Array.from({ length: vocabSize }, (_, i) => `w${i.toString(36)}x`);
  const cdf: number[] = [];
  let acc = 0;
  for (let i = 0; i < vocabSize; i++) cdf.push((acc += 1 / (i + 1)));
  const word = () => {
    const x = r() * acc;
    let lo = 0;
    while (cdf[lo]! < x) lo++;
    return vocab[lo]!;
  };
  const rows: string[] = [];
  const bodies: string[] = [];
  for (let d = 0; d < docs; d++) {
    let body: string;
    const u = r();
    if (u < 0.08 && bodies.length > 0) body = bodies[Math.floor(r() * bodies.length)]!; // an exact duplicate: tied scores
    else if (u < 0.1) body = "the of and a";  // stop words only: no terms
    else {
      const len = 1 + Math.floor(r() * 30);
      const w: string[] = [];
      for (let i = 0; i < len; i++) w.push(r() < 0.2 ? stop[Math.floor(r() * stop.length)]! : word());
      body = w.join(" ");
    }
    bodies.push(body);
    rows.push(JSON.stringify({ id: `d${d}`, contents: body }));
  }
  const corpus = join(tmp, `${name}.jsonl`);
  writeFileSync(corpus, rows.join("\n") + "\n");
  const dir = join(tmp, name);
  buildBm25Index({ corpusPath: corpus, indexPath: dir, stopwords: stop, memoryMb: 0.01, segmentPostings });
  return { dir, vocab, docs };
}

function randomQueries(c: Case, seed: number, count: number): string[] {
  const r = rng(seed);
  const pick = () => (r() < 0.5 ? c.vocab[Math.floor(r() * Math.min(8, c.vocab.length))]! : c.vocab[Math.floor(r() * c.vocab.length)]!);
  const qs = ["", "   ", "the of and", "zzzunknown", "zzzunknown the", `${c.vocab[0]} ${c.vocab[0]} ${c.vocab[0]}`];
  for (let i = 0; i < count; i++) {
    const n = 1 + Math.floor(r() * 7);
    const w: string[] = [];
    for (let j = 0; j < n; j++) {
      const u = r();
      if (u < 0.1 && w.length > 0) w.push(w[Math.floor(r() * w.length)]!); // a repeated term
      else if (u < 0.15) w.push("the");
      else if (u < 0.18) w.push("qqnothere");
      else w.push(pick());
    }
    qs.push(w.join(" "));
  }
  return qs;
}

function expectSameAsExhaustive(idx: Bm25Index, queries: string[], ks: number[]): number {
  let compared = 0;
  for (const q of queries) {
    for (const k of ks) {
      const want = idx.searchExhaustive(q, k);
      const got = idx.search(q, k);
      if (JSON.stringify(got) !== JSON.stringify(want)) expect({ query: q, k, got }).toEqual({ query: q, k, got: want });
      compared++;
    }
  }
  return compared;
}

describe("pruned search equals exhaustive scoring", () => {
  const cases = [
    makeCorpus("one", 1, 1, 5),
    makeCorpus("seven", 2, 7, 4),
    makeCorpus("odd", 3, 333, 40, 97),
    makeCorpus("zipf", 4, 2_501, 300, 1_000),
    makeCorpus("wide", 5, 4_099, 2_000),
  ];

  for (const c of cases) {
    test(`${c.docs} passages: random queries, k from 1 to beyond the matches`, () => {
      const idx = Bm25Index.open(c.dir);
      const n = expectSameAsExhaustive(idx, randomQueries(c, c.docs, 150), [1, 2, 3, 10, 37, c.docs + 5]);
      expect(n).toBeGreaterThan(100);
      expect(idx.search("", 10)).toEqual({ docs: [], scores: [] });
      expect(idx.search("the of", 10)).toEqual({ docs: [], scores: [] });
      expect(idx.search(c.vocab[0]!, 0)).toEqual({ docs: [], scores: [] });
    });
  }

  test("exact ties keep the lower document number when pruning cuts in", () => {
    // 500 identical passages and a few stronger ones: the top 10 are decided among equal scores.
    const rows = Array.from({ length: 500 }, (_, i) => JSON.stringify({ id: i, contents: "alpha beta gamma" }));
    rows.splice(250, 0, JSON.stringify({ id: "strong", contents: "alpha alpha beta" }));
    const corpus = join(tmp, "ties.jsonl");
    writeFileSync(corpus, rows.join("\n"));
    buildBm25Index({ corpusPath: corpus, indexPath: join(tmp, "ties"), stopwords: stop });
    const idx = Bm25Index.open(join(tmp, "ties"));
    for (const q of ["alpha", "alpha beta", "gamma beta alpha", "alpha alpha", "beta"]) {
      for (const k of [1, 5, 10, 499, 600]) expect(idx.search(q, k)).toEqual(idx.searchExhaustive(q, k));
    }
    expect(idx.search("alpha beta", 3).docs).toEqual([250, 0, 1]);
  });

  test("stored bounds equal bounds computed from the scores", () => {
    const c = cases[3]!;
    const m = JSON.parse(readFileSync(join(c.dir, "recall-bm25.json"), "utf8"));
    expect(m.scoreBounds).toEqual({ blockPostings: 64 });
    expect(m.segments.length).toBeGreaterThan(3);
    const scores = m.segments.map((_: number, s: number) => asF32(mapFile(join(c.dir, segmentFile(s, "score")))));
    for (let s = 0; s < m.segments.length; s++) {
      expect(Array.from(asF32(mapFile(join(c.dir, segmentFile(s, "bmax")))))).toEqual(Array.from(blockMaxOf(scores[s])));
    }
    expect(Array.from(asF32(mapFile(join(c.dir, "terms.max"))))).toEqual(Array.from(termMaxOf(new TermDictionary(c.dir).meta, scores)));
  });

  test("an index written without bounds opens (bounds computed at open) and answers the same", () => {
    const c = makeCorpus("old", 9, 1_201, 150, 700);
    const before = randomQueries(c, 7, 40).map((q) => Bm25Index.open(c.dir).search(q, 10));
    const path = join(c.dir, "recall-bm25.json");
    const m = JSON.parse(readFileSync(path, "utf8"));
    delete m.scoreBounds;
    for (const f of Object.keys(m.files)) if (f === "terms.max" || f.endsWith(".bmax")) {
      delete m.files[f];
      unlinkSync(join(c.dir, f));
    }
    writeFileSync(path, JSON.stringify(m));
    const idx = Bm25Index.open(c.dir);
    expect(randomQueries(c, 7, 40).map((q) => idx.search(q, 10))).toEqual(before);
    expectSameAsExhaustive(idx, randomQueries(c, 8, 60), [1, 10, 2000]);
  });
});
