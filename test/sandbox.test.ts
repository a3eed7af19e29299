/**
 * The local sandbox pool in-process: ReCall semantics on the happy paths, and hostile tool code
 * failing safely (each with its exact answer) while the pool keeps answering.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { flattenAnswer } from "../src/sandbox/flatten.ts";
import { type LocalSandbox, createLocalSandbox } from "../src/sandbox/local-sandbox.ts";
import type { ExecuteAnswer } from "../src/sandbox/types.ts";
import { PROJECT_ROOT } from "./harness.ts";

const SECRET = "recall-test-secret-7f3a";
process.env.RECALL_SANDBOX_TEST_SECRET = SECRET;

let pool: LocalSandbox;
let retriever: ReturnType<typeof Bun.serve>;
let retrieverUrl = "";
const searches: unknown[] = [];
// A loopback listener that is NOT allow-listed: tool code must never reach it.
let forbiddenPort = 0;
let forbiddenConnections = 0;
let forbidden: { port: number; stop(closeActive?: boolean): void };

beforeAll(async () => {
  retriever = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as { query: string; top_n: number };
      searches.push(body);
      const docs = [
        { id: "1", contents: '"Paris"\nParis is the capital of France.' },
        { id: "2", contents: '"Lyon"\nLyon is a city in France.' },
        { id: "3", contents: '"Nice"\nNice is on the Riviera.' },
      ];
      return Response.json(docs.slice(0, body.top_n));
    },
  });
  retrieverUrl = `http://127.0.0.1:${retriever.port}`;
  forbidden = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: { open: () => void forbiddenConnections++, data() {} },
  });
  forbiddenPort = forbidden.port;
  pool = await createLocalSandbox({ workers: 2, memoryMb: 256, maxTimeout: 10, allowUrls: [retrieverUrl] });
}, 120_000);

afterAll(async () => {
  await pool?.close();
  retriever?.stop(true);
  forbidden?.stop(true);
});

const run = (env: string, call: string, timeout?: number): Promise<ExecuteAnswer> => pool.execute({ env, call, timeout });

describe("happy paths (ReCall semantics)", () => {
  test("arithmetic", async () => {
    const a = await run("", "1 + 2 * 3");
    expect(a).toEqual({ output: "", result: 7, error: null });
    expect(flattenAnswer(a)).toBe("result: \n7");
  });

  test("stdout is captured; the env runs before the call", async () => {
    const a = await run("print('loading')\ndef greet(name):\n    print('hi', name)\n    return len(name)", "greet(name='Ada')");
    expect(a).toEqual({ output: "loading\nhi Ada\n", result: 3, error: null });
    expect(flattenAnswer(a)).toBe("result: \n3\noutput: \nloading\nhi Ada");
  });

  test("exceptions: str(exception) in error, output kept", async () => {
    expect(await run("def f():\n    print('before')\n    return 1 / 0", "f()")).toEqual({ output: "before\n", result: null, error: "division by zero" });
    expect(await run("d = {}", "d['missing']")).toEqual({ output: "", result: null, error: "'missing'" });
    const syntax = await run("def f(:\n    pass", "f()");
    expect(syntax.error).toBe("invalid syntax (<env>, line 1)");
    expect((await run("", "undefined_tool(x=1)")).error).toBe("name 'undefined_tool' is not defined");
  });

  test("returned dicts, lists, tuples, None, 0, False", async () => {
    const dict = await run("def f():\n    return {'a': 1, 'b': [1, 2.0], 'c': None}", "f()");
    expect(dict).toEqual({ output: "", result: { a: 1, b: [1, 2], c: null }, error: null });
    expect(flattenAnswer(dict)).toBe("result: \n{'a': 1, 'b': [1, 2.0], 'c': None}");
    const list = await run("", "[1, 'two', [3]]");
    expect(list.result).toEqual([1, "two", [3]]);
    expect(flattenAnswer(list)).toBe("result: \n[1, 'two', [3]]");
    const tuple = await run("", "(1, 'x', (2, 3))");
    expect(tuple.result).toEqual([1, "x", [2, 3]]);
    expect(flattenAnswer(tuple)).toBe("result: \n[1, 'x', [2, 3]]");
    for (const [call, value] of [["None", null], ["0", 0], ["False", false]] as const) {
      const a = await run("", call);
      expect(a).toEqual({ output: "", result: value, error: null });
      expect(flattenAnswer(a)).toBe("");
    }
    expect(flattenAnswer(await run("", "True"))).toBe("result: \nTrue");
  });

  test("FastAPI-style encoding: sets, generators, bytes, dates, NaN/Infinity, non-serialisable objects as str()", async () => {
    const a = await run("import datetime, math\nclass Point:\n    pass", "[{3}, (i for i in range(2)), b'ab', datetime.date(2024, 5, 1), math.nan, -math.inf, {1: 'int key', None: 'n'}]");
    expect(a.error).toBeNull();
    expect(a.result).toEqual([[3], [0, 1], "ab", "2024-05-01", "nan", "-inf", { "1": "int key", null: "n" }]);
    const obj = await run("class Point:\n    pass", "Point()");
    expect(obj.error).toBeNull();
    expect(String(obj.result)).toMatch(/^<__main__\.Point object at 0x[0-9a-f]+>$/);
    expect((await run("", "len")).result).toBe("<built-in function len>");
    expect((await run("", "object")).result).toBe("<class 'object'>");
  });

  test("ReCall's wikipedia_search env against an allow-listed retriever on loopback", async () => {
    const env = readFileSync(join(PROJECT_ROOT, "../shared/spec/wikipedia_search_env.py"), "utf8").replaceAll("<search-url-placeholder>", retrieverUrl);
    searches.length = 0;
    const a = await run(env, "wikipedia_search(query='capital of France', top_n=2)");
    expect(a).toEqual({ output: "", result: '"Paris"\nParis is the capital of France.\n\n"Lyon"\nLyon is a city in France.', error: null });
    expect(searches).toEqual([{ query: "capital of France", top_n: 2 }]);
    expect(flattenAnswer(a)).toBe('result: \n"Paris"\nParis is the capital of France.\n\n"Lyon"\nLyon is a city in France.');
    expect((await run(env, "wikipedia_search(query='')")).result).toBe("invalid query");
  });

  test("each call gets fresh globals and nothing a call changed survives it", async () => {
    const one = await createLocalSandbox({ workers: 1, memoryMb: 256 });
    try {
      const dirty = await one.execute({
        env: [
          "X = 41",
          "import builtins, json, os, sys, colorsys, wave",
          "builtins.len = lambda x: 42",
          "json.dumps = None",
          "os.environ['LEAK'] = '1'",
          "open('/tmp/leak.txt', 'w').write('x')",
          "open('leak_home.txt', 'w').write('x')",
          "os.makedirs('/tmp/d/e')",
          "sys.path.insert(0, '/tmp')",
          "colorsys.LEAK = 1",
          "wave.LEAK = 1",
          "sys.setrecursionlimit(123)",
        ].join("\n"),
        call: "len([])",
      });
      expect(dirty).toEqual({ output: "", result: 42, error: null });
      const clean = await one.execute({
        env: "import builtins, json, os, sys, colorsys, wave",
        call: "[len([]), json.dumps is None, 'LEAK' in os.environ, sorted(os.listdir('/tmp')), os.listdir('.'), sys.path[0] == '/tmp', hasattr(colorsys, 'LEAK'), hasattr(wave, 'LEAK'), sys.getrecursionlimit() == 123, 'X' in globals()]",
      });
      expect(clean).toEqual({ output: "", result: [0, false, false, [], [], false, false, false, false, false], error: null });
      expect((await one.execute({ env: "", call: "X" })).error).toBe("name 'X' is not defined");
    } finally {
      await one.close();
    }
  }, 60_000);
});

describe("hostile tool code fails safely", () => {
  test("no route to host JavaScript: js, pyodide_js, pyodide.ffi, _pyodide_core", async () => {
    expect((await run("import js", "1")).error).toBe("module 'js' is not available in the sandbox");
    expect((await run("import pyodide_js", "1")).error).toBe("module 'pyodide_js' is not available in the sandbox");
    expect((await run("from pyodide.ffi import to_js", "1")).error).toBe("module 'pyodide.ffi' is not available in the sandbox");
    expect((await run("import pyodide.code", "pyodide.code.run_js('process.env')")).error).toBe("module 'pyodide.code' is not available in the sandbox");
    expect((await run("import importlib", "importlib.import_module('_pyodide_core')")).error).toBe("module '_pyodide_core' is not available in the sandbox");
    expect((await run("import _imp, importlib.machinery", "_imp.create_builtin(importlib.machinery.ModuleSpec('_pyodide_core', None))")).error).toBe(
      "module '_pyodide_core' is not available in the sandbox",
    );
    expect((await run("import gc", "gc.get_objects()")).error).toBe("walking the interpreter's heap (gc.get_objects and friends) is disabled in the sandbox");
    expect((await run("import sys", "sorted(m for m in sys.modules if m.split('.')[0] in ('js', 'pyodide', 'pyodide_js', '_pyodide', '_pyodide_core'))")).result).toEqual([]);
  });

  test("no JavaScript object is reachable from modules, classes, functions or frames", async () => {
    // Breadth-first walk over everything tool code can reach without gc: sys.modules, every class
    // (object.__subclasses__, recursively), function globals/closures/defaults, containers, frames.
    const hunt = `
import sys, types
def hunt(budget=400000):
    seen, found = set(), []
    queue = [(sys.modules, 'sys.modules'), (sys._getframe(), 'frame')]
    stack = [object]
    while stack:
        c = stack.pop()
        queue.append((c, 'class ' + repr(c)))
        try:
            stack.extend(type.__subclasses__(c))
        except TypeError:
            pass
    while queue and budget > 0:
        o, path = queue.pop()
        if id(o) in seen:
            continue
        seen.add(id(o)); budget -= 1
        t = type(o)
        name = getattr(t, '__name__', '')
        mod = getattr(t, '__module__', '') or ''
        # Classes of the bridge stay findable (they cannot be instantiated); instances must not be.
        if not isinstance(o, type) and (name.startswith('Js') or mod.startswith(('pyodide', '_pyodide')) or 'JsProxy' in name):
            found.append(path[:120] + ' -> ' + mod + '.' + name)
            continue
        kids = []
        if isinstance(o, dict):
            kids = list(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            kids = list(o)
        elif isinstance(o, types.ModuleType):
            kids = list(vars(o).values())
        elif isinstance(o, type):
            kids = list(vars(o).values())
        elif isinstance(o, types.FunctionType):
            kids = [o.__globals__, o.__defaults__, o.__kwdefaults__] + [c.cell_contents for c in (o.__closure__ or ()) if _has(c)]
        elif isinstance(o, types.FrameType):
            kids = [o.f_globals, o.f_locals, o.f_back]
        elif isinstance(o, (staticmethod, classmethod)):
            kids = [o.__func__]
        elif isinstance(o, property):
            kids = [o.fget, o.fset, o.fdel]
        elif hasattr(o, '__dict__') and isinstance(getattr(o, '__dict__', None), dict):
            kids = [o.__dict__]
        for k in kids:
            if k is not None and not isinstance(k, (str, int, float, bytes)):
                queue.append((k, path + '/' + type(k).__name__))
    return found, 400000 - budget
def _has(cell):
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False
`;
    const a = await run(hunt, "hunt()", 10);
    expect(a.error).toBeNull();
    const [found, visited] = a.result as [string[], number];
    expect(found).toEqual([]);
    expect(visited).toBeGreaterThan(10_000); // the walk really covered the interpreter
  }, 30_000);

  test("no host files: /etc/passwd and the project's own files do not exist inside", async () => {
    expect((await run("", "open('/etc/passwd').read()")).error).toBe("[Errno 44] No such file or directory: '/etc/passwd'");
    const own = join(PROJECT_ROOT, "package.json");
    expect((await run("", `open(${JSON.stringify(own)}).read()`)).error).toBe(`[Errno 44] No such file or directory: '${own}'`);
    expect((await run("import os", "sorted(os.listdir('/'))")).result).toEqual(["dev", "home", "lib", "proc", "tmp"]);
  });

  test("an empty environment: no host variables", async () => {
    const a = await run("import os", "dict(os.environ)");
    expect(a.result).toEqual({ HOME: "/home/sandbox", LANG: "C.UTF-8", PATH: "/usr/local/bin:/usr/bin:/bin", USER: "sandbox", LOGNAME: "sandbox" });
    expect(JSON.stringify(a)).not.toContain(SECRET);
    expect((await run("import sys", "[sys.executable, sys.argv]")).result).toEqual(["", [""]]);
  });

  test("no processes: subprocess, os.system, os.popen, ctypes", async () => {
    expect((await run("import os", "os.system('touch /tmp/pwned')")).error).toBe("creating processes is disabled in the sandbox");
    expect((await run("import subprocess", "subprocess.run(['ls'])")).error).toBe("[Errno 138] emscripten does not support processes.");
    expect((await run("import os", "os.popen('ls').read()")).error).toBe("[Errno 138] emscripten does not support processes.");
    expect((await run("import ctypes", "ctypes.CDLL(None)")).error).toBe("module 'ctypes' is not available in the sandbox");
  });

  test("no network: socket, urllib and requests to a loopback port that is not allow-listed never connect", async () => {
    forbiddenConnections = 0;
    const net = "network access is disabled in the sandbox; use requests.get/requests.post, which reach only the URLs the sandbox allow-lists";
    expect((await run("import socket", `socket.create_connection(('127.0.0.1', ${forbiddenPort}), timeout=2)`)).error).toBe(net);
    expect((await run("import urllib.request", `urllib.request.urlopen('http://127.0.0.1:${forbiddenPort}/', timeout=2).read()`)).error).toBe(net);
    expect((await run("import http.client", `http.client.HTTPConnection('127.0.0.1', ${forbiddenPort}, timeout=2).request('GET', '/')`)).error).toBe(net);
    const blocked = await run("import requests", `requests.get('http://127.0.0.1:${forbiddenPort}/x', timeout=2).text`);
    expect(blocked.error).toBe(`the sandbox does not allow requests to 'http://127.0.0.1:${forbiddenPort}/x' (allowed: ${retrieverUrl})`);
    const caught = await run("import requests", `requests.post('http://example.com/', json={})`).then((x) => x.error);
    expect(caught).toBe(`the sandbox does not allow requests to 'http://example.com/' (allowed: ${retrieverUrl})`);
    const isConnectionError = await run(
      "import requests\ndef f(u):\n    try:\n        requests.get(u)\n    except requests.exceptions.ConnectionError as e:\n        return type(e).__name__",
      `f('http://127.0.0.1:${forbiddenPort}/')`,
    );
    expect(isConnectionError.result).toBe("ConnectionError");
    await Bun.sleep(300);
    expect(forbiddenConnections).toBe(0);
    // The listener itself works: a connection from the test process is counted.
    const sock = await Bun.connect({ hostname: "127.0.0.1", port: forbiddenPort, socket: { data() {} } });
    await Bun.sleep(100);
    sock.end();
    expect(forbiddenConnections).toBe(1);
  });

  test("an infinite loop times out, its worker is replaced, other calls are unaffected", async () => {
    const t0 = performance.now();
    const [loop, meanwhile] = await Promise.all([run("def spin():\n    while True:\n        pass", "spin()", 1), run("", "'still answering'")]);
    expect(loop).toEqual({ output: "", result: null, error: "execution timed out" });
    expect(flattenAnswer(loop)).toBe("error: execution timed out");
    expect(meanwhile.result).toBe("still answering");
    expect(performance.now() - t0).toBeLessThan(6000);
    expect((await run("", "6 * 7")).result).toBe(42);
    expect(pool.stats().replaced.timeout).toBeGreaterThanOrEqual(1);
  }, 30_000);

  test("a request's timeout is clamped to the pool's maximum", async () => {
    const t0 = performance.now();
    const small = await createLocalSandbox({ workers: 1, memoryMb: 128, maxTimeout: 1 });
    try {
      const t1 = performance.now();
      expect((await small.execute({ env: "while True: pass", call: "1", timeout: 1000 })).error).toBe("execution timed out");
      expect(performance.now() - t1).toBeLessThan(5000);
    } finally {
      await small.close();
    }
    expect(performance.now() - t0).toBeLessThan(60_000);
  }, 60_000);

  test("a memory bomb hits the memory limit; the worker is replaced", async () => {
    const a = await run("def bomb():\n    hoard = []\n    while True:\n        hoard.append(bytearray(10**7))", "bomb()", 10);
    expect(a).toEqual({ output: "", result: null, error: "memory limit exceeded: the call used more than 256 MB" });
    expect((await run("", "sum(range(10))")).result).toBe(45);
    // One 2 GiB allocation: the same answer, at once.
    expect((await run("", "len(bytearray(2**31 - 1))")).error).toBe("memory limit exceeded: the call used more than 256 MB");
    expect((await run("", "'after'")).result).toBe("after");
  }, 30_000);

  test("a huge print hits the output limit", async () => {
    expect(await run("", "print('x' * 2_000_000)")).toEqual({ output: "", result: null, error: "output limit exceeded: more than 1048576 characters printed" });
    const loop = await run("def chatty():\n    while True:\n        try:\n            print('y' * 1000)\n        except BaseException:\n            pass", "chatty()", 10);
    expect(loop.error).toBe("output limit exceeded: more than 1048576 characters printed");
    expect((await run("", "'ok'")).result).toBe("ok");
  }, 30_000);

  test("deep recursion: RecursionError, and past the stack the worker is replaced", async () => {
    expect((await run("def down(n):\n    return down(n + 1)", "down(0)")).error).toBe("maximum recursion depth exceeded");
    const deep = await run("import sys\nsys.setrecursionlimit(1_000_000)\nclass R:\n    def __repr__(self):\n        return repr(R())", "repr(R())", 10);
    expect(deep).toEqual({ output: "", result: null, error: "maximum recursion depth exceeded" });
    expect((await run("", "'alive'")).result).toBe("alive");
  }, 30_000);

  test("tool code that writes the channel device itself can only answer its own call; exiting the interpreter only ends its own worker", async () => {
    // The worker sets the call id and takes the last answer written: the harness's own, here.
    const forged = await run("import os\nfd = os.open('/dev/recall', os.O_RDWR)\nos.write(fd, b'{\"t\": \"answer\", \"id\": 999, \"result_json\": \"666\"}\\n')", "1");
    expect(forged).toEqual({ output: "", result: 1, error: null });
    const exited = await run("import os", "os._exit(0)");
    expect(exited.error).toBe("the sandbox worker stopped unexpectedly (fatal: Program terminated with exit(0)) and was replaced");
    expect((await run("", "'fine'")).result).toBe("fine");
  }, 30_000);

  test("a result too large to send is refused", async () => {
    const big = await createLocalSandbox({ workers: 1, memoryMb: 256, resultLimit: 1000 });
    try {
      expect((await big.execute({ env: "", call: "'z' * 5000" })).error).toBe("result too large: its JSON is more than 1000 bytes");
      expect((await big.execute({ env: "", call: "'z' * 10" })).result).toBe("zzzzzzzzzz");
    } finally {
      await big.close();
    }
  }, 60_000);
});
