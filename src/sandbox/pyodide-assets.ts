/**
 * Pyodide's runtime files, embedded in the single binary. Imported `with { type: "file" }`, they are
 * paths: into node_modules when running from source, into the executable's embedded file system
 * (`/$bunfs/...`, names carrying a content hash) in a compiled binary. Pyodide loads its files by
 * fixed names from one directory, so a compiled binary copies them once into a cache directory
 * (`$XDG_CACHE_HOME/recall` or `~/.cache/recall`, else the temp dir), written to a temp name and
 * renamed.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import stdlibPath from "pyodide/python_stdlib.zip" with { type: "file" };
import wasmPath from "pyodide/pyodide.asm.wasm" with { type: "file" };
import lockPathImport from "pyodide/pyodide-lock.json" with { type: "file" };
import pyodidePackage from "pyodide/package.json" with { type: "json" };
import { RecallError } from "../errors.ts";

const lockPath = lockPathImport as unknown as string;
export const PYODIDE_VERSION: string = pyodidePackage.version;

const FILES: [string, string][] = [
  [wasmPath, "pyodide.asm.wasm"],
  [stdlibPath, "python_stdlib.zip"],
  [lockPath, "pyodide-lock.json"],
];

/** Where recall keeps files it unpacks or derives: `$XDG_CACHE_HOME/recall`, else `~/.cache/recall`. */
export function cacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg) return join(xdg, "recall");
  try {
    return join(homedir(), ".cache", "recall");
  } catch {
    return join(tmpdir(), "recall-cache");
  }
}

function usable(dir: string): boolean {
  return FILES.every(([src, name]) => existsSync(join(dir, name)) && statSync(join(dir, name)).size === statSync(src).size);
}

let cached: string | undefined;

/** The first cache directory that exists or can be made and is writable: the user cache, else the temp dir. */
export function writableCacheDir(): string | undefined {
  for (const root of [cacheRoot(), join(tmpdir(), "recall-cache")]) {
    try {
      mkdirSync(root, { recursive: true });
      accessSync(root, constants.W_OK);
      return root;
    } catch {
      // try the next
    }
  }
  return undefined;
}

/** A name that changes whenever the embedded runtime does. */
export function runtimeTag(): string {
  return `${PYODIDE_VERSION}-${statSync(wasmPath).size.toString(36)}-${statSync(stdlibPath).size.toString(36)}`;
}

/** The directory holding pyodide.asm.wasm, python_stdlib.zip and pyodide-lock.json under their own names. */
export function pyodideAssetsDir(): string {
  if (cached) return cached;
  const here = dirname(wasmPath);
  if (basename(wasmPath) === "pyodide.asm.wasm" && usable(here)) return (cached = here);
  for (const root of [cacheRoot(), join(tmpdir(), "recall-cache")]) {
    const dir = join(root, `pyodide-${runtimeTag()}`);
    try {
      if (usable(dir)) return (cached = dir);
      mkdirSync(root, { recursive: true });
      const tmp = `${dir}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      // readFileSync, not copyFileSync: the sources may live in the executable's embedded file system.
      for (const [src, name] of FILES) writeFileSync(join(tmp, name), readFileSync(src));
      writeFileSync(join(tmp, "README"), "Pyodide runtime files unpacked from the recall binary; safe to delete.\n");
      try {
        renameSync(tmp, dir);
      } catch {
        rmSync(tmp, { recursive: true, force: true }); // another process won the race
      }
      if (usable(dir)) return (cached = dir);
    } catch {
      rmSync(`${dir}.tmp-${process.pid}`, { recursive: true, force: true });
    }
  }
  throw new RecallError(`cannot unpack the Pyodide runtime into ${cacheRoot()} or ${tmpdir()}`, {
    hint: "set XDG_CACHE_HOME to a writable directory",
  });
}
