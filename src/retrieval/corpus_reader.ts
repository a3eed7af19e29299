/**
 * Streams a JSONL corpus row by row without holding it in memory, reporting each row's byte range so
 * the index can fetch the row again later by offset. Blank lines are skipped (they are not documents).
 * The file may still be growing (a gzip or parquet corpus being decoded into it by a CorpusDecoder): then
 * reaching its end waits for the decoder instead of ending.
 */
import { closeSync, readSync } from "node:fs";
import { openForReading } from "../util/fs.ts";
import { RecallError } from "../errors.ts";
import type { CorpusDecoder } from "./corpus_decoder.ts";
import { parseCorpusLine } from "./corpus_row.ts";
import type { Doc } from "./types.ts";

export interface CorpusRow {
  doc: Doc;
  /** 1-based line number in the file. */
  line: number;
  /** Byte offset of the row's first byte, and one past its last byte (newline excluded). */
  start: number;
  end: number;
}

export interface CorpusReadPosition {
  byteOffset: number;
  line: number;
}

export interface CorpusReadOptions {
  /** The file named in errors (default: the path read), and what its rows are called there. */
  label?: string;
  unit?: "line" | "row";
  /** Set when the file is being written by a decoder: its end is final only once the decoder says so. */
  decoder?: CorpusDecoder;
  chunkBytes?: number;
}

/**
 * Yields rows from `path` starting at `from` (a position a previous read stopped at, for resuming);
 * a row's `end` doubles as the number of bytes read so far, for progress.
 */
export function* readCorpusRows(path: string, from: CorpusReadPosition = { byteOffset: 0, line: 0 }, opts: CorpusReadOptions = {}): Generator<CorpusRow> {
  const { label = path, unit = "line", decoder, chunkBytes = 8 << 20 } = opts;
  if (!decoder && /\.(gz|bz2|xz|zst|parquet)$/i.test(path)) {
    throw new RecallError(`corpus '${path}' is compressed or not JSONL; this reader takes plain JSONL`);
  }
  const fd = openForReading(path);
  try {
    let buf = Buffer.allocUnsafe(chunkBytes);
    let filePos = from.byteOffset; // file offset of buf[0]
    let have = 0; // valid bytes in buf
    let line = from.line;
    let eof = false;
    while (!eof || have > 0) {
      if (!eof) {
        if (have === buf.length) {
          const bigger = Buffer.allocUnsafe(buf.length * 2); // a row longer than the buffer
          buf.copy(bigger, 0, 0, have);
          buf = bigger;
        }
        // A file being decoded into is read only up to what the decoder has published as written.
        let room = buf.length - have;
        if (decoder) room = decoder.waitBeyond(filePos + have) ? Math.min(room, decoder.written - (filePos + have)) : 0;
        const n = room > 0 ? readSync(fd, buf, have, room, filePos + have) : 0;
        if (n === 0) eof = true;
        have += n;
      }
      let lineStart = 0;
      for (;;) {
        let nl = buf.indexOf(10, lineStart);
        if (nl < 0 || nl >= have) {
          if (!eof) break;
          if (lineStart >= have) break;
          nl = have; // last line without a newline
        }
        line++;
        let end = nl;
        if (end > lineStart && buf[end - 1] === 13) end--; // CRLF
        if (!isBlank(buf, lineStart, end)) {
          const where = `${label} ${unit} ${line}`;
          const doc = parseCorpusLine(buf.toString("utf8", lineStart, end), where);
          yield { doc, line, start: filePos + lineStart, end: filePos + end };
        }
        lineStart = nl + 1;
        if (lineStart > have) break;
      }
      if (lineStart > 0) {
        buf.copy(buf, 0, Math.min(lineStart, have), have);
        const consumed = Math.min(lineStart, have);
        filePos += consumed;
        have -= consumed;
      }
      if (eof && have === 0) break;
    }
  } finally {
    closeSync(fd);
  }
}

function isBlank(buf: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) {
    const c = buf[i]!;
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}
