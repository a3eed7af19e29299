/**
 * Worker-thread side of CorpusDecoder: turns a gzipped JSONL or parquet corpus into plain JSONL rows in the index
 * (ROWS_FILE), appending as it goes and publishing progress in shared memory. On resume it produces the same bytes
 * again and writes only those past `skipBytes` (what the interrupted build already has).
 */
import { closeSync, createReadStream, openSync, statSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { brotliDecompressSync, createGunzip, gunzipSync, zstdDecompressSync } from "node:zlib";
import { parquetMetadataAsync, parquetReadObjects, parquetSchema, type AsyncBuffer, type Compressors } from "hyparquet";
import { errorMessage } from "../errors.ts";
import { jsonSafe } from "../data/rows.ts";
import { DecoderState } from "./corpus_decoder_state.ts";
import type { DecodeRequest } from "./corpus_decoder.ts";

declare const self: Worker;

self.onmessage = async (ev: MessageEvent<DecodeRequest>) => {
  const req = ev.data;
  const state = new DecoderState(req.sab);
  let fd: number | undefined;
  try {
    fd = openSync(req.rowsPath, "r+");
    const out = fd;
    let produced = 0;
    let sourceDone = 0, sourceTotal = 0;
    const emit = (chunk: Uint8Array) => {
      const end = produced + chunk.length;
      if (end > req.skipBytes) {
        const from = Math.max(0, req.skipBytes - produced);
        let off = from;
        while (off < chunk.length) off += writeSync(out, chunk, off, chunk.length - off, produced + off);
      }
      produced = end;
      state.publish(Math.max(produced, req.skipBytes), sourceDone, sourceTotal);
    };
    if (req.format === "jsonl.gz") {
      const src = createReadStream(req.sourcePath);
      sourceTotal = statSync(req.sourcePath).size;
      await pipeline(src, createGunzip(), async (chunks: AsyncIterable<Buffer>) => {
        for await (const chunk of chunks) {
          sourceDone = src.bytesRead;
          emit(chunk);
        }
      }).catch((e: unknown) => {
        throw new Error(`${req.sourcePath}: not readable as gzip (${errorMessage(e)}) after ${src.bytesRead} compressed bytes`);
      });
    } else {
      await parquetRows(req.sourcePath, (done, total, bytes) => {
        sourceDone = done;
        sourceTotal = total;
        emit(bytes);
      });
    }
    state.finish();
  } catch (e) {
    state.fail(errorMessage(e));
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
};

/** Parquet codecs beyond hyparquet's built-in snappy, from node:zlib. */
const COMPRESSORS: Compressors = {
  GZIP: (input) => new Uint8Array(gunzipSync(input)),
  BROTLI: (input) => new Uint8Array(brotliDecompressSync(input)),
  ZSTD: (input) => new Uint8Array(zstdDecompressSync(input)),
};

/** Reads a parquet corpus one row group at a time, handing each group's rows on as JSONL bytes. */
async function parquetRows(path: string, onGroup: (rowsDone: number, rowsTotal: number, jsonl: Uint8Array) => void): Promise<void> {
  const handle = await open(path, "r");
  try {
    const size = (await handle.stat()).size;
    const file: AsyncBuffer = {
      byteLength: size,
      async slice(start: number, end = size) {
        const buf = new Uint8Array(end - start);
        let got = 0;
        while (got < buf.length) {
          const { bytesRead } = await handle.read(buf, got, buf.length - got, start + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return buf.buffer;
      },
    };
    let metadata;
    try {
      metadata = await parquetMetadataAsync(file);
    } catch (e) {
      throw new Error(`${path}: not a readable parquet file (${errorMessage(e)})`);
    }
    const columns = parquetSchema(metadata).children.map((c) => c.element.name);
    if (!columns.includes("id") || !(columns.includes("contents") || columns.includes("text"))) {
      throw new Error(`${path}: a corpus needs an "id" column and a "contents" (or "title"/"text") column; its columns are ${columns.join(", ")}`);
    }
    const total = Number(metadata.num_rows);
    const enc = new TextEncoder();
    let rowStart = 0;
    for (const group of metadata.row_groups) {
      const rowEnd = rowStart + Number(group.num_rows);
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file, metadata, rowStart, rowEnd, compressors: COMPRESSORS });
      } catch (e) {
        throw new Error(`${path}: rows ${rowStart + 1}..${rowEnd} are not readable (${errorMessage(e)})`);
      }
      let text = "";
      for (const row of rows) text += JSON.stringify(jsonSafe(row)) + "\n";
      rowStart = rowEnd;
      onGroup(rowStart, total, enc.encode(text));
    }
  } finally {
    await handle.close();
  }
}
