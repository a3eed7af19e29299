/**
 * The layers under the Python-level seal: the worker's hardened JavaScript realm, the bubblewrap
 * wrapper, the `--engine python` worker, and the compiled single binary (Pyodide embedded) run from
 * an empty directory with no node_modules.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalSandbox, LocalSandbox } from "../src/sandbox/local-sandbox.ts";
import { bwrapArgs, detectOsSandbox } from "../src/sandbox/os-sandbox.ts";
import { findPython } from "../src/sandbox/worker-launch.ts";
import { PROJECT_ROOT, compiledBinary } from "./harness.ts";

const os = detectOsSandbox();
const hasBwrap = os.kind === "bwrap";
const python = (() => {
  try {
    return findPython();
  } catch {
    return undefined;
  }
})();

describe("the worker's JavaScript realm after hardening", () => {
  test("processes, host files, sockets, HTTP, workers and code from strings are refused", () => {
    const dir = mkdtempSync(join(tmpdir(), "recall-realm-"));
    try {
      const script = join(dir, "probe.ts");
      writeFileSync(
        script,
        `
import cp from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import http from "node:http";
import vm from "node:vm";
import { hardenRealm } from ${JSON.stringify(join(PROJECT_ROOT, "src/sandbox/pyodide-worker.ts"))};
const g = globalThis as any;
hardenRealm();
const out: Record<string, string> = {};
const probe = (name: string, f: () => unknown) => {
  try { f(); out[name] = "allowed"; } catch { out[name] = "refused"; }
};
probe("spawnSync", () => cp.spawnSync("true"));
probe("execSync", () => cp.execSync("true"));
probe("Bun.spawnSync", () => g.Bun.spawnSync(["true"]));
probe("readFileSync", () => fs.readFileSync("/etc/hostname"));
probe("fs.promises", () => fs.promises.readFile("/etc/hostname"));
probe("net.connect", () => net.connect(9, "127.0.0.1"));
probe("http.request", () => http.request("http://127.0.0.1:9/"));
probe("fetch", () => g.fetch("http://127.0.0.1:9/"));
probe("WebSocket", () => new g.WebSocket("ws://127.0.0.1:9/"));
probe("Worker", () => new g.Worker("data:text/javascript,1"));
probe("Function", () => g.Function("return 1")());
probe("constructor", () => (() => 1).constructor("return 1")());
probe("async constructor", () => (async () => 1).constructor("return 1"));
probe("eval", () => g.eval("1"));
probe("vm", () => vm.runInThisContext("1"));
probe("process.binding", () => (process as any).binding("fs"));
probe("dlopen", () => (process as any).dlopen({}, "/lib/x.so"));
probe("Function.prototype still usable", () => { if (Function.prototype.call.call((x: number) => x + 1, null, 1) !== 2) throw new Error(); });
console.log(JSON.stringify(out));
`,
      );
      const p = Bun.spawnSync([process.execPath, script], { cwd: PROJECT_ROOT, env: {} });
      expect(p.stderr.toString()).toBe("");
      const out = JSON.parse(p.stdout.toString()) as Record<string, string>;
      const allowed = Object.entries(out).filter(([, v]) => v === "allowed").map(([k]) => k);
      expect(allowed).toEqual(["Function.prototype still usable"]);
      expect(Object.keys(out).length).toBe(18);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!hasBwrap)("bubblewrap wrapper", () => {
  test("no host files, no host variables, no network; only what is bound is readable", async () => {
    let connections = 0;
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: () => void connections++, data() {} } });
    const dir = mkdtempSync(join(tmpdir(), "recall-bwrap-"));
    try {
      const bound = join(dir, "visible.txt");
      writeFileSync(bound, "visible");
      const wrap = bwrapArgs(os.bwrapPath!, [bound]);
      const sh = (cmd: string) => {
        const p = Bun.spawnSync([...wrap, "/bin/bash", "-c", cmd], { env: { ...process.env, LEAK_ME: "secret" } });
        return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
      };
      expect(sh(`cat ${bound}`)).toEqual({ code: 0, out: "visible", err: "" });
      expect(sh("cat /etc/passwd").code).not.toBe(0);
      expect(sh(`cat ${join(PROJECT_ROOT, "package.json")}`).code).not.toBe(0);
      expect(sh("ls /root /home /work 2>&1; true").out).toContain("No such file or directory");
      const env = sh("env");
      expect(env.out).not.toContain("LEAK_ME");
      expect(env.out).not.toContain("PATH=");
      expect(sh(`exec 3<>/dev/tcp/127.0.0.1/${listener.port}`).code).not.toBe(0);
      expect(sh("cat /proc/net/dev | grep -c :").out.trim()).toBe("1"); // only loopback in its own network namespace
      await Bun.sleep(200);
      expect(connections).toBe(0);
      const control = Bun.spawnSync(["/bin/bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${listener.port}`]);
      expect(control.exitCode).toBe(0); // the listener is reachable from outside the sandbox
    } finally {
      listener.stop(true);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("--engine python", () => {
  test("refuses to run without an OS sandbox unless told --unsafe_no_isolation", () => {
    expect(() => new LocalSandbox({ engine: "python", osSandbox: "none" })).toThrow(/--unsafe_no_isolation/);
  });

  test.skipIf(!python || !hasBwrap)("system python3 under bubblewrap: real CPython, same seal, same limits", async () => {
    const pool = await createLocalSandbox({ engine: "python", workers: 1, memoryMb: 256, maxTimeout: 5 });
    try {
      const version = await pool.execute({ env: "import sys", call: "'%d.%d.%d' % sys.version_info[:3]" });
      expect(version).toEqual({ output: "", result: python!.version, error: null });
      expect((await pool.execute({ env: "", call: "open('/etc/passwd').read()" })).error).toBe("[Errno 2] No such file or directory: '/etc/passwd'");
      const own = join(PROJECT_ROOT, "package.json");
      expect((await pool.execute({ env: "", call: `open(${JSON.stringify(own)}).read()` })).error).toBe(`[Errno 2] No such file or directory: '${own}'`);
      expect((await pool.execute({ env: "import socket", call: "socket.create_connection(('127.0.0.1', 9))" })).error).toStartWith("network access is disabled in the sandbox");
      expect((await pool.execute({ env: "import subprocess", call: "subprocess.run(['true'])" })).error).toBe("creating processes is disabled in the sandbox");
      expect((await pool.execute({ env: "import os", call: "sorted(os.environ)" })).result).toEqual(["HOME", "LANG", "LOGNAME", "PATH", "USER"]);
      const printed = await pool.execute({ env: "def f():\n    print('from cpython')\n    return {'t': (1, 2)}", call: "f()" });
      expect(printed).toEqual({ output: "from cpython\n", result: { t: [1, 2] }, error: null });
      expect((await pool.execute({ env: "while True: pass", call: "1", timeout: 1 })).error).toBe("execution timed out");
      expect((await pool.execute({ env: "", call: "2 ** 10" })).result).toBe(1024);
      expect((await pool.execute({ env: "", call: "len(bytearray(2 * 1024**3))" })).error).toBe("memory limit exceeded: the call used more than 256 MB");
      expect((await pool.execute({ env: "", call: "'after'" })).result).toBe("after");
    } finally {
      await pool.close();
    }
  }, 60_000);

  test.skipIf(!python)("--unsafe_no_isolation runs plain python3 in a private temp dir, removed afterwards", async () => {
    const pool = await createLocalSandbox({ engine: "python", workers: 1, osSandbox: "none", unsafeNoIsolation: true });
    let cwd = "";
    try {
      const a = await pool.execute({ env: "import os", call: "os.getcwd()" });
      cwd = String(a.result);
      expect(cwd.startsWith(join(tmpdir(), "recall-sandbox-"))).toBe(true);
      expect((await pool.execute({ env: "open('scratch.txt', 'w').write('x')", call: "1" })).result).toBe(1);
      expect((await pool.execute({ env: "import os", call: "os.listdir('.')" })).result).toEqual([]);
    } finally {
      await pool.close();
    }
    expect(existsSync(cwd)).toBe(false);
  }, 60_000);
});

describe("single binary", () => {
  test("dist/recall runs sandbox exec from an empty temp dir with no node_modules (Pyodide embedded)", () => {
    const dist = compiledBinary();
    const dir = mkdtempSync(join(tmpdir(), "recall-sbx-bin-"));
    try {
      copyFileSync(dist, join(dir, "recall"));
      Bun.spawnSync(["chmod", "+x", join(dir, "recall")]);
      writeFileSync(join(dir, "tools.py"), "def f(x):\n    print('in the binary')\n    return {'x': x, 'half': x / 2}\n");
      const env = { HOME: dir, PATH: "/usr/local/bin:/usr/bin:/bin" };
      const run = () => Bun.spawnSync([join(dir, "recall"), "sandbox", "exec", "--env", "tools.py", "--call", "f(x=3)"], { cwd: dir, env });
      const first = run();
      expect(first.stderr.toString()).toBe("");
      expect(first.stdout.toString()).toBe('{"output": "in the binary\\n", "result": {"x": 3, "half": 1.5}, "error": null}\n');
      const cache = join(dir, ".cache", "recall");
      const files = readdirSync(cache).sort();
      expect(files.some((f) => f.endsWith(".snapshot"))).toBe(true);
      const assets = files.find((f) => !f.endsWith(".snapshot"))!;
      expect(readdirSync(join(cache, assets)).sort()).toEqual(["README", "pyodide-lock.json", "pyodide.asm.wasm", "python_stdlib.zip"]);
      const second = run(); // warm: assets and snapshot reused
      expect(second.stdout.toString()).toBe(first.stdout.toString());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

describe("worker lifetime", () => {
  test("workers die with the pool's process, even in the middle of a call", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recall-orphan-"));
    try {
      const script = join(dir, "pool.ts");
      writeFileSync(
        script,
        `
import { createLocalSandbox } from ${JSON.stringify(join(PROJECT_ROOT, "src/sandbox/local-sandbox.ts"))};
const pool = await createLocalSandbox({ workers: 1, memoryMb: 128, osSandbox: "none" });
void pool.execute({ env: "while True: pass", call: "1", timeout: 60 });
await Bun.sleep(300);
console.log(JSON.stringify(pool.workerPids()));
await Bun.sleep(60_000);
`,
      );
      const proc = Bun.spawn([process.execPath, script], { cwd: PROJECT_ROOT, stdout: "pipe", stderr: "inherit" });
      const reader = proc.stdout.getReader();
      let text = "";
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const pids = JSON.parse(text) as number[];
      expect(pids.length).toBe(1);
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      expect(alive(pids[0]!)).toBe(true);
      proc.kill("SIGKILL");
      await proc.exited;
      const t0 = performance.now();
      while (alive(pids[0]!) && performance.now() - t0 < 3000) await Bun.sleep(50);
      expect(alive(pids[0]!)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
