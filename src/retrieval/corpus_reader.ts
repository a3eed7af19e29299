/**
 * Streams a JSONL corpus row by row without holding it in memory, reporting each row's byte range so
 * the index can fetch the row again later by offset. Blank lines are skipped (they are not documents).
 */
import { closeSync, fstatSync, readSync } from "node:fs";
import { openForReading } from "../util/fs.ts";
import { RecallError } from "../errors.ts";
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

/**
 * Yields rows from `path` starting at `from` (a position a previous read stopped at, for resuming);
 * a row's `end` doubles as the number of bytes read so far, for progress.
 */
export function* readCorpusRows(path: string, from: CorpusReadPosition = { byteOffset: 0, line: 0 }, chunkBytes = 8 << 20): Generator<CorpusRow> {
  if (/\.(gz|bz2|xz|zst|parquet)$/i.test(path)) {
    throw new RecallError(`corpus '${path}' is compressed or not JSONL; recall indexes plain JSONL (decompress it first)`);
  }
  let fd: number;
  fd = openForReading(path);
  try {
    const size = fstatSync(fd).size;
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
        const n = readSync(fd, buf, have, buf.length - have, filePos + have);
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
          const where = `${path} line ${line}`;
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
      if (filePos >= size && eof) break;
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
