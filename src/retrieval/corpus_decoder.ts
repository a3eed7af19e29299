/**
 * Corpora that cannot be read by byte offset — gzipped JSONL (FlashRAG's wiki dump is distributed as `.jsonl.gz`) and
 * parquet — are decoded on a worker thread into plain JSONL inside the index (ROWS_FILE), which the index then serves
 * documents from. The builder reads that file as it grows, with the same row reader as a plain corpus, waiting when it
 * catches up with the decoder.
 */
import { RecallError } from "../errors.ts";
import { DecoderState, DecoderStatus } from "./corpus_decoder_state.ts";

export type CorpusFormat = "jsonl" | "jsonl.gz" | "parquet";

export interface DecodeRequest {
  sourcePath: string;
  format: Exclude<CorpusFormat, "jsonl">;
  /** The rows file, already created (and cut to `skipBytes` when resuming). */
  rowsPath: string;
  skipBytes: number;
  sab: SharedArrayBuffer;
}

/** The corpus format by file name: `.gz` is gzipped JSONL, `.parquet` parquet, anything else plain JSONL. */
export function corpusFormat(path: string): CorpusFormat {
  if (/\.gz$/i.test(path)) return "jsonl.gz";
  if (/\.parquet$/i.test(path)) return "parquet";
  if (/\.(bz2|xz|zst|zip|7z|tar)$/i.test(path)) {
    throw new RecallError(`corpus '${path}': recall reads plain JSONL, gzipped JSONL (.jsonl.gz) and parquet; decompress this one first`);
  }
  return "jsonl";
}

// From source the worker sits beside this file. In the single binary, scripts/build.ts embeds it as an extra
// entry point, addressed by its path from the project root.
const WORKER_URL = import.meta.url.includes("$bunfs") ? "./src/retrieval/corpus_decoder_worker.ts" : new URL("./corpus_decoder_worker.ts", import.meta.url).href;

export class CorpusDecoder {
  private readonly state = new DecoderState();
  private readonly worker: Worker;

  private constructor(readonly sourcePath: string, format: DecodeRequest["format"], rowsPath: string, skipBytes: number) {
    this.worker = new Worker(WORKER_URL);
    const req: DecodeRequest = { sourcePath, format, rowsPath, skipBytes, sab: this.state.sab };
    this.worker.postMessage(req);
  }

  /** Starts decoding `sourcePath` into `rowsPath` (which must exist, holding the first `skipBytes` bytes already). */
  static start(sourcePath: string, format: DecodeRequest["format"], rowsPath: string, skipBytes: number): CorpusDecoder {
    return new CorpusDecoder(sourcePath, format, rowsPath, skipBytes);
  }

  /**
   * Blocks until the rows file holds more than `bytes` bytes (true) or the decoder has finished short of that (false).
   * A decoding error (bad gzip data, an unreadable parquet file) is thrown here, as a RecallError naming the file.
   */
  waitBeyond(bytes: number): boolean {
    for (;;) {
      const seq = this.state.seq;
      if (this.state.written > bytes) return true;
      const status = this.state.status;
      if (status === DecoderStatus.Failed) throw new RecallError(this.state.message);
      if (status === DecoderStatus.Done) return this.state.written > bytes;
      this.state.waitAfter(seq, 1000);
    }
  }

  /** Bytes of the rows file written so far. */
  get written(): number {
    return this.state.written;
  }

  /** How much of the source has been decoded, 0..1 (compressed bytes for gzip, rows for parquet). */
  get sourceFraction(): number {
    return this.state.status === DecoderStatus.Done ? 1 : this.state.sourceFraction;
  }

  close(): void {
    this.worker.terminate();
  }
}
