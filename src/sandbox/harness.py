"""recall sandbox harness: the trusted Python side of a sandbox worker.

It runs inside a worker process -- Pyodide (CPython in WebAssembly) or, with `--engine python`, the
system python3 under an OS sandbox -- before any tool code. It seals the interpreter (removes
Pyodide's JavaScript bridge, installs an audit hook that refuses network, process creation, native
code loading and heap walking), then serves calls from the host channel one at a time with
ReCall's semantics: run `env` in fresh globals, evaluate `response = <call>`, capture stdout, and
answer {output, result (JSON text, FastAPI-style encoding), error (str of the exception)}. Between
calls it puts back the interpreter state a call could have changed (builtins, module attributes,
newly imported modules, sys hooks and paths, environment, working directory, scratch files).

Wire format (one JSON object per line, both ways):
  host -> worker: {"t": "init", ...settings}, {"t": "call", "id", "env", "call"}, {"t": "http_result", ...}
  worker -> host: {"t": "ready", ...}, {"t": "answer", "id", "output", "result_json", "error", "limit"},
                  {"t": "http", "id", "method", "url", "headers", "body_b64", "timeout"},
                  {"t": "idle"} once the state a call could have changed is put back (after its answer)
The host enforces the wall-clock limit (it kills the worker); this side enforces the output and
result caps and reports them as `limit`.
"""

import base64
import builtins
import collections
import dataclasses
import datetime
import decimal
import enum
import functools
import io
import itertools
import json
import math
import operator
import os
import shutil
import sys
import types
import uuid

# Compiled env and call code, keyed by the source itself: code objects are immutable and the cache
# lives inside lru_cache's C state, so tool code can neither read it nor plant a wrong entry.
_compile = functools.lru_cache(maxsize=256)(compile)
_json_dumps = json.dumps
_json_loads = json.loads
_os_read = os.read
_os_write = os.write


class _Channel:
    """Newline-delimited JSON over a pair of file descriptors."""

    def __init__(self, fd_in, fd_out):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.buf = bytearray()

    def send(self, obj):
        data = memoryview((_json_dumps(obj, ensure_ascii=True) + "\n").encode("ascii"))
        while data:
            n = _os_write(self.fd_out, data)
            data = data[n:]

    def recv(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return _json_loads(line)
            chunk = _os_read(self.fd_in, 1 << 20)
            if not chunk:
                raise EOFError("host closed the channel")
            self.buf += chunk


class _OutputLimit(BaseException):
    """Raised into tool code when it prints past the output cap."""


class _CappedWriter(io.TextIOBase):
    """sys.stdout during a call: keeps up to `limit` characters, then refuses."""

    def __init__(self, limit, on_exceed):
        self.parts = []
        self.size = 0
        self.limit = limit
        self.exceeded = False
        self.on_exceed = on_exceed

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if self.exceeded or self.size + len(s) > self.limit:
            if not self.exceeded:
                self.exceeded = True
                self.on_exceed()  # the host ends the call now, even if tool code swallows the exception
            raise _OutputLimit(f"output limit exceeded: more than {self.limit} characters printed")
        self.parts.append(s)
        self.size += len(s)
        return len(s)

    def getvalue(self):
        return "".join(self.parts)


# ---------------------------------------------------------------- result encoding (FastAPI-like)

def _float(x):
    # JSON has no NaN/Infinity: they become the text Python prints for them.
    return x if math.isfinite(x) else str(x)


def _key(k):
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, enum.Enum):
        return _key(k.value)
    if isinstance(k, int):
        return str(int(k))
    if isinstance(k, float):
        return repr(k) if math.isfinite(k) else str(k)
    return str(k)


