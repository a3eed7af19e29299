/**
 * Sizes and hashes of an index's data files: recorded in the manifest when a build finishes, checked when the index
 * is opened, so a damaged index (a file cut short by a full disk or a partial copy) is refused with what to do
 * instead of answering `{"docs": []}` or `null` scores.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { RecallError } from "../errors.ts";
import { mapFile } from "./binary_io.ts";
import { indexDataFiles, type FileDigest, type IndexManifest } from "./index_format.ts";

function digest(path: string): FileDigest {
  const bytes = mapFile(path);
  return { bytes: bytes.byteLength, hash: Bun.hash(bytes).toString(16) };
}

/** The digests of an index's data files, for its manifest. */
export function indexFileDigests(dir: string, m: Pick<IndexManifest, "segments" | "scoreBounds">): Record<string, FileDigest> {
  return Object.fromEntries(indexDataFiles(m).map((f) => [f, digest(join(dir, f))]));
}

/** Throws a RecallError naming the first data file that is missing or differs from the manifest. */
export function verifyIndexFiles(dir: string, m: IndexManifest): void {
  if (!m.files) return; // built before files were recorded: nothing to check against
  const rebuild = { hint: `rebuild it: recall retriever index --corpus_path ${m.corpus.path} --index_path ${dir}` };
  const names = indexDataFiles(m);
  // Sizes first (cheap), then the hashes.
  for (const f of names) {
    const want = m.files[f];
    const path = join(dir, f);
    if (!want) throw new RecallError(`index '${dir}' is damaged: its manifest does not list ${f}`, rebuild);
    if (!existsSync(path)) throw new RecallError(`index '${dir}' is damaged: ${f} is missing`, rebuild);
    const bytes = statSync(path).size;
    if (bytes !== want.bytes) throw new RecallError(`index '${dir}' is damaged: ${f} is ${bytes} bytes, the manifest says ${want.bytes}`, rebuild);
  }
  for (const f of names) {
    if (digest(join(dir, f)).hash !== m.files[f]!.hash) throw new RecallError(`index '${dir}' is damaged: ${f} does not match the hash in its manifest`, rebuild);
  }
}
