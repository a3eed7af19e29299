/**
 * Corpora as gzipped JSONL and parquet (`recall retriever index --corpus_path wiki.jsonl.gz` / `corpus.parquet`): the
 * index built from either equals the one built from the plain JSONL (same hits, same scores, same documents), keeps
 * its rows so the source file is not needed at search time, resumes after a crash, and names the file and line/row
 * of bad input.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { Bm25Index } from "../src/retrieval/bm25_index.ts";
import { openBm25RetrieverSync } from "../src/retrieval/bm25_retriever.ts";
import { buildBm25Index } from "../src/retrieval/index_builder.ts";
import { ENGLISH_STOPWORDS } from "../src/retrieval/stopwords.ts";
import type { SearchResult } from "../src/retrieval/types.ts";

const FIX = new URL("../fixtures/retrieval/", import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), "recall-corpus-formats-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const stop = [...ENGLISH_STOPWORDS];
const plain = join(FIX, "golden_corpus.jsonl");
const plainText = readFileSync(plain, "utf8");
const rows = plainText.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as { id: string; contents: string });
const queries = (JSON.parse(readFileSync(join(FIX, "bm25s_golden.json"), "utf8")) as { queries: { query: string }[] }).queries.map((q) => q.query);

function answers(indexPath: string): SearchResult[] {
  const r = openBm25RetrieverSync(indexPath);
  try {
    return queries.map((q) => r.searchSync(q, 5));
  } finally {
    r.store.close();
  }
}

function build(corpusPath: string, name: string, extra: Partial<Parameters<typeof buildBm25Index>[0]> = {}) {
  return buildBm25Index({ corpusPath, indexPath: join(tmp, name), stopwords: stop, ...extra });
}

const expectThrowMessage = (f: () => unknown, message: string) => expect(f).toThrow(message);

describe("gzipped JSONL corpus", () => {
  test("indexes like the plain file, and serves documents without it", () => {
    build(plain, "plain");
    const want = answers(join(tmp, "plain"));
    expect(want.some((a) => a.docs.length > 0)).toBe(true);
    // Two gzip members back to back (as `cat a.gz b.gz` or bgzip write): one stream of rows.
    const half = plainText.indexOf("\n", plainText.length >> 1) + 1;
    const gz = join(tmp, "corpus.jsonl.gz");
    writeFileSync(gz, Buffer.concat([gzipSync(plainText.slice(0, half)), gzipSync(plainText.slice(half))]));
    const m = build(gz, "gz");
    expect(m.stats.docs).toBe(rows.length);
    expect(m.rowsFile?.name).toBe("rows.jsonl");
    expect(answers(join(tmp, "gz"))).toEqual(want);
    rmSync(gz);
    expect(answers(join(tmp, "gz"))).toEqual(want); // rows come from the index
  });

  test("a crashed build resumes and gives the same index", () => {
    const gz = join(tmp, "resume.jsonl.gz");
    writeFileSync(gz, gzipSync(plainText));
    const dir = join(tmp, "gz-resume");
    let calls = 0;
    expect(() =>
      buildBm25Index({
        corpusPath: gz, indexPath: dir, stopwords: stop, memoryMb: 0.001, progressEveryMs: 0,
        onProgress: (p) => {
          if (p.phase === "invert" && p.runs >= 3 && ++calls > 1) throw new Error("simulated crash");
        },
      }),
    ).toThrow("simulated crash");
    let resumedFrom = -1;
    buildBm25Index({ corpusPath: gz, indexPath: dir, stopwords: stop, memoryMb: 0.001, onProgress: (p) => (resumedFrom = p.resumedFromDoc) });
    expect(resumedFrom).toBeGreaterThan(0);
    expect(answers(dir)).toEqual(answers(join(tmp, "plain")));
  });

  test("bad input names the file and line", () => {
    const bad = join(tmp, "bad.jsonl.gz");
    writeFileSync(bad, gzipSync('{"id": "a", "contents": "fine"}\n\n{"id": "b", "contents": \n'));
    expectThrowMessage(() => build(bad, "bad-json"), `${bad} line 3: not valid JSON`);
    writeFileSync(bad, gzipSync('{"id": "a", "contents": "fine"}\n{"contents": "no id"}\n'));
    expectThrowMessage(() => build(bad, "bad-id", { resume: false }), `${bad} line 2: missing "id"`);
    const good = gzipSync(plainText);
    writeFileSync(bad, good.subarray(0, good.length >> 1)); // cut short
    expect(() => build(bad, "bad-cut", { resume: false })).toThrow(new RegExp(`^${bad}: not readable as gzip`));
    writeFileSync(bad, plainText); // not gzip at all
    expect(() => build(bad, "bad-notgz", { resume: false })).toThrow(new RegExp(`^${bad}: not readable as gzip`));
    expect(existsSync(join(tmp, "bad-cut"))).toBe(false);
    expect(() => build(join(tmp, "x.jsonl.bz2"), "bz2")).toThrow(/decompress this one first/);
  });
});

describe("parquet corpus", () => {
  const write = (path: string, columns: { name: string; data: unknown[]; type?: "STRING" | "INT64" }[], codec?: "ZSTD", rowGroupSize?: number) => {
    const buf = parquetWriteBuffer({
      columnData: columns.map((c) => ({ name: c.name, data: c.data as string[], type: c.type ?? "STRING" })),
      ...(codec ? { codec, compressors: { ZSTD: (b: Uint8Array) => new Uint8Array(zstdCompressSync(b)) } } : {}),
      ...(rowGroupSize ? { rowGroupSize } : {}),
    });
    writeFileSync(path, new Uint8Array(buf));
  };

  test("{id, contents} rows in several row groups index like the plain file (snappy and zstd)", () => {
    const want = answers(join(tmp, "plain"));
    for (const codec of [undefined, "ZSTD"] as const) {
      const pq = join(tmp, `corpus-${codec ?? "snappy"}.parquet`);
      write(pq, [{ name: "id", data: rows.map((r) => r.id) }, { name: "contents", data: rows.map((r) => r.contents) }], codec, 37);
      const m = build(pq, `pq-${codec ?? "snappy"}`);
      expect(m.stats.docs).toBe(rows.length);
      expect(answers(join(tmp, `pq-${codec ?? "snappy"}`))).toEqual(want);
    }
  });

  test("int64 ids and {id, title, text} rows", () => {
    const pq = join(tmp, "titled.parquet");
    write(pq, [
      { name: "id", data: [1n, 2n, 9007199254740993n], type: "INT64" },
      { name: "title", data: ["Alpha", "Beta", "Gamma"] },
      { name: "text", data: ["first passage about storms", "second passage about tides", "third passage"] },
    ]);
    build(pq, "titled");
    const r = openBm25RetrieverSync(join(tmp, "titled"));
    const hit = r.searchSync("storms", 3);
    expect(hit.docs.map((d) => [d.id, d.contents])).toEqual([["1", '"Alpha"\nfirst passage about storms']]);
    expect(r.searchSync("gamma", 1).docs[0]!.id).toBe("9007199254740993");
    r.store.close();
  });

  test("bad input names the file and row", () => {
    const pq = join(tmp, "bad.parquet");
    write(pq, [{ name: "id", data: ["a", "b"] }, { name: "body", data: ["x", "y"] }]);
    expect(() => build(pq, "pq-bad-cols")).toThrow(`${pq}: a corpus needs an "id" column and a "contents" (or "title"/"text") column; its columns are id, body`);
    write(pq, [{ name: "id", data: ["a", "b", "c"] }, { name: "contents", data: ["x", "y", null] }]);
    expect(() => build(pq, "pq-bad-row", { resume: false })).toThrow(`${pq} row 3: missing "contents" (or "text") string`);
    writeFileSync(pq, "not parquet at all");
    expect(() => build(pq, "pq-bad-file", { resume: false })).toThrow(new RegExp(`^${pq}: not a readable parquet file`));
  });
});

test("an index from a gzip corpus opens in worker-less search and refuses a damaged rows file", () => {
  const dir = join(tmp, "gz");
  expect(Bm25Index.open(dir).search("storm", 1).docs.length).toBeLessThanOrEqual(1);
  const rowsPath = join(dir, "rows.jsonl");
  writeFileSync(rowsPath, readFileSync(rowsPath, "utf8").replace(/a/, "b"));
  expect(() => openBm25RetrieverSync(dir)).toThrow(`index '${dir}' is damaged: rows.jsonl differs from the manifest`);
});
