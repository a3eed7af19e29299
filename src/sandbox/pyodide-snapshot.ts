/**
 * A memory snapshot of a freshly started Pyodide interpreter, kept in recall's cache directory, so
 * that a worker starts in a fraction of a second instead of seconds (a fresh replacement after
 * every timeout or broken limit depends on this). It is made once per runtime version by a
 * separate worker process that runs no tool code, and deleted if a worker cannot use it.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cacheRoot, pyodideAssetsDir, runtimeTag } from "./pyodide-assets.ts";
import { selfCommand } from "./worker-launch.ts";

export function snapshotFile(): string {
  return join(cacheRoot(), `pyodide-${runtimeTag()}.snapshot`);
}

/** The snapshot's path, making it first if needed; undefined when it cannot be made (workers then start the slow way). */
export async function ensurePyodideSnapshot(): Promise<string | undefined> {
  const path = snapshotFile();
  if (existsSync(path)) return path;
  try {
    mkdirSync(cacheRoot(), { recursive: true });
    const proc = Bun.spawn([...selfCommand(), "sandbox", "worker", "--assets", pyodideAssetsDir(), "--memory_mb", "1024", "--make_snapshot", path], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
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