def _encode(o, depth=0, seen=None):
    """What FastAPI's jsonable_encoder makes of a value: tuples, sets and generators become lists,
    bytes are decoded, dates become ISO text, enums their value, dataclasses dicts; anything else
    that JSON cannot hold becomes its str()."""
    if o is None or o is True or o is False:
        return o
    t = type(o)
    if t is str:
        return o
    if t is int:
        return o
    if t is float:
        return _float(o)
    if depth > 200:
        return str(o)
    if isinstance(o, enum.Enum):
        return _encode(o.value, depth + 1, seen)
    if isinstance(o, str):
        return str.__str__(o)
    if isinstance(o, bool):
        return bool(o)
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        return _float(float(o))
    if seen is None:
        seen = set()
    if id(o) in seen:
        return str(o)
    if isinstance(o, dict):
        seen.add(id(o))
        out = {_key(k): _encode(v, depth + 1, seen) for k, v in o.items()}
        seen.discard(id(o))
        return out
    if isinstance(o, (list, tuple, set, frozenset, collections.deque, types.GeneratorType,
                      type({}.keys()), type({}.values()), type({}.items()))):
        seen.add(id(o))
        out = [_encode(v, depth + 1, seen) for v in o]
        seen.discard(id(o))
        return out
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return _encode(dataclasses.asdict(o), depth + 1, seen)
    if isinstance(o, (bytes, bytearray)):
        try:
            return bytes(o).decode()
        except UnicodeDecodeError:
            return str(o)
    if isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
        return o.isoformat()
    if isinstance(o, datetime.timedelta):
        return o.total_seconds()
    if isinstance(o, decimal.Decimal):
        if not o.is_finite():
            return str(o)
        return int(o) if o.as_tuple().exponent >= 0 else _float(float(o))
    if isinstance(o, uuid.UUID):
        return str(o)
    return str(o)


# ---------------------------------------------------------------- sealing

_BLOCKED_MODULES = ("js", "pyodide_js", "pyodide", "_pyodide", "_pyodide_core", "micropip", "pyodide_http")
_NATIVE_MODULES = ("ctypes", "_ctypes")


def _install_audit_hook(engine):
    """Refuse what tool code must not do. The hook keeps everything it needs in default arguments
    and constants, so tool code cannot change its behaviour by editing builtins or module globals;
    once added, an audit hook cannot be removed."""
    blocked = _BLOCKED_MODULES + (_NATIVE_MODULES if engine == "pyodide" else ())
    net_msg = ("network access is disabled in the sandbox; use requests.get/requests.post, which reach "
               "only the URLs the sandbox allow-lists")
    proc_msg = "creating processes is disabled in the sandbox"
    native_msg = "loading native code (ctypes) is disabled in the sandbox"
    heap_msg = "walking the interpreter's heap (gc.get_objects and friends) is disabled in the sandbox"

    def hook(event, args, _blocked=blocked, _blocked_dots=tuple(m + "." for m in blocked), _str=str,
             _type=type, _startswith=str.startswith, _ImportError=ImportError, _PermissionError=PermissionError,
             _net=net_msg, _proc=proc_msg, _native=native_msg, _heap=heap_msg,
             _native_events=engine == "pyodide"):
        if event == "import":
            name = args[0]
            if _type(name) is not _str:
                raise _ImportError("module names must be plain strings in the sandbox")
            if name in _blocked or _startswith(name, _blocked_dots):
                raise _ImportError(f"module '{name}' is not available in the sandbox")
            return
        if event == "socket.__new__":
            # Local socket pairs (asyncio's self-pipe) are fine; anything that could reach a network is not.
            if args[1] == 1:
                return
            raise _PermissionError(_net)
        if _startswith(event, ("socket.", "urllib.Request", "http.client.", "ftplib.", "smtplib.", "poplib.",
                               "imaplib.", "nntplib.", "telnetlib.", "ssl.", "webbrowser.")):
            raise _PermissionError(_net)
        if event in ("os.system", "subprocess.Popen", "os.fork", "os.forkpty", "pty.spawn", "os.kill", "os.killpg",
                     "os.startfile") or _startswith(event, ("os.exec", "os.spawn", "os.posix_spawn")):
            raise _PermissionError(_proc)
        if _native_events and _startswith(event, "ctypes."):
            raise _PermissionError(_native)
        if event in ("gc.get_objects", "gc.get_referrers", "gc.get_referents"):
            raise _PermissionError(_heap)

    sys.addaudithook(hook)


