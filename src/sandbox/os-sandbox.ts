/**
 * OS-level defence in depth for sandbox workers: on Linux with bubblewrap (`bwrap`) usable, each
 * worker runs in its own user, network, PID, IPC, UTS and cgroup namespaces, with no capabilities,
 * an empty environment, a private /tmp, and a read-only view of only the system libraries and the
 * files the worker needs (the recall binary, or the project's sources when running from source).
 * Detected once at start-up by actually running bwrap; never required.
 */
import { existsSync, lstatSync, readlinkSync, realpathSync } from "node:fs";

export interface OsSandbox {
  /** "bwrap" when workers run under bubblewrap, "none" otherwise. */
  kind: "bwrap" | "none";
  /** One line for logs and /health: what the workers get, or why there is no OS sandbox. */
  detail: string;
  bwrapPath?: string;
}

const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/** bwrap arguments that give a worker the system libraries, `readOnly` paths, and nothing else of the host. */
export function bwrapArgs(bwrap: string, readOnly: string[], opts: { chdir?: string; env?: Record<string, string> } = {}): string[] {
  const args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"];
  for (const dir of SYSTEM_DIRS) {
    if (!existsSync(dir)) continue;
    const st = lstatSync(dir);
    if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(dir), dir);
    else if (st.isDirectory()) args.push("--ro-bind", dir, dir);
  }
  args.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp");
  const seen = new Set<string>();
  for (const p of readOnly) {
    if (!existsSync(p)) continue;
    const real = realpathSync(p);
    for (const q of new Set([p, real])) {
      if (seen.has(q) || SYSTEM_DIRS.some((d) => q === d || q.startsWith(d + "/"))) continue;
      seen.add(q);
      args.push("--ro-bind", real, q);
    }
  }
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push("--setenv", k, v);
  args.push("--chdir", opts.chdir ?? "/tmp", "--");
  return args;
}

let detected: OsSandbox | undefined;

/** Whether workers can run under bwrap here: looks for it, then runs a trivial sandboxed command. */
export function detectOsSandbox(): OsSandbox {
  if (detected) return detected;
  if (process.platform !== "linux") {
    return (detected = { kind: "none", detail: `no OS sandbox on ${process.platform} (bubblewrap is Linux-only); workers are plain processes` });
  }
  const bwrap = Bun.which("bwrap");
  if (!bwrap) return (detected = { kind: "none", detail: "bubblewrap (bwrap) not found; workers are plain processes (install bubblewrap for namespace isolation)" });
  const probe = Bun.spawnSync(bwrapArgs(bwrap, [process.execPath]).concat([process.execPath, "--version"]), {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: {},
  });
  if (probe.exitCode !== 0) {
    const why = probe.stderr.toString().trim().split("\n")[0] || `exit code ${probe.exitCode}`;
    return (detected = { kind: "none", detail: `bubblewrap found at ${bwrap} but unusable here (${why}); workers are plain processes` });
  }
  const version = Bun.spawnSync([bwrap, "--version"], { env: {} }).stdout.toString().trim();
  return (detected = {
    kind: "bwrap",
    bwrapPath: bwrap,
    detail: `${version || "bubblewrap"}: workers get their own network (none), PID, IPC and user namespaces, no capabilities, an empty environment, and read-only system libraries plus recall itself`,
  });
}
