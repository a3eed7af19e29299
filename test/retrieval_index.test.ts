/**
 * BM25 indexing and scoring: hand-computed scores on a tiny corpus, parity with FlashRAG's bm25s
 * backend (golden file written by fixtures/retrieval/make_golden.py with bm25s 0.3.11 + PyStemmer
 * 3.1.0), the tokenizer and stemmer, and the build's guarantees (multi-run merge, segments, atomic
 * output, resume after a crash, corpus checks).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RecallError } from "../src/errors.ts";
import { Bm25Index } from "../src/retrieval/bm25_index.ts";
import { openBm25Retriever } from "../src/retrieval/bm25_retriever.ts";
import { buildBm25Index } from "../src/retrieval/index_builder.ts";
import { createStemmer } from "../src/retrieval/stemmer.ts";
import { ENGLISH_STOPWORDS, resolveStopwords } from "../src/retrieval/stopwords.ts";
import { Bm25Tokenizer } from "../src/retrieval/tokenizer.ts";
import { rng } from "./harness.ts";

const FIX = new URL("../fixtures/retrieval/", import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), "recall-retrieval-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const stop = [...ENGLISH_STOPWORDS];

describe("BM25 scores (hand-computed from the documented formula)", () => {
  // tiny_corpus.jsonl, after tokenizing (stop words out, Snowball stems):
  //   d1 "apple" apple apple banana        → appl×3 banana          |d| = 4
  //   d2 banana cherry                     → banana cherri          |d| = 2
  //   (blank line: not a document)
  //   3  "cherry" cherry×3 date  (title/text row) → cherri×4 date    |d| = 5
  //   d4 the running runner runs           → run runner run         |d| = 3
  // N = 4, avgdl = 14 / 4 = 3.5, k1 = 1.5, b = 0.75
  const k1 = 1.5, b = 0.75, avgdl = 3.5;
  const tfPart = (tf: number, dl: number) => tf / (tf + k1 * (1 - b + (b * dl) / avgdl));
  const idf1 = Math.log(1 + (4 - 1 + 0.5) / (1 + 0.5)); // df = 1
  const idf2 = Math.log(1 + (4 - 2 + 0.5) / (2 + 0.5)); // df = 2: ln 2

  test("index stats", () => {
    const m = buildBm25Index({ corpusPath: join(FIX, "tiny_corpus.jsonl"), indexPath: join(tmp, "tiny"), stopwords: stop });
    expect(m.stats.docs).toBe(4);
    expect(m.stats.tokens).toBe(14);
    expect(m.stats.avgDocLen).toBe(3.5);
    expect(m.stats.terms).toBe(6); // appl banana cherri date run runner
    expect(m.stats.postings).toBe(8);
    expect(m.bm25).toEqual({ k1: 1.5, b: 0.75, method: "lucene" });
  });

  test("two-term query: ranking and scores", async () => {
    const r = await openBm25Retriever(join(tmp, "tiny"));
    const res = await r.search("Apple cherry", 10);
    expect(res.docs.map((d) => d.id)).toEqual(["d1", "3", "d2"]);
    const want = [idf1 * tfPart(3, 4), idf2 * tfPart(4, 5), idf2 * tfPart(1, 2)];
    res.scores.forEach((s, i) => expect(s).toBeCloseTo(want[i]!, 6));
    expect(want[0]).toBeCloseTo(0.774971, 5); // the same numbers worked on paper
    expect(want[1]).toBeCloseTo(0.463476, 5);
    await r.close();
  });

  test("a repeated query term counts twice; stemming joins inflections; stop words and unknown words score nothing", async () => {
    const r = await openBm25Retriever(join(tmp, "tiny"));
    const once = await r.search("banana", 10);
    const twice = await r.search("banana bananas", 10);
    expect(twice.scores[0]).toBeCloseTo(2 * once.scores[0]!, 6);
    const run = await r.search("RUNS", 10);
    expect(run.docs.map((d) => d.id)).toEqual(["d4"]);
    expect(run.scores[0]).toBeCloseTo(idf1 * tfPart(2, 3), 6);
    expect((await r.search("the of and", 10)).docs).toEqual([]);
    expect((await r.search("zyzzyva", 10)).docs).toEqual([]);
    expect((await r.search("apple", 0)).docs).toEqual([]);
    await r.close();
  });

  test("returned docs carry the row's fields; title/text rows get FlashRAG-style contents", async () => {
    const r = await openBm25Retriever(join(tmp, "tiny"));
    const [d] = (await r.search("date", 1)).docs;
    expect(d).toEqual({ id: "3", title: "Cherry", text: "cherry cherry cherry date", url: "https://example.org/cherry", contents: '"Cherry"\ncherry cherry cherry date' });
    await r.close();
  });

  test("k1 and b are honoured", async () => {
    buildBm25Index({ corpusPath: join(FIX, "tiny_corpus.jsonl"), indexPath: join(tmp, "tiny-k1"), stopwords: stop, bm25: { k1: 0.9, b: 0.4 } });
    const r = await openBm25Retriever(join(tmp, "tiny-k1"));
    const s = (await r.search("apple", 1)).scores[0]!;
    expect(s).toBeCloseTo(idf1 * (3 / (3 + 0.9 * (1 - 0.4 + (0.4 * 4) / 3.5))), 6);
    await r.close();
  });
});

describe("parity with FlashRAG's bm25s backend", () => {
  const golden = JSON.parse(readFileSync(join(FIX, "bm25s_golden.json"), "utf8")) as {
    queries: { query: string; docs: number[]; scores: number[] }[];
  };

  test("same scores at every rank and the same documents wherever scores are not tied (40 queries)", () => {
    buildBm25Index({ corpusPath: join(FIX, "golden_corpus.jsonl"), indexPath: join(tmp, "golden"), stopwords: stop });
    const idx = Bm25Index.open(join(tmp, "golden"));
    let compared = 0;
    for (const q of golden.queries) {
      const want = q.scores.map((s, i) => ({ s, d: q.docs[i]! })).filter((x) => x.s > 0); // bm25s pads with score-0 docs
      const got = idx.search(q.query, 10);
      expect(got.docs.length).toBe(want.length);
      for (let i = 0; i < want.length; i++) {
        expect(Math.abs(got.scores[i]! - want[i]!.s)).toBeLessThan(2e-6);
        const tied = want.some((w, j) => j !== i && Math.abs(w.s - want[i]!.s) < 1e-5);
        if (!tied) {
          expect(got.docs[i]).toBe(want[i]!.d);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(250);
  });

  test("stemmer matches PyStemmer 3.1 (Snowball English) on a sample of Snowball's vocabulary", () => {
    const stem = createStemmer("english");
    const rows = readFileSync(join(FIX, "stems_golden.tsv"), "utf8").trim().split("\n").map((l) => l.split("\t"));
    expect(rows.length).toBeGreaterThan(2900);
    const bad = rows.filter(([w, s]) => stem(w!) !== s).map(([w, s]) => `${w}: got ${stem(w!)}, want ${s}`);
    expect(bad).toEqual([]);
    expect(stem("university")).toBe("universiti"); // Snowball 3 (Snowball 2 gave "univers")
  });
});

describe("tokenizer", () => {
  const t = new Bm25Tokenizer({ stemmer: "english", stopwords: stop });
  test("English: lower-case, 2+ word characters, stop words before stemming", () => {
    expect(t.terms("The Running of the BULLS, in 1990: a_b x y!")).toEqual(["run", "bull", "1990", "a_b"]);
    expect(t.terms("")).toEqual([]);
  });
  test("other scripts: words kept whole with their marks; no-space scripts as bigrams", () => {
    expect(t.terms("Москва Ελληνικά हिन्दी")).toEqual(["москва", "ελληνικά", "हिन्दी"]);
    expect(t.terms("東京大学")).toEqual(["東京", "京大", "大学"]);
    expect(t.terms("iPhone手机 京")).toEqual(["iphon", "手机", "京"]);
  });
  test("never throws on arbitrary Unicode (lone surrogates, controls, emoji, astral letters)", () => {
    const r = rng(7);
    for (let i = 0; i < 300; i++) {
      let s = "";
      for (let j = 0; j < 40; j++) s += String.fromCharCode(Math.floor(r() * 0xffff));
      s += "😀𝐀𝐁\u0000\ud800";
      expect(() => t.terms(s)).not.toThrow();
    }
  });
  test("stop-word specs", () => {
    expect(resolveStopwords("none")).toEqual([]);
    expect(resolveStopwords("english")).toHaveLength(33);
    expect(resolveStopwords("Foo, bar")).toEqual(["bar", "foo"]);
    const f = join(tmp, "stop.txt");
    writeFileSync(f, "alpha\nBeta\n\n");
    expect(resolveStopwords(f)).toEqual(["alpha", "beta"]);
    expect(() => resolveStopwords("/no/such/file.txt")).toThrow(RecallError);
  });
});

describe("index build", () => {
  const corpus = join(FIX, "golden_corpus.jsonl");
  const allHits = (dir: string) => {
    const idx = Bm25Index.open(dir);
    const golden = JSON.parse(readFileSync(join(FIX, "bm25s_golden.json"), "utf8")) as { queries: { query: string }[] };
    return golden.queries.map((q) => idx.search(q.query, 10));
  };

  test("a tiny memory budget (many runs, many segments) gives exactly the single-run index", () => {
    buildBm25Index({ corpusPath: corpus, indexPath: join(tmp, "one"), stopwords: stop });
    const m = buildBm25Index({ corpusPath: corpus, indexPath: join(tmp, "many"), stopwords: stop, memoryMb: 0.001, segmentPostings: 500 });
    expect(m.segments.length).toBeGreaterThan(5);
    expect(allHits(join(tmp, "many"))).toEqual(allHits(join(tmp, "one")));
    const metrics = readFileSync(join(tmp, "many", "build-metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(metrics.at(-1)).toMatchObject({ phase: "merge", done: true });
    expect(metrics.some((p: { runs: number }) => p.runs > 3)).toBe(true);
  });

  test("a crashed build leaves no index; running again resumes from the last run and gives the same index", () => {
    const dir = join(tmp, "crash");
    let calls = 0;
    expect(() =>
      buildBm25Index({
        corpusPath: corpus, indexPath: dir, stopwords: stop, memoryMb: 0.001, progressEveryMs: 0,
        onProgress: (p) => {
          if (p.phase === "invert" && p.runs >= 3 && ++calls > 1) throw new Error("simulated crash");
        },
      }),
    ).toThrow("simulated crash");
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`${dir}.partial/progress.json`)).toBe(true);
    expect(() => Bm25Index.open(dir)).toThrow(/interrupted build/);
    let resumedFrom = -1;
    const m = buildBm25Index({ corpusPath: corpus, indexPath: dir, stopwords: stop, memoryMb: 0.001, onProgress: (p) => (resumedFrom = p.resumedFromDoc) });
    expect(resumedFrom).toBeGreaterThan(0);
    expect(m.stats.docs).toBe(300);
    expect(existsSync(`${dir}.partial`)).toBe(false);
    expect(allHits(dir)).toEqual(allHits(join(tmp, "one")));
  });

  test("refuses to replace an index without overwrite, and never a directory that is not an index", () => {
    expect(() => buildBm25Index({ corpusPath: corpus, indexPath: join(tmp, "one"), stopwords: stop })).toThrow(/already holds an index/);
    const other = join(tmp, "notanindex");
    require("node:fs").mkdirSync(other);
    writeFileSync(join(other, "keep.txt"), "x");
    expect(() => buildBm25Index({ corpusPath: corpus, indexPath: other, stopwords: stop, overwrite: true })).toThrow(/not a recall index/);
    expect(existsSync(join(other, "keep.txt"))).toBe(true);
  });

  test("bad rows are named by file and line", () => {
    const bad = join(tmp, "bad.jsonl");
    writeFileSync(bad, '{"id": "a", "contents": "fine"}\n{"id": "b", "contents": \n');
    expect(() => buildBm25Index({ corpusPath: bad, indexPath: join(tmp, "bad"), stopwords: stop })).toThrow(`${bad} line 2: not valid JSON`);
    writeFileSync(bad, '{"id": "a", "contents": "fine"}\n{"contents": "no id"}\n');
    expect(() => buildBm25Index({ corpusPath: bad, indexPath: join(tmp, "bad"), stopwords: stop, resume: false })).toThrow(`${bad} line 2: missing "id"`);
    writeFileSync(bad, "\n\n");
    expect(() => buildBm25Index({ corpusPath: bad, indexPath: join(tmp, "bad"), stopwords: stop, resume: false })).toThrow("has no rows");
    expect(existsSync(join(tmp, "bad"))).toBe(false);
  });

  test("a corpus changed after indexing is refused at open", async () => {
    const c = join(tmp, "changing.jsonl");
    writeFileSync(c, readFileSync(join(FIX, "tiny_corpus.jsonl")));
    buildBm25Index({ corpusPath: c, indexPath: join(tmp, "changing"), stopwords: stop });
    writeFileSync(c, readFileSync(join(FIX, "tiny_corpus.jsonl"), "utf8").replace("banana cherry", "banana cherri"));
    await expect(openBm25Retriever(join(tmp, "changing"))).rejects.toThrow(/not the file the index/);
  });

  test("a damaged index (a file cut short, a changed byte) is refused at open with what to rebuild (issue 17.2)", () => {
    const corpusPath = join(FIX, "tiny_corpus.jsonl");
    const fresh = (name: string) => {
      const dir = join(tmp, name);
      const m = buildBm25Index({ corpusPath, indexPath: dir, stopwords: stop });
      expect(Object.keys(m.files!).sort()).toEqual(["docs.len", "docs.start", "docs.terms", "postings-000.bmax", "postings-000.doc", "postings-000.score", "terms.bin", "terms.max", "terms.meta", "terms.off"]);
      return dir;
    };
    const cut = fresh("cut");
    truncateSync(join(cut, "terms.bin"), 3);
    const e = (() => {
      try {
        Bm25Index.open(cut);
      } catch (err) {
        return err as RecallError;
      }
    })();
    expect(e).toBeInstanceOf(RecallError);
    expect(e!.message).toMatch(new RegExp(`^index '${cut}' is damaged: terms\\.bin is 3 bytes, the manifest says \\d+$`));
    expect(e!.hint).toBe(`rebuild it: recall retriever index --corpus_path ${corpusPath} --index_path ${cut}`);
    const flipped = fresh("flipped");
    const score = join(flipped, "postings-000.score");
    const bytes = readFileSync(score);
    bytes[0] ^= 0x40;
    writeFileSync(score, bytes);
    expect(() => Bm25Index.open(flipped)).toThrow(`index '${flipped}' is damaged: postings-000.score does not match the hash in its manifest`);
    // An index built before files were recorded still opens (nothing to check it against).
    const old = fresh("old");
    const manifestPath = join(old, "recall-bm25.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as Record<string, unknown>;
    delete manifest.files;
    writeFileSync(manifestPath, JSON.stringify(manifest));
    expect(Bm25Index.open(old).search("banana", 2).docs.length).toBeGreaterThan(0);
  });

  test("rows with CRLF endings and no final newline", async () => {
    const c = join(tmp, "crlf.jsonl");
    writeFileSync(c, '{"id": 1, "contents": "alpha beta"}\r\n{"id": 2, "contents": "gamma delta"}');
    buildBm25Index({ corpusPath: c, indexPath: join(tmp, "crlf"), stopwords: stop });
    const r = await openBm25Retriever(join(tmp, "crlf"));
    expect((await r.search("delta", 5)).docs).toEqual([{ id: "2", contents: "gamma delta" }]);
    expect((await r.search("alpha", 5)).docs).toEqual([{ id: "1", contents: "alpha beta" }]);
    await r.close();
  });
});
