/**
 * How a sandbox worker process is started. Pyodide workers are recall itself in worker mode (the
 * compiled binary, or the project's Bun running cmd/main.ts from source) with the hidden
 * `sandbox worker` subcommand; `--engine python` workers are the system python3 running the
 * harness. Either may be wrapped in bubblewrap. Workers get an empty environment.
 */
import { existsSync, mkdtempSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { RecallError } from "../errors.ts";
import harnessSource from "./harness.py" with { type: "text" };
import type { OsSandbox } from "./os-sandbox.ts";
import { bwrapArgs } from "./os-sandbox.ts";
import { pyodideAssetsDir } from "./pyodide-assets.ts";

export type Engine = "pyodide" | "python";

export interface WorkerLaunch {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Settings for the harness's init message. */
  home: string;
  scratch: string[];
  /** A host directory made for this worker, removed when it exits. */
  ownDir?: string;
}

/** True inside a `bun build --compile` executable. */
export function isCompiledBinary(): boolean {
  return Bun.main.startsWith("/$bunfs/") || /[\\/]~BUN[\\/]/.test(Bun.main);
}

const PROJECT_ROOT = isCompiledBinary() ? "" : dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** The command that runs recall itself. */
export function selfCommand(): string[] {
  return isCompiledBinary() ? [process.execPath] : [process.execPath, join(PROJECT_ROOT, "cmd", "main.ts")];
}

/** What a from-source worker must be able to read: the Bun binary, sources and packages; no tests, docs or .git. */
function selfReadOnlyPaths(): string[] {
  if (isCompiledBinary()) return [process.execPath];
  return [process.execPath, ...["cmd", "src", "node_modules", "package.json", "tsconfig.json"].map((p) => join(PROJECT_ROOT, p))];
}

export function pyodideLaunch(os: OsSandbox, memoryBytes: number, snapshot?: string): WorkerLaunch {
  const assets = pyodideAssetsDir();
  const cmd = [...selfCommand(), "sandbox", "worker", "--assets", assets, "--memory_mb", String(Math.ceil(memoryBytes / 2 ** 20))];
  if (snapshot) cmd.push("--snapshot", snapshot);
  const home = "/home/sandbox";
  const scratch = ["/home/sandbox", "/tmp"]; // Pyodide's in-memory file system
  if (os.kind === "bwrap" && os.bwrapPath) {
    const readable = [...selfReadOnlyPaths(), assets, ...(snapshot ? [snapshot] : [])];
    return { argv: [...bwrapArgs(os.bwrapPath, readable), ...cmd], env: {}, home, scratch };
  }
  return { argv: cmd, env: {}, home, scratch };
}

export interface PythonInstall {
  executable: string;
  dirs: string[];
  version: string;
}

let pythonCache: PythonInstall | undefined;

/** Finds the system python3 and the directories it needs (following shims such as pyenv's). */
export function findPython(): PythonInstall {
  if (pythonCache) return pythonCache;
  const exe = Bun.which("python3");
  if (!exe) throw new RecallError("--engine python needs python3 on PATH, and none was found", { hint: "use the default engine (pyodide), which needs no Python installation" });
  const probe = Bun.spawnSync([exe, "-I", "-c", "import sys, json; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, sys.version.split()[0], sys.version_info >= (3, 8)]))"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (probe.exitCode !== 0) throw new RecallError(`python3 at ${exe} does not run: ${probe.stderr.toString().trim().split("\n").pop()}`);
  const [executable, prefix, basePrefix, execPrefix, baseExecPrefix, version, recentEnough] = JSON.parse(probe.stdout.toString()) as [string, string, string, string, string, string, boolean];
  if (!recentEnough) throw new RecallError(`--engine python needs Python >= 3.8 (audit hooks); ${exe} is ${version}`);
  const dirs = [...new Set([prefix, basePrefix, execPrefix, baseExecPrefix].filter((d) => d && existsSync(d)).map((d) => realpathSync(d)))];
  return (pythonCache = { executable: realpathSync(executable), dirs, version });
}

export function pythonLaunch(os: OsSandbox, unsafeNoIsolation: boolean): WorkerLaunch {
  const py = findPython();
  const cmd = [py.executable, "-I", "-c", `${harnessSource}\nmain("python")\n`];
  if (os.kind === "bwrap" && os.bwrapPath) {
    const argv = [...bwrapArgs(os.bwrapPath, [py.executable, ...py.dirs], { chdir: "/tmp", env: { LANG: "C.UTF-8" } }), ...cmd];
    return { argv, env: {}, home: "/tmp/home", scratch: ["/tmp/home", "/tmp"] };
  }
  if (!unsafeNoIsolation) {
    throw new RecallError(`--engine python runs real CPython, which is only safe under an OS sandbox, and there is none here (${os.detail}); refusing without --unsafe_no_isolation`, {
      hint: "install bubblewrap (Linux), use the default engine (pyodide), or pass --unsafe_no_isolation to run tools with your user's full access",
    });
  }
  const dir = mkdtempSync(join(tmpdir(), "recall-sandbox-"));
  return { argv: cmd, env: { LANG: "C.UTF-8" }, cwd: dir, home: dir, scratch: [dir], ownDir: dir };
}
