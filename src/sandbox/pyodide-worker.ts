/**
 * The Pyodide sandbox worker process (`recall sandbox worker`, hidden): loads CPython-in-WebAssembly,
 * caps its linear memory, gives Python one way out -- the character device `/dev/recall`, relayed
 * line by line to the host over stdin/stdout -- and then takes away everything else the JavaScript
 * side could reach (processes, sockets, host files, code generation from strings) before the
 * harness seals the Python side and serves calls. After start-up the process is synchronous: the
 * harness blocks reading the device, which blocks reading stdin.
 *
 * stdout carries only the protocol; nothing else in this process may write to fd 1.
 */
import { dlopen, FFIType } from "bun:ffi";
import { readSync, renameSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { loadPyodide } from "pyodide";
import createPyodideModule from "pyodide/pyodide.asm.mjs";
import harnessSource from "./harness.py" with { type: "text" };

export interface PyodideWorkerOptions {
  assetsDir: string;
  memoryBytes: number;
  /** A memory snapshot made by makePyodideSnapshot; a full start-up is the fallback. */
  snapshotPath?: string;
}

const HOME = "/home/sandbox";
// Own references, taken before hardenRealm() replaces node:fs functions with refusals.
const readFd = readSync;
const writeFd = writeSync;

/** Writes a whole protocol line to the host. */
function sendRaw(bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeFd(1, bytes, off, bytes.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EAGAIN") sleepMs(1);
      else process.exit(3);
    }
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function notify(obj: object): void {
  sendRaw(new TextEncoder().encode(JSON.stringify(obj) + "\n"));
}

/** Caps WebAssembly memory growth: past the cap, growth fails (Python sees MemoryError) and the host is told at once. */
function capMemory(limit: number): void {
  const proto = WebAssembly.Memory.prototype;
  const grow = proto.grow;
  let reported = false;
  proto.grow = function (this: WebAssembly.Memory, delta: number): number {
    if (this.buffer.byteLength + delta * 65536 > limit) {
      if (!reported) notify({ t: "limit", what: "memory" });
      reported = true;
      throw new RangeError("recall sandbox: memory limit reached");
    }
    return grow.call(this, delta);
  };
}

/** The device's two directions: Python's writes go to the host as whole lines; its reads block on the host's next message. */
class Relay {
  private out: Uint8Array[] = [];
  private outLen = 0;
  private inBuf = new Uint8Array(0);
  private readonly chunk = new Uint8Array(1 << 16);
  constructor(private readonly maxLine: number) {}

  write(src: Uint8Array): void {
    let start = 0;
    for (let i = 0; i < src.length; i++) {
      if (src[i] !== 0x0a) continue;
      this.out.push(src.slice(start, i + 1));
      sendRaw(concat(this.out, this.outLen + i + 1 - start));
      this.out = [];
      this.outLen = 0;
      start = i + 1;
    }
    if (start < src.length) {
      this.out.push(src.slice(start));
      this.outLen += src.length - start;
      if (this.outLen > this.maxLine) {
        notify({ t: "limit", what: "message" });
        process.exit(4);
      }
    }
  }

  read(dst: Uint8Array): number {
    while (this.inBuf.length === 0) {
      let n: number;
      try {
        n = readFd(0, this.chunk, 0, this.chunk.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") {
          sleepMs(1);
          continue;
        }
        process.exit(0);
      }
      if (n === 0) process.exit(0); // the host closed the channel: done
      this.inBuf = this.chunk.slice(0, n);
    }
    const n = Math.min(dst.length, this.inBuf.length);
    dst.set(this.inBuf.subarray(0, n));
    this.inBuf = this.inBuf.subarray(n);
    return n;
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function refuse(what: string): () => never {
  return () => {
    throw new Error(`recall sandbox: ${what} is disabled`);
  };
}

/**
 * Takes the host's powers out of this JavaScript realm, in case Python ever reached it: no process
 * creation, sockets, HTTP, host files, workers, or compiling code from strings. Called once
 * Pyodide is loaded; the relay keeps its own references to readSync/writeSync.
 */
export function hardenRealm(): void {
  const require = createRequire(import.meta.url);
  const stub = (mod: Record<string, unknown>, names: string[], what: string) => {
    for (const n of names) {
      try {
        Object.defineProperty(mod, n, { value: refuse(what), writable: false, configurable: false });
      } catch {
        try {
          mod[n] = refuse(what);
        } catch {
          // not patchable; the OS sandbox, when present, still applies
        }
      }
    }
  };
  const load = (name: string) => {
    try {
      return require(name) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };
  const cp = load("node:child_process");
  if (cp) stub(cp, ["spawn", "spawnSync", "exec", "execSync", "execFile", "execFileSync", "fork"], "creating processes");
  for (const name of ["node:net", "node:tls", "node:http", "node:https", "node:http2", "node:dgram"]) {
    const m = load(name);
    if (m) stub(m, ["connect", "createConnection", "createServer", "request", "get", "createSocket", "Socket", "Server", "Agent"], "network access");
  }
  const net = load("node:net") as { Socket?: { prototype: Record<string, unknown> } } | undefined;
  if (net?.Socket?.prototype) stub(net.Socket.prototype, ["connect"], "network access");
  const fsMod = load("node:fs");
  if (fsMod) {
    const names = Object.keys(fsMod).filter((k) => typeof fsMod[k] === "function" && /^[a-z]/.test(k));
    stub(fsMod, names, "host file access");
    const promises = fsMod.promises as Record<string, unknown> | undefined;
    if (promises) stub(promises, Object.keys(promises).filter((k) => typeof promises[k] === "function"), "host file access");
  }
  const fsp = load("node:fs/promises");
  if (fsp) stub(fsp, Object.keys(fsp).filter((k) => typeof fsp[k] === "function"), "host file access");
  for (const name of ["node:worker_threads", "node:vm", "node:module", "bun:ffi", "bun:sqlite"]) {
    const m = load(name);
    if (m) stub(m, Object.keys(m).filter((k) => typeof m[k] === "function"), `${name}`);
  }
  const proc = process as unknown as Record<string, unknown>;
  stub(proc, ["binding", "_linkedBinding", "dlopen", "kill", "chdir", "abort"], "process control");
  const g = globalThis as unknown as Record<string, unknown>;
  const bun = g.Bun as Record<string, unknown> | undefined;
  if (bun) {
    stub(bun, Object.keys(bun).filter((k) => typeof bun[k] === "function"), "Bun's host APIs");
    for (const k of ["$", "file", "spawn", "spawnSync", "connect", "listen", "serve", "udpSocket", "write"]) stub(bun, [k], "Bun's host APIs");
  }
  for (const k of ["Bun", "fetch", "WebSocket", "XMLHttpRequest", "EventSource", "Worker", "SharedWorker", "require", "eval", "navigator", "Request", "Response", "Headers"]) {
    try {
      delete g[k];
    } catch {
      // non-configurable
    }
    try {
      if (g[k] !== undefined) Object.defineProperty(g, k, { value: undefined, writable: false, configurable: false });
    } catch {
      // ignore
    }
  }
  // The global Function stays for code that uses Function.prototype, but cannot compile anything.
  try {
    const fnRefuse = refuse("compiling code from strings");
    Object.defineProperty(g, "Function", {
      value: new Proxy(Function, { apply: fnRefuse, construct: fnRefuse }),
      writable: false,
      configurable: false,
    });
  } catch {
    // ignore
  }
  // Every function's `.constructor` reaches a code compiler (Function, AsyncFunction, ...): cut it.
  const ctors = [function () {}, async function () {}, function* () {}, async function* () {}];
  for (const f of ctors) {
    const proto = Object.getPrototypeOf(f) as object;
    try {
      Object.defineProperty(proto, "constructor", { value: refuse("compiling code from strings"), writable: false, configurable: false });
    } catch {
      // ignore
    }
  }
}

/** Loads Pyodide the one way both workers and the snapshot maker do (a snapshot only fits an identical configuration). */
async function loadRuntime(assetsDir: string, extra: Record<string, unknown>) {
  const dir = assetsDir.endsWith("/") ? assetsDir : assetsDir + "/";
  return loadPyodide({
    indexURL: dir,
    lockFileURL: dir + "pyodide-lock.json",
    createPyodideModule: createPyodideModule as never,
    env: { HOME, LANG: "C.UTF-8" },
    jsglobals: Object.create(null) as object,
    stdin: () => null,
    stdout: () => {},
    stderr: () => {},
    _sysExecutable: "python",
    args: [],
    checkAPIVersion: true,
    ...extra,
  } as Parameters<typeof loadPyodide>[0]);
}

/**
 * Writes a memory snapshot of a freshly initialised interpreter (no tool code has run in it) to
 * `outPath` via a temp name; workers restore it in a fraction of a full start-up.
 */
export async function makePyodideSnapshot(assetsDir: string, outPath: string): Promise<void> {
  const py = await loadRuntime(assetsDir, { _makeSnapshot: true });
  py.globals.set("__recall_harness_source", harnessSource);
  py.runPython(
    "__recall_ns = {'__name__': '_recall_harness'}\n" +
      "exec(compile(__recall_harness_source, '<recall-harness>', 'exec'), __recall_ns)\n" +
      "__recall_ns['preload_modules']('pyodide')\n" +
      "del __recall_ns, __recall_harness_source\n",
  );
  const snap = (py as unknown as { makeMemorySnapshot(): Uint8Array }).makeMemorySnapshot();
  const tmp = `${outPath}.tmp-${process.pid}`;
  await Bun.write(tmp, snap);
  renameSync(tmp, outPath);
}

/**
 * Linux: have the kernel kill this process when its parent (the pool) dies, even mid-call when
 * the worker is not reading stdin (bubblewrap's --die-with-parent does the same when present).
 */
function dieWithParent(): void {
  if (process.platform !== "linux") return;
  const parent = process.ppid;
  for (const lib of ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"]) {
    try {
      const libc = dlopen(lib, { prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 } });
      libc.symbols.prctl(1 /* PR_SET_PDEATHSIG */, 9 /* SIGKILL */, 0, 0, 0);
      libc.close();
      break;
    } catch {
      // try the next name
    }
  }
  if (process.ppid !== parent) process.exit(0); // the parent died before prctl took effect
}

export async function runPyodideWorker(opts: PyodideWorkerOptions): Promise<never> {
  dieWithParent();
  capMemory(opts.memoryBytes);
  const relay = new Relay(64 << 20);
  let py;
  let snapshot = "none";
  if (opts.snapshotPath) {
    try {
      const bytes = new Uint8Array(await Bun.file(opts.snapshotPath).arrayBuffer());
      py = await loadRuntime(opts.assetsDir, { _loadSnapshot: bytes });
      snapshot = "used";
    } catch (e) {
      snapshot = `failed: ${e instanceof Error ? e.message : String(e)}`.slice(0, 300);
    }
  }
  try {
    py ??= await loadRuntime(opts.assetsDir, {});
  } catch (e) {
    notify({ t: "fatal", message: `cannot load Pyodide from ${opts.assetsDir}: ${e instanceof Error ? e.message : String(e)}` });
    process.exit(70);
  }
  notify({ t: "loaded", snapshot, at_ms: Math.round(performance.now()) });
  py.setStdin({ error: true });
  py.setStdout({ write: (b: Uint8Array) => b.length });
  py.setStderr({ write: (b: Uint8Array) => b.length });
  const FS = py.FS as unknown as {
    makedev(ma: number, mi: number): number;
    registerDevice(dev: number, ops: object): void;
    mkdev(path: string, mode: number, dev: number): void;
    filesystems: Record<string, unknown>;
  };
  const dev = FS.makedev(77, 0);
  FS.registerDevice(dev, {
    open(stream: { seekable?: boolean }) {
      stream.seekable = false;
    },
    close() {},
    read(_stream: unknown, buffer: Int8Array, offset: number, length: number) {
      return relay.read(new Uint8Array(buffer.buffer, buffer.byteOffset + offset, length));
    },
    write(_stream: unknown, buffer: Int8Array, offset: number, length: number) {
      relay.write(new Uint8Array(buffer.buffer, buffer.byteOffset + offset, length).slice());
      return length;
    },
    llseek() {
      return 0;
    },
  });
  FS.mkdev("/dev/recall", 0o600, dev);
  for (const k of ["NODEFS", "PROXYFS", "WORKERFS", "IDBFS"]) delete FS.filesystems[k];
  const api = py as unknown as Record<string, unknown>;
  for (const k of ["mountNodeFS", "mountNativeFS", "loadPackage", "loadPackagesFromImports", "registerJsModule", "unregisterJsModule"]) {
    try {
      api[k] = refuse(k);
    } catch {
      // ignore
    }
  }
  py.globals.set("__recall_harness_source", harnessSource);
  hardenRealm();
  try {
    // Never returns: the harness serves until the host closes stdin, and the relay then exits.
    py.runPython(
      "__recall_ns = {'__name__': '_recall_harness'}\n" +
        "exec(compile(__recall_harness_source, '<recall-harness>', 'exec'), __recall_ns)\n" +
        "__recall_ns['main']('pyodide')\n",
    );
  } catch (e) {
    notify({ t: "fatal", message: e instanceof Error ? e.message.slice(-2000) : String(e) });
    process.exit(70);
  }
  process.exit(0);
}
