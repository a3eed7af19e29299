/**
 * The term dictionary: sorted terms on disk (terms.bin + terms.off) with their postings location
 * (terms.meta), looked up by binary search over the memory-mapped files — no vocabulary is loaded
 * into the JS heap, so opening a 20M-term index is instant.
 */
import { join } from "node:path";
import { asU32, BinaryWriter, mapFile } from "./binary_io.ts";

export interface TermEntry {
  segment: number;
  start: number;
  df: number;
}

export class TermDictionaryWriter {
  private readonly bin: BinaryWriter;
  private readonly off: BinaryWriter;
  private readonly meta: BinaryWriter;
  private readonly enc = new TextEncoder();
  private last: string | undefined;
  count = 0;

  constructor(dir: string) {
    this.bin = new BinaryWriter(join(dir, "terms.bin"));
    this.off = new BinaryWriter(join(dir, "terms.off"));
    this.meta = new BinaryWriter(join(dir, "terms.meta"));
    this.off.u32(0);
  }

  add(term: string, e: TermEntry): void {
    if (this.last !== undefined && !(this.last < term)) throw new Error(`terms out of order: '${this.last}' then '${term}'`);
    this.last = term;
    this.bin.bytesOf(this.enc.encode(term));
    if (this.bin.bytes > 0xffffffff) throw new Error("term dictionary exceeds 4 GiB");
    this.off.u32(this.bin.bytes);
    this.meta.u32(e.segment);
    this.meta.u32(e.start);
    this.meta.u32(e.df);
    this.count++;
  }

  close(): void {
    this.bin.close();
    this.off.close();
    this.meta.close();
  }
}

export class TermDictionary {
  private readonly bin: Uint8Array;
  private readonly off: Uint32Array;
  /** (segment, start, df) per term. */
  readonly meta: Uint32Array;
  private readonly dec = new TextDecoder();
  readonly size: number;

  constructor(dir: string) {
    this.bin = mapFile(join(dir, "terms.bin"));
    this.off = asU32(mapFile(join(dir, "terms.off")));
    this.meta = asU32(mapFile(join(dir, "terms.meta")));
    this.size = this.off.length - 1;
  }

  termAt(i: number): string {
    return this.dec.decode(this.bin.subarray(this.off[i]!, this.off[i + 1]!));
  }

  entryAt(i: number): TermEntry {
    return { segment: this.meta[3 * i]!, start: this.meta[3 * i + 1]!, df: this.meta[3 * i + 2]! };
  }

  /** The term's index, or -1. */
  find(term: string): number {
    let lo = 0, hi = this.size - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.termAt(mid);
      if (t === term) return mid;
      if (t < term) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  lookup(term: string): TermEntry | undefined {
    const i = this.find(term);
    return i < 0 ? undefined : this.entryAt(i);
  }
}
