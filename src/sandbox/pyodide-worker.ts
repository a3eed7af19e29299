/**
 * The Pyodide sandbox worker process (`recall sandbox worker`, hidden): loads CPython-in-WebAssembly,
 * caps its linear memory, takes away everything the JavaScript side could reach (processes,
 * sockets, host files, code generation from strings), has the Python harness seal the interpreter,
 * copies the interpreter's state (pyodide-pristine.ts), and then serves calls itself: this
 * JavaScript, not Python, speaks the protocol with the host. For each call it enters Python through
 * the C API, lets Python reach it only through the device `/dev/recall` (the call, allow-listed HTTP
 * requests one at a time, the answer), sends the answer, and puts the pristine state back before it
 * reads the next call -- so no code of one call ever runs while another call's request exists here.
 * After start-up the process is synchronous: no JavaScript event turns, so nothing runs between calls.
 *
 * stdout carries only the protocol; nothing else in this process may write to fd 1.
 */
import { dlopen, FFIType } from "bun:ffi";
import { readSync, renameSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { loadPyodide } from "pyodide";
import createPyodideModule from "pyodide/pyodide.asm.mjs";
import harnessSource from "./harness.py" with { type: "text" };
import { type EmscriptenFs, type EmscriptenModule, MAX_GROWTH_BYTES, PristineState } from "./pyodide-pristine.ts";

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

/** The worker's line protocol with the host over stdin/stdout (synchronous reads: no JavaScript event turns while serving). */
class HostLink {
  private buf: Uint8Array = new Uint8Array(0);
  private readonly chunk = new Uint8Array(1 << 16);

  /** The next line from the host, without its newline; the process exits when the host closes stdin. */
  readLine(): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const i = this.buf.indexOf(0x0a);
      if (i >= 0) {
        parts.push(this.buf.subarray(0, i));
        total += i;
        const line = concat(parts, total);
        this.buf = this.buf.subarray(i + 1);
        return new TextDecoder().decode(line);
      }
      if (this.buf.length) {
        parts.push(this.buf.slice());
        total += this.buf.length;
      }
      this.buf = this.fill();
    }
  }

  private fill(): Uint8Array {
    for (;;) {
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
      return this.chunk.slice(0, n);
    }
  }

  send(obj: object): void {
    notify(obj);
  }
}

/**
 * What Python can do through /dev/recall during one call: read the call (once), ask the host for an
 * allow-listed HTTP request (one at a time: the worker waits for the host's reply before Python
 * runs on), report its answer, and report that it printed past the output cap. The call id is the
 * worker's, never Python's, and everything else Python writes is ignored. One per call: nothing is
 * carried from one call to the next.
 */
class CallDevice {
  answer: Record<string, unknown> | undefined;
  private pending: Uint8Array;
  private line: Uint8Array[] = [];
  private lineLen = 0;

  constructor(
    private readonly host: HostLink,
    readonly id: string | undefined,
    first: string,
    private readonly maxLine: number,
    private readonly onSetupLine?: (msg: Record<string, unknown>) => void,
  ) {
    this.pending = new TextEncoder().encode(first + "\n");
  }

  read(dst: Uint8Array): number {
    const n = Math.min(dst.length, this.pending.length);
    dst.set(this.pending.subarray(0, n));
    this.pending = this.pending.subarray(n);
    return n; // 0: nothing more for Python this call
  }

  write(src: Uint8Array): void {
    let start = 0;
    for (let i = src.indexOf(0x0a); i >= 0; i = src.indexOf(0x0a, start)) {
      this.line.push(src.slice(start, i));
      const line = concat(this.line, this.lineLen + i - start);
      this.line = [];
      this.lineLen = 0;
      start = i + 1;
      this.handle(line);
    }
    if (start < src.length) {
      this.line.push(src.slice(start));
      this.lineLen += src.length - start;
      if (this.lineLen > this.maxLine) {
        notify({ t: "limit", what: "message" });
        process.exit(4);
      }
    }
  }

  private handle(bytes: Uint8Array): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof msg !== "object" || msg === null) return;
    if (this.onSetupLine) return this.onSetupLine(msg);
    if (msg.t === "answer") {
      this.answer = msg;
    } else if (msg.t === "limit" && msg.what === "output") {
      this.host.send({ t: "limit", what: "output" });
    } else if (msg.t === "http") {
      this.host.send({
        t: "http",
        id: this.id,
        method: String(msg.method ?? "GET"),
        url: String(msg.url ?? ""),
        headers: typeof msg.headers === "object" && msg.headers !== null ? msg.headers : {},
        body_b64: typeof msg.body_b64 === "string" ? msg.body_b64 : null,
        timeout: typeof msg.timeout === "number" ? msg.timeout : null,
      });
      const reply = this.host.readLine();
      if (!reply.startsWith('{"t":"http_result"')) {
        notify({ t: "fatal", message: "the host sent something other than the HTTP result it owed" });
        process.exit(5);
      }
      // Only the latest reply waits for Python: requests written without reading replies cannot pile up.
      this.pending = new TextEncoder().encode(reply + "\n");
    }
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
  // umask: Emscripten's umask() sets the worker process's own, which would outlive the call.
  stub(proc, ["binding", "_linkedBinding", "dlopen", "kill", "chdir", "abort", "umask"], "process control");
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

/** What the worker answers when a call ended without reporting an answer (tool code closed or jammed the device). */
const LOST_ANSWER = "the call ended without an answer (its code interfered with the sandbox's runner)";

/** Characters as Python counts them (code points), for strings that came out of Python. */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00) n--;
  }
  return n;
}

