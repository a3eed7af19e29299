/**
 * A sorted run: the inverted postings of one block of documents, flushed to disk when the builder's
 * memory budget fills (single-pass in-memory inversion, SPIMI). Terms ascend (JS string order); each
 * term's document numbers ascend. Runs are merged into the final index and then deleted.
 *
 * Layout: u32 term count, then per term: u32 UTF-8 length, the bytes, u32 n, n × u32 docs, n × u16 tf.
 */
import { BinaryReader, BinaryWriter } from "./binary_io.ts";

export interface BlockPostings {
  /** Term strings in ascending order. */
  terms: string[];
  /** For term i, its postings are [starts[i], starts[i + 1]) in docs/tfs. */
  starts: Uint32Array;
  docs: Uint32Array;
  tfs: Uint16Array;
}

export function writeRun(path: string, block: BlockPostings): number {
  const w = new BinaryWriter(path);
  w.u32(block.terms.length);
  const enc = new TextEncoder();
  for (let i = 0; i < block.terms.length; i++) {
    const bytes = enc.encode(block.terms[i]!);
    w.u32(bytes.length);
    w.bytesOf(bytes);
    const s = block.starts[i]!, e = block.starts[i + 1]!;
    w.u32(e - s);
    w.bytesOf(block.docs.subarray(s, e));
    w.bytesOf(block.tfs.subarray(s, e));
  }
  w.close();
  return w.bytes;
}

/** Reads a run term by term; `term` is the current head, undefined once exhausted. */
export class RunReader {
  private readonly r: BinaryReader;
  private left: number;
  term: string | undefined;
  count = 0;

  constructor(readonly path: string) {
    this.r = new BinaryReader(path);
    this.left = this.r.u32();
    this.advanceHead();
  }

  private advanceHead(): void {
    if (this.left === 0) {
      this.term = undefined;
      return;
    }
    this.left--;
    const len = this.r.u32();
    this.term = this.r.utf8(len);
    this.count = this.r.u32();
  }

  /** Copies the head term's postings into docs/tfs at `at`, then moves to the next term. */
  take(docs: Uint32Array, tfs: Uint16Array, at: number): void {
    this.r.read(docs.subarray(at, at + this.count));
    this.r.read(tfs.subarray(at, at + this.count));
    this.advanceHead();
  }

  close(): void {
    this.r.close();
  }
}
