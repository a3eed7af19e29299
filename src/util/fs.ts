/**
 * Filesystem access for user-named paths, in one place: a failed read or write becomes a one-line
 * RecallError that names the path (not a stack trace), and every whole-file write goes to a temp
 * name and is renamed, so a failure (a full disk, a kill) leaves the previous file or none — never
 * half of one.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { RecallError } from "../errors.ts";

/** What a system error code means to a user, in words. */
const REASONS: Record<string, string> = {
  ENOENT: "no such file or folder",
  EISDIR: "it is a folder, not a file",
  ENOTDIR: "a part of the path is a file, not a folder",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "the file system is read-only",
  EEXIST: "it already exists",
  ENOTEMPTY: "the folder is not empty",
  ENAMETOOLONG: "the name is too long",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  EIO: "input/output error from the device",
  ELOOP: "too many symbolic links",
  EFBIG: "the file is too large",
};

/** What the failed system call was doing, as a verb for "cannot … PATH". */
const VERBS: Record<string, string> = {
  open: "open",
  read: "read",
  write: "write",
  mkdir: "create the folder",
  rename: "rename",
  scandir: "list",
  unlink: "remove",
  rmdir: "remove",
  rm: "remove",
  copyfile: "copy to",
  stat: "read",
  lstat: "read",
  fstat: "read",
  ftruncate: "write",
  fsync: "write",
};

const HINTS: Record<string, string> = {
  ENOSPC: "free some space and run again; files being written were not kept half-written",
  EDQUOT: "free some space and run again; files being written were not kept half-written",
  EACCES: "check the permissions of the path (or choose another one)",
  EISDIR: "give the path of a file inside that folder",
  ENOTDIR: "a file stands where a folder is expected: move it or choose another path",
};

interface SystemError {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
}

/** Whether `e` is an operating-system error with a code we can explain (ENOENT, EISDIR, ENOSPC …). */
export function isSystemError(e: unknown): e is Error & SystemError {
  const code = e instanceof Error ? (e as Partial<SystemError>).code : undefined;
  return typeof code === "string" && code in REASONS;
}

/**
 * `e` as a one-line RecallError naming `path` (or the error's own path) when it is a known system
 * error; any other error is returned unchanged, to be reported as the bug it is.
 */
export function fileError(e: unknown, path?: string, verb?: string): unknown {
  if (e instanceof RecallError || !isSystemError(e)) return e;
  const where = path ?? e.path;
  const doing = verb ?? (e.syscall ? VERBS[e.syscall] : undefined) ?? "use";
  const what = where === undefined ? "a file" : where;
  // mkdir -p reports a file standing where a folder should be as EEXIST.
  const reason = e.code === "EEXIST" && e.syscall === "mkdir" ? "a file is there, not a folder" : REASONS[e.code];
  return new RecallError(`cannot ${doing} ${what}: ${reason} (${e.code})`, { hint: HINTS[e.code], cause: e });
}

/**
 * A file descriptor open for reading. A folder is refused here, at open, naming the path (Linux lets a
 * folder be opened and fails only at the first read, where the error no longer says which path).
 */
export function openForReading(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw fileError(e, path, "open");
  }
  let isDir = false;
  try {
    isDir = fstatSync(fd).isDirectory();
  } catch (e) {
    closeSync(fd);
    throw fileError(e, path, "read");
  }
  if (isDir) {
    closeSync(fd);
    throw fileError(Object.assign(new Error("EISDIR"), { code: "EISDIR", path }), path, "read");
  }
  return fd;
}

/** A file's bytes; errors name the path. */
export function readBytes(path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw fileError(e, path, "read");
  }
}

/**
 * A UTF-8 text file's contents. Bytes that are not UTF-8 are refused with the line they are on
 * (a silent U+FFFD would change data — a gold answer, a document — without anyone noticing).
 */
export function readText(path: string): string {
  return decodeUtf8(readBytes(path), path);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `bytes` as UTF-8 text (a leading BOM dropped); refuses invalid bytes, naming `path`:line. */
export function decodeUtf8(bytes: Uint8Array, path: string, firstLine = 1): string {
  try {
    return utf8.decode(bytes);
  } catch {
    const { line, offset } = firstInvalidUtf8(bytes);
    throw new RecallError(`${path}:${line + firstLine - 1}: invalid UTF-8 (byte 0x${bytes[offset]!.toString(16).padStart(2, "0")} at offset ${offset})`, {
      hint: "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
    });
  }
}

/** The 1-based line and byte offset of the first byte sequence that is not UTF-8. */
function firstInvalidUtf8(b: Uint8Array): { line: number; offset: number } {
  let line = 1;
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    if (c === 0x0a) line++;
    const n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n === 0 || i + n > b.length) return { line, offset: i };
    for (let k = 1; k < n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return { line, offset: i };
    // Overlongs, surrogates and code points past U+10FFFF (the second byte's allowed range narrows).
    const c1 = b[i + 1]!;
    if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 > 0x9f) || (c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 > 0x8f)) return { line, offset: i };
    i += n;
  }
  return { line, offset: Math.max(0, b.length - 1) };
}

/** A JSON file's value; a file that is not JSON is refused in one line naming it. */
export function readJson(path: string): unknown {
  const text = readText(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new RecallError(`${path} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The temp name a file is written under before it is renamed into place. */
export function tempPathFor(path: string): string {
  return `${path}.${process.pid}.tmp`;
}

/** Removes a file or folder if it is there, for clean-up after a failure: its own errors would hide the failure's. */
export function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // (Bun reports EFAULT for a path under a file; there is nothing there to remove)
  }
}

/** Runs `write(tmp)`, then renames tmp to `path`; on failure removes tmp and names `path`. */
function replaceAtomically(path: string, write: (tmp: string) => void): void {
  const tmp = tempPathFor(path);
  try {
    write(tmp);
    renameSync(tmp, path);
  } catch (e) {
    removeQuietly(tmp);
    throw fileError(e, path, "write");
  }
}

/** Writes a whole file: to a temp name beside it, then renamed over `path`. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  replaceAtomically(path, (tmp) => writeFileSync(tmp, data));
}

/** Copies a file the same way: a temp name beside `to`, then renamed. A source that cannot be read is named as such. */
export function copyFileAtomic(from: string, to: string): void {
  const bytes = readBytes(from);
  writeFileAtomic(to, bytes);
}

/**
 * Appends `text` (whole lines) to `path`, all of it or none: a write cut short (a full disk) is
 * truncated back, so a reader never sees a torn last line.
 */
export function appendWhole(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, "a");
  } catch (e) {
    throw fileError(e, path, "write");
  }
  const bytes = new TextEncoder().encode(text);
  let size = 0;
  try {
    size = fstatSync(fd).size;
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
  } catch (e) {
    try {
      ftruncateSync(fd, size);
    } catch {
      // the original error is the one to report
    }
    throw fileError(e, path, "write");
  } finally {
    closeSync(fd);
  }
}