/** The answer the host gets for a call: only well-typed fields, with the caps checked here too. */
function checkedAnswer(id: string, a: Record<string, unknown> | undefined, caps: { output: number; result: number }): object {
  if (!a) return { t: "answer", id, output: "", result_json: null, error: LOST_ANSWER, limit: null };
  const limit = a.limit === "output" || a.limit === "result" || a.limit === "memory" ? a.limit : null;
  const output = typeof a.output === "string" ? a.output : "";
  const resultJson = typeof a.result_json === "string" ? a.result_json : null;
  const error = typeof a.error === "string" ? a.error : null;
  if (limit) return { t: "answer", id, output: "", result_json: null, error, limit };
  if (output.length > caps.output && codePoints(output) > caps.output) return { t: "answer", id, output: "", result_json: null, error: null, limit: "output" };
  if (resultJson !== null && resultJson.length > caps.result) return { t: "answer", id, output: "", result_json: null, error: null, limit: "result" };
  return { t: "answer", id, output, result_json: resultJson, error, limit: null };
}

export async function runPyodideWorker(opts: PyodideWorkerOptions): Promise<never> {
  dieWithParent();
  capMemory(opts.memoryBytes);
  const host = new HostLink();
  const maxLine = 64 << 20;
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
  // Python's stderr is dropped; RECALL_SANDBOX_DEBUG=1 shows it when running a worker by hand (pools give workers an empty environment).
  py.setStderr({ write: (b: Uint8Array) => (process.env.RECALL_SANDBOX_DEBUG ? writeFd(2, b) : b.length) });
  const FS = py.FS as unknown as EmscriptenFs & {
    makedev(ma: number, mi: number): number;
    registerDevice(dev: number, ops: object): void;
    mkdev(path: string, mode: number, dev: number): void;
  };
  const M = (py as unknown as { _module: EmscriptenModule & Record<string, (...a: number[]) => number> })._module;
  // The device's handlers reach whatever CallDevice serves the moment (setup, then one per call).
  let device: CallDevice | undefined;
  const dev = FS.makedev(77, 0);
  FS.registerDevice(dev, {
    open(stream: { seekable?: boolean }) {
      stream.seekable = false;
    },
    close() {},
    read(_stream: unknown, buffer: Int8Array, offset: number, length: number) {
      return device ? device.read(new Uint8Array(buffer.buffer, buffer.byteOffset + offset, length)) : 0;
    },
    write(_stream: unknown, buffer: Int8Array, offset: number, length: number) {
      device?.write(new Uint8Array(buffer.buffer, buffer.byteOffset + offset, length));
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
  const initLine = host.readLine();
  let init: { home?: string; scratch?: string[]; output_limit?: number; result_limit?: number };
  try {
    init = JSON.parse(initLine) as typeof init;
  } catch {
    notify({ t: "fatal", message: "the host's init message is not JSON" });
    process.exit(70);
  }
  const scratch = (init.scratch ?? []).filter((d) => typeof d === "string" && d.startsWith("/") && d !== "/");
  const caps = { output: Number(init.output_limit ?? 1 << 20), result: Number(init.result_limit ?? 1 << 20) };
  const inodeBeforeScratch = PristineState.mountScratch(FS, scratch);
  py.globals.set("__recall_harness_source", harnessSource);
  py.runPython("__recall_ns = {'__name__': '_recall_harness'}\nexec(compile(__recall_harness_source, '<recall-harness>', 'exec'), __recall_ns)\n");
  hardenRealm();
  // From here on Python is entered only through the C API: Pyodide's own runner is sealed away.
  let runner = 0;
  let python = "";
  device = new CallDevice(host, undefined, initLine, maxLine, (msg) => {
    if (msg.t === "runner" && typeof msg.address === "number" && runner === 0) {
      runner = msg.address;
      python = String(msg.python ?? "");
      M._Py_IncRef!(runner); // the worker's own reference: setup's namespace is about to go
    }
  });
  const setup = new TextEncoder().encode("__recall_ns['setup_pyodide']()\n\0");
  const src = M._malloc!(setup.length);
  M.HEAPU8.set(setup, src);
  let rc: number;
  try {
    rc = M._PyRun_SimpleString!(src);
  } catch (e) {
    notify({ t: "fatal", message: e instanceof Error ? e.message.slice(-2000) : String(e) });
    process.exit(70);
  }
  M._free!(src);
  if (rc !== 0 || runner === 0) {
    notify({ t: "fatal", message: "the sandbox harness failed to set up" });
    process.exit(70);
  }
  device = undefined;
  const pristine = new PristineState(M, FS, scratch, inodeBeforeScratch);
  host.send({ t: "ready", engine: "pyodide", python });
  for (;;) {
    const line = host.readLine();
    let msg: { t?: unknown; id?: unknown };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      process.exit(5);
    }
    if (msg.t !== "call" || typeof msg.id !== "string") process.exit(5);
    const call = new CallDevice(host, msg.id, line, maxLine);
    device = call;
    try {
      M._PyObject_CallNoArgs!(runner);
    } catch (e) {
      // A trap, exit() (Emscripten's ExitStatus, not an Error) or a JavaScript stack overflow inside Python: this worker is done.
      const message = (e as { message?: unknown } | null)?.message;
      notify({ t: "fatal", message: typeof message === "string" ? message.slice(-2000) : String(e) });
      process.exit(70);
    }
    device = undefined;
    host.send(checkedAnswer(msg.id, call.answer, caps));
    if (pristine.growth() > MAX_GROWTH_BYTES) process.exit(0); // cheaper to replace than to zero after every call
    pristine.restore();
    host.send({ t: "idle" });
  }
}