def _seal_pyodide():
    """Take Pyodide's JavaScript bridge out of Python's reach: no `js`, `pyodide_js`, `pyodide.*`,
    `_pyodide*` modules, no finder that could make them again, nothing left in __main__."""
    webloop = sys.modules.get("pyodide.webloop")
    if webloop is not None:
        import asyncio
        import time
        asyncio.run = getattr(webloop, "_orig_run", asyncio.run)
        time.sleep = getattr(webloop, "_orig_sleep", time.sleep)
        for reset in ("_set_running_loop", "_set_event_loop"):
            try:
                getattr(asyncio.events, reset)(None)
            except Exception:
                pass
        asyncio.events._event_loop_policy = None
    for name in list(sys.modules):
        if name in _BLOCKED_MODULES or name.startswith(tuple(m + "." for m in _BLOCKED_MODULES)):
            mod = sys.modules.pop(name)
            if type(mod) is types.ModuleType and name != "_pyodide_core":
                for value in list(mod.__dict__.values()):
                    # Classes outlive their module (object.__subclasses__ finds them): empty them too.
                    if isinstance(value, type) and value.__module__ == name:
                        for attr in list(vars(value)):
                            if not (attr.startswith("__") and attr.endswith("__")):
                                try:
                                    delattr(value, attr)
                                except (AttributeError, TypeError):
                                    pass
                mod.__dict__.clear()
    # Objects of the bridge that other modules kept a reference to (e.g. json.encoder._JSNULL).
    for mod in list(sys.modules.values()):
        d = getattr(mod, "__dict__", None)
        if type(mod) is not types.ModuleType or not isinstance(d, dict):
            continue
        for k, v in list(d.items()):
            vmod = getattr(type(v), "__module__", "") or ""
            if not isinstance(v, type) and vmod.startswith(("pyodide", "_pyodide")):
                d[k] = None
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not (getattr(f, "__module__", None) or type(f).__module__).startswith("_pyodide")]
    sys.path_hooks[:] = [h for h in sys.path_hooks
                         if not str(getattr(h, "__module__", "") or "").startswith("_pyodide")]
    sys.path_importer_cache.clear()
    sys.excepthook = sys.__excepthook__
    sys.displayhook = sys.__displayhook__
    sys.unraisablehook = sys.__unraisablehook__
    sys.breakpointhook = sys.__breakpointhook__
    main = sys.modules["__main__"].__dict__
    for k in list(main):
        if k not in ("__name__", "__doc__", "__builtins__"):
            del main[k]
    sys.executable = ""
    sys.argv[:] = [""]


PRELOADED = ("abc", "argparse", "array", "ast", "base64", "bisect", "calendar", "cmath", "collections",
             "collections.abc", "colorsys", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
             "difflib", "enum", "fractions", "functools", "hashlib", "heapq", "html", "itertools", "json",
             "keyword", "math", "numbers", "operator", "pprint", "random", "re", "statistics", "string",
             "struct", "textwrap", "time", "typing", "unicodedata", "urllib.parse", "uuid", "zlib")


def preload_modules(engine):
    """Import every builtin module and what tools commonly use. Modules imported before the first
    call are the shared baseline every call starts from (put back after each call). Pyodide's
    interpreter snapshot is taken after this, so workers restored from it skip the imports."""
    for name in sys.builtin_module_names:
        if name in _BLOCKED_MODULES or (engine == "pyodide" and name in _NATIVE_MODULES):
            continue
        try:
            __import__(name)
        except Exception:
            pass
    for name in PRELOADED:
        try:
            __import__(name)
        except Exception:
            pass


def _seal_imports(engine):
    """No new builtin or extension modules once tool code can run (they would bypass the import
    audit); asyncio works without the loopback self-pipe Emscripten cannot give it."""
    if engine != "pyodide":
        return
    import _imp
    try:
        import asyncio.selector_events as selector_events
        loop_cls = selector_events.BaseSelectorEventLoop
        loop_cls._make_self_pipe = lambda self: None
        loop_cls._close_self_pipe = lambda self: None
        loop_cls._write_to_self = lambda self: None
    except Exception:
        pass

    def create_builtin(spec, *args):
        raise ImportError(f"module '{spec.name}' is not available in the sandbox")

    def create_dynamic(spec, *args):
        raise ImportError(f"loading the extension module '{spec.name}' is disabled in the sandbox")

    _imp.create_builtin = create_builtin
    _imp.create_dynamic = create_dynamic


# ---------------------------------------------------------------- state between calls

_is = operator.is_
_chain = itertools.chain


class _DictSnapshot:
    """A dict's contents at one moment, and how to put them back. The unchanged case (nearly every
    module after nearly every call) is found by identity alone, in C, without running any code a
    tool could have planted (no __eq__ or __hash__ of its objects)."""

    __slots__ = ("d", "keys", "values", "copy")

    def __init__(self, d):
        self.d = d
        self.keys = tuple(d)
        self.values = tuple(d.values())
        self.copy = dict(d)

    def restore(self):
        d = self.d
        if len(d) == len(self.keys) and all(map(_is, d.values(), self.values)) and all(map(_is, d, self.keys)):
            return
        d.clear()
        d.update(self.copy)


