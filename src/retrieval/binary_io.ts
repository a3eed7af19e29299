/**
 * Buffered sequential binary files: the index builder writes runs, postings and tables through
 * `BinaryWriter` and reads runs back through `BinaryReader`, in little-endian, never holding a whole
 * file in memory.
 */
import { closeSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { openForReading } from "../util/fs.ts";

export class BinaryWriter {
  private readonly fd: number;
  private buf: Buffer;
  private used = 0;
  /** Bytes written so far (including buffered ones). */
  bytes = 0;

  constructor(readonly path: string, opts: { append?: boolean; bufferBytes?: number } = {}) {
    this.fd = openSync(path, opts.append ? "a" : "w");
    this.buf = Buffer.allocUnsafe(opts.bufferBytes ?? 1 << 22);
  }

  private room(n: number): void {
    if (this.used + n > this.buf.length) this.flush();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
  }

  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.used);
    this.used += 4;
    this.bytes += 4;
  }

  f32(v: number): void {
    this.room(4);
    this.buf.writeFloatLE(v, this.used);
    this.used += 4;
    this.bytes += 4;
  }

  f64(v: number): void {
    this.room(8);
    this.buf.writeDoubleLE(v, this.used);
    this.used += 8;
    this.bytes += 8;
  }

  /** Raw bytes of any typed array (little-endian hosts: the typed arrays' own layout). */
  bytesOf(view: ArrayBufferView): void {
    const src = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    if (src.length > this.buf.length - this.used) this.flush();
    if (src.length >= this.buf.length) {
      let off = 0;
      while (off < src.length) off += writeSync(this.fd, src, off, src.length - off);
    } else {
      this.buf.set(src, this.used);
      this.used += src.length;
    }
    this.bytes += src.length;
  }

  flush(): void {
    let off = 0;
    while (off < this.used) off += writeSync(this.fd, this.buf, off, this.used - off);
    this.used = 0;
  }

  /** Flushes and fsyncs, so a later crash cannot lose what was written before this call. */
  sync(): void {
    this.flush();
    fsyncSync(this.fd);
  }

  close(): void {
    this.sync();
    closeSync(this.fd);
  }
}

export class BinaryReader {
  private readonly fd: number;
  private buf: Buffer;
  private pos = 0;
  private end = 0;
  private filePos = 0;

  constructor(readonly path: string, bufferBytes = 1 << 22) {
    this.fd = openForReading(path);
    this.buf = Buffer.allocUnsafe(bufferBytes);
  }

  /** Makes at least n bytes available; false at end of file. */
  private fill(n: number): boolean {
    if (this.end - this.pos >= n) return true;
    const left = this.end - this.pos;
    if (n > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
      this.buf.copy(bigger, 0, this.pos, this.end);
      this.buf = bigger;
    } else {
      this.buf.copy(this.buf, 0, this.pos, this.end);
    }
    this.pos = 0;
    this.end = left;
    while (this.end < n) {
      const got = readSync(this.fd, this.buf, this.end, this.buf.length - this.end, this.filePos);
      if (got === 0) return false;
      this.filePos += got;
      this.end += got;
    }
    return true;
  }

  atEnd(): boolean {
    return !this.fill(1);
  }

  u32(): number {
    if (!this.fill(4)) throw new Error(`unexpected end of ${this.path}`);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** Copies the next `into.byteLength` bytes into `into`. */
  read(into: ArrayBufferView): void {
    const dst = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
    let off = 0;
    while (off < dst.length) {
      if (!this.fill(1)) throw new Error(`unexpected end of ${this.path}`);
      const n = Math.min(dst.length - off, this.end - this.pos);
      dst.set(this.buf.subarray(this.pos, this.pos + n), off);
      this.pos += n;
      off += n;
    }
  }

  utf8(byteLength: number): string {
    if (!this.fill(byteLength)) throw new Error(`unexpected end of ${this.path}`);
    const s = this.buf.toString("utf8", this.pos, this.pos + byteLength);
    this.pos += byteLength;
    return s;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Memory-maps a file (private mapping, never written through); the OS pages it in lazily and shares it between processes. */
export function mapFile(path: string): Uint8Array {
  const size = Bun.file(path).size;
  if (size === 0) return new Uint8Array(0);
  try {
    return Bun.mmap(path, { shared: false });
  } catch {
    return new Uint8Array(readFileSync(path)); // platforms without mmap support: read it whole
  }
}

export function asU32(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
}
export function asF32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
}
export function asF64(bytes: Uint8Array): Float64Array {
  return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 3);
}
