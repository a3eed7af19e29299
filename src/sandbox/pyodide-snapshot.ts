/**
 * A memory snapshot of a freshly started Pyodide interpreter, kept in recall's cache directory, so
 * that a worker starts in a fraction of a second instead of seconds (a fresh replacement after
 * every timeout or broken limit depends on this). It is made once per runtime version by a
 * separate worker process that runs no tool code (the interpreter after start-up and after
 * importing the common modules), and deleted if a worker cannot use it.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import harnessSource from "./harness.py" with { type: "text" };
import { pyodideAssetsDir, runtimeTag, writableCacheDir } from "./pyodide-assets.ts";
import { selfCommand } from "./worker-launch.ts";

/** Where the snapshot lives (undefined when no cache directory is writable). */
export function snapshotFile(): string | undefined {
  const dir = writableCacheDir();
  // The harness decides what the snapshot holds (which modules are preloaded): a new harness, a new snapshot.
  const harness = Bun.hash(harnessSource).toString(36);
  return dir ? join(dir, `pyodide-${runtimeTag()}-${harness}.snapshot`) : undefined;
}

/** The snapshot's path, making it first if needed; undefined when it cannot be made (workers then start the slow way). */
export async function ensurePyodideSnapshot(): Promise<string | undefined> {
  const path = snapshotFile();
  if (!path) return undefined;
  if (existsSync(path)) return path;
  try {
    const proc = Bun.spawn([...selfCommand(), "sandbox", "worker", "--assets", pyodideAssetsDir(), "--memory_mb", "1024", "--make_snapshot", path], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
      env: {},
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 180_000);
    const code = await proc.exited;
    clearTimeout(timer);
    return code === 0 && existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Called when a worker could not restore the snapshot: remove it so the next start makes a good one. */
export function discardSnapshot(path: string): void {
  rmSync(path, { force: true });
}