class _Baseline:
    """The interpreter state every call starts from, and how to put it back."""

    def __init__(self, home, scratch_dirs):
        self.home = home
        self.scratch_dirs = scratch_dirs
        self.keep = {home, *scratch_dirs}
        self.modules = dict(sys.modules)
        self.module_dicts = [_DictSnapshot(m.__dict__) for m in self.modules.values()
                             if isinstance(m, types.ModuleType)]
        self._index_module_dicts()
        self.sys_lists = [(lst, list(lst)) for lst in (sys.path, sys.meta_path, sys.path_hooks, sys.argv)]
        self.environ = dict(os.environ)
        self.recursion_limit = sys.getrecursionlimit()
        roots = [p for p in sys.path if p and os.path.isabs(p)]
        self.scratch_roots = tuple(os.path.join(d, "") for d in self.keep)
        self.library_roots = tuple(os.path.join(p, "") if not p.endswith(".zip") else p + os.sep
                                   for p in roots if not p.startswith(self.scratch_roots))
        self.int_max_str_digits = sys.get_int_max_str_digits()

    def restore(self):
        imported = [(name, mod) for name, mod in list(sys.modules.items()) if name not in self.modules]
        for name, _ in imported:
            del sys.modules[name]
        for name, mod in self.modules.items():
            if sys.modules.get(name) is not mod:
                sys.modules[name] = mod
        if not self._module_dicts_unchanged():
            for snap in self.module_dicts:
                snap.restore()
        for lst, snap in self.sys_lists:
            if len(lst) != len(snap) or not all(map(_is, lst, snap)):
                lst[:] = snap
        sys.path_importer_cache.clear()
        sys.settrace(None)
        sys.setprofile(None)
        sys.setrecursionlimit(self.recursion_limit)
        sys.set_int_max_str_digits(self.int_max_str_digits)
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        try:
            if os.getcwd() != self.home:
                os.chdir(self.home)
        except OSError:
            os.makedirs(self.home, exist_ok=True)
            os.chdir(self.home)
        self._clean_scratch()
        self._adopt([name for name, mod in imported if self._is_library(mod)])

    def _index_module_dicts(self):
        self.dicts = [snap.d for snap in self.module_dicts]
        self.lens = tuple(map(len, self.dicts))
        self.flat_keys = tuple(_chain.from_iterable(self.dicts))
        self.flat_values = tuple(_chain.from_iterable(map(dict.values, self.dicts)))

    def _module_dicts_unchanged(self):
        """One pass in C over every module attribute, by identity: the common case costs ~0.2 ms."""
        dicts = self.dicts
        return (tuple(map(len, dicts)) == self.lens
                and all(map(_is, _chain.from_iterable(map(dict.values, dicts)), self.flat_values))
                and all(map(_is, _chain.from_iterable(dicts), self.flat_keys)))

    def _is_library(self, mod):
        """A module that came from the standard library or installed packages (not from a file a tool wrote)."""
        spec = getattr(mod, "__spec__", None) if type(mod) is types.ModuleType else None
        origin = getattr(spec, "origin", None)
        if type(origin) is not str:
            return False
        if origin in ("built-in", "frozen"):
            return True
        return origin.startswith(self.library_roots) and not origin.startswith(self.scratch_roots)

    def _adopt(self, names):
        """Import again, cleanly, the library modules the last call imported, and make them part of
        the baseline: later calls get them without paying for the import."""
        if not names:
            return
        before = set(sys.modules)
        for name in sorted(names, key=len):
            try:
                __import__(name)
            except BaseException:
                pass
        for name in [n for n in sys.modules if n not in before]:
            mod = sys.modules[name]
            self.modules[name] = mod
            if isinstance(mod, types.ModuleType):
                self.module_dicts.append(_DictSnapshot(mod.__dict__))
        self._index_module_dicts()

    def _clean_scratch(self):
        for d in self.scratch_dirs:
            try:
                entries = os.listdir(d)
            except OSError:
                os.makedirs(d, exist_ok=True)
                continue
            for e in entries:
                p = os.path.join(d, e)
                if p in self.keep:
                    continue
                try:
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        os.remove(p)
                except OSError:
                    pass


# ---------------------------------------------------------------- serving

def _safe_str(e):
    try:
        return str(e)
    except BaseException:
        return f"<{type(e).__name__}: str() failed>"


