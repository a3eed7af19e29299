/** Identifies a corpus file cheaply (size + hash of its first and last MiB) so an index can tell if it changed. */
import { closeSync, fstatSync, readSync } from "node:fs";
import { resolve } from "node:path";
import { openForReading } from "../util/fs.ts";
import type { CorpusIdentity } from "./index_format.ts";

const SAMPLE = 1 << 20;

export function corpusIdentity(path: string): CorpusIdentity {
  const fd = openForReading(path);
  try {
    const bytes = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(SAMPLE, bytes));
    readSync(fd, head, 0, head.length, 0);
    const tailLen = Math.min(SAMPLE, bytes);
    const tail = Buffer.alloc(tailLen);
    readSync(fd, tail, 0, tailLen, bytes - tailLen);
    const fingerprint = `${Bun.hash(head).toString(16)}-${Bun.hash(tail).toString(16)}`;
    return { path: resolve(path), bytes, fingerprint };
  } finally {
    closeSync(fd);
  }
}

export function sameCorpus(a: CorpusIdentity, b: CorpusIdentity): boolean {
  return a.bytes === b.bytes && a.fingerprint === b.fingerprint;
}
