/**
 * Fetches documents by number from the corpus JSONL itself, using the row offsets stored with the
 * index — the corpus is never loaded into memory. Opening checks that the corpus is the file the index
 * was built from (size and a hash of its first and last MiB). An index built from a gzip or parquet corpus
 * keeps the rows itself (manifest `rowsFile`) and reads them from there; the corpus is then not needed.
 */
import { closeSync, existsSync, readSync } from "node:fs";
import { openForReading } from "../util/fs.ts";
import { join } from "node:path";
import { RecallError } from "../errors.ts";
import { asF64, asU32, mapFile } from "./binary_io.ts";
import { corpusIdentity, sameCorpus } from "./corpus_identity.ts";
import { parseCorpusLine } from "./corpus_row.ts";
import type { IndexManifest } from "./index_format.ts";
import type { Doc } from "./types.ts";

export class DocStore {
  private readonly fd: number;
  private readonly starts: Float64Array;
  private readonly lens: Uint32Array;
  private buf = Buffer.allocUnsafe(1 << 16);

  readonly corpusPath: string;

  constructor(indexDir: string, manifest: IndexManifest, corpusPath?: string) {
    const rows = manifest.rowsFile;
    this.corpusPath = rows ? join(indexDir, rows.name) : (corpusPath ?? manifest.corpus.path);
    if (rows) {
      if (!sameCorpus({ path: "", ...rows }, corpusIdentity(this.corpusPath))) {
        throw new RecallError(`index '${indexDir}' is damaged: ${rows.name} differs from the manifest`, {
          hint: `rebuild it: recall retriever index --corpus_path ${manifest.corpus.path} --index_path ${indexDir} --overwrite`,
        });
      }
      if (corpusPath !== undefined) checkSameCorpus(indexDir, manifest, corpusPath);
    } else {
      checkSameCorpus(indexDir, manifest, this.corpusPath);
    }
    this.starts = asF64(mapFile(join(indexDir, "docs.start")));
    this.lens = asU32(mapFile(join(indexDir, "docs.len")));
    this.fd = openForReading(this.corpusPath);
  }

  get size(): number {
    return this.lens.length;
  }

  get(docNo: number): Doc {
    const len = this.lens[docNo]!;
    if (this.buf.length < len) this.buf = Buffer.allocUnsafe(len);
    const got = readSync(this.fd, this.buf, 0, len, this.starts[docNo]!);
    return parseCorpusLine(this.buf.toString("utf8", 0, got), `${this.corpusPath} document ${docNo}`);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Refuses a corpus that is not the file the index was built from. */
function checkSameCorpus(indexDir: string, manifest: IndexManifest, corpusPath: string): void {
  if (!existsSync(corpusPath)) {
    throw new RecallError(`corpus '${corpusPath}' not found`, { hint: "pass --corpus_path (the JSONL the index was built from)" });
  }
  const id = corpusIdentity(corpusPath);
  if (!sameCorpus(id, manifest.corpus)) {
    throw new RecallError(
      `corpus '${corpusPath}' is not the file the index in '${indexDir}' was built from (${manifest.corpus.path}, ${manifest.corpus.bytes} bytes; this one has ${id.bytes})`,
      { hint: "rebuild the index from this corpus, or pass the original --corpus_path" },
    );
  }
}