class _Harness:
    def __init__(self, engine, chan, init):
        self.engine = engine
        self.chan = chan
        self.output_limit = int(init["output_limit"])
        self.result_limit = int(init["result_limit"])
        self.requests_code = compile(init["requests_src"], "<requests>", "exec")
        self.call_id = None

    def transport(self, method, url, headers, body, timeout):
        """The requests shim's way out: the host performs allow-listed requests."""
        self.chan.send({"t": "http", "id": self.call_id, "method": method, "url": url, "headers": headers,
                        "body_b64": None if body is None else base64.b64encode(body).decode("ascii"),
                        "timeout": timeout})
        msg = self.chan.recv()
        if msg.get("t") != "http_result":
            raise RuntimeError("sandbox channel out of step")
        if not msg.get("ok"):
            return {"ok": False, "kind": str(msg.get("kind")), "message": str(msg.get("message"))}
        return {"ok": True, "status": int(msg["status"]), "reason": str(msg.get("reason", "")),
                "headers": {str(k): str(v) for k, v in msg.get("headers", {}).items()},
                "body": base64.b64decode(msg.get("body_b64") or ""), "url": str(msg.get("url", url))}

    def fresh_requests(self):
        mod = types.ModuleType("requests")
        mod.__dict__["_transport"] = self.transport
        exec(self.requests_code, mod.__dict__)
        sys.modules["requests"] = mod
        sys.modules["requests.exceptions"] = mod.exceptions

    def run(self, msg):
        self.call_id = msg.get("id")
        writer = _CappedWriter(self.output_limit, lambda: self.chan.send({"t": "limit", "what": "output"}))
        result_json = None
        error = None
        limit = None
        saved = (sys.stdout, sys.stderr, sys.stdin)
        sys.stdout = writer
        try:
            self.fresh_requests()
            env = msg.get("env")
            call = msg.get("call")
            if not isinstance(env, str) or not isinstance(call, str):
                raise TypeError("env and call must be strings")
            g = {"__name__": "__main__"}
            exec(_compile(env, "<env>", "exec"), g)
            exec(_compile(f"response = {call}", "<call>", "exec"), g)
            result = g.get("response")
            encoded = _encode(result)
            if encoded is not None:
                result_json = _json_dumps(encoded, ensure_ascii=True, allow_nan=False)
                if len(result_json) > self.result_limit:
                    result_json = None
                    limit = "result"
                    error = f"result too large: its JSON is more than {self.result_limit} bytes"
        except _OutputLimit as e:
            error = _safe_str(e)
        except MemoryError as e:
            limit = "memory"  # the host answers with the limit and replaces the worker
            error = _safe_str(e)
        except BaseException as e:
            error = _safe_str(e)
        finally:
            sys.stdout, sys.stderr, sys.stdin = saved
        if writer.exceeded:
            limit = "output"
            error = f"output limit exceeded: more than {self.output_limit} characters printed"
            result_json = None
        if limit == "memory":
            result_json = None
        output = "" if limit else writer.getvalue()
        return {"t": "answer", "id": self.call_id, "output": output, "result_json": result_json,
                "error": error, "limit": limit}


def main(engine):
    if engine == "pyodide":
        fd = os.open("/dev/recall", os.O_RDWR)
        chan = _Channel(fd, fd)
    else:
        fd_in, fd_out = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        chan = _Channel(fd_in, fd_out)
    init = chan.recv()
    home = init.get("home") or os.getcwd()
    os.makedirs(home, exist_ok=True)
    os.chdir(home)
    if engine == "python" and sys.platform == "linux":
        try:  # die with the pool, even mid-call (bubblewrap's --die-with-parent does it when present)
            import ctypes
            ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)
        except Exception:
            pass
    if engine == "python" and init.get("memory_bytes"):
        import resource
        with open("/proc/self/statm") as f:
            base = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = base + int(init["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.environ.clear()
    os.environ.update({"HOME": home, "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
                       "USER": "sandbox", "LOGNAME": "sandbox"})
    if engine == "pyodide":
        _seal_pyodide()
    harness = _Harness(engine, chan, init)
    preload_modules(engine)
    _seal_imports(engine)
    _install_audit_hook(engine)
    scratch = [d for d in init.get("scratch") or [home] if os.path.isdir(d)]
    baseline = _Baseline(home, scratch)
    chan.send({"t": "ready", "engine": engine, "python": sys.version.split()[0]})
    while True:
        try:
            msg = chan.recv()
        except EOFError:
            return
        if msg.get("t") != "call":
            continue
        chan.send(harness.run(msg))
        baseline.restore()
        chan.send({"t": "idle"})
