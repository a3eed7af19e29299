"""recall sandbox call runner: the Python side of a sandbox worker.

It runs inside a worker process -- Pyodide (CPython in WebAssembly) or, with `--engine python`, the
system python3 under an OS sandbox -- before any tool code. It seals the interpreter (removes
Pyodide's JavaScript bridge, installs an audit hook that refuses network, process creation, native
code loading, heap walking, new audit hooks and sub-interpreters), then runs calls with ReCall's
semantics: run `env` in fresh globals, evaluate `response = <call>`, capture stdout, and answer
{output, result (JSON text, FastAPI-style encoding), error (str of the exception)}.

Nothing here is trusted to keep calls apart, because tool code can reach all of it (frames, the
requests shim, the channel): each call starts from a fresh interpreter instead. Pyodide: the worker's
JavaScript side owns the protocol with the host and, after every call, copies the interpreter's
memory back from the copy it took when this setup finished, and gives the file system fresh scratch
directories. `--engine python`: every call gets a fresh process. So tool code can change this runner
only for its own call, and the host checks every answer's caps itself.

Messages (one JSON object per line):
  in:  {"t": "init", ...settings} (once, at setup), {"t": "call", "id", "env", "call"}, {"t": "http_result", ...}
  out: {"t": "answer", "id", "output", "result_json", "error", "limit"}, {"t": "limit", "what": "output"},
       {"t": "http", "id", "method", "url", "headers", "body_b64", "timeout"};
       Pyodide setup ends with {"t": "runner", "address", "python"}, `--engine python`'s with {"t": "ready", ...}.
Under Pyodide the channel is the device /dev/recall, whose other end is the worker's JavaScript (it
sets the call ids and relays to the host); under `--engine python` it is the process's stdin/stdout.
"""

import base64
import builtins
import collections
import dataclasses
import datetime
import decimal
import enum
import io
import json
import math
import os
import sys
import types
import uuid

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
        if type(s) is not str:
            s = str.__str__(s)  # an exact copy: a subclass's __len__ cannot hide its size
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
# CPython's own test helpers (`_testcapi.run_in_subinterp` runs code under no audit hook, others poke at
# memory) and the sub-interpreter modules (a new interpreter starts without this process's audit hooks).
_TEST_MODULES = ("_testcapi", "_testinternalcapi", "_testbuffer", "_testclinic", "_testclinic_limited",
                 "_testlimitedcapi", "_testimportmultiple", "_testmultiphase", "_testsinglephase",
                 "_testexternalinspection", "_xxtestfuzz", "_remote_debugging", "xxsubtype", "_xxsubinterpreters",
                 "_interpreters", "_interpchannels", "_interpqueues", "_xxinterpchannels")


class _Refused(BaseException):
    """Raised when tool code tries to add an audit hook (not an Exception, which CPython would swallow)."""


def _install_audit_hook(engine):
    """Refuse what tool code must not do. The hook keeps everything it needs in default arguments
    and constants, so tool code cannot change its behaviour by editing builtins or module globals;
    once added, an audit hook cannot be removed."""
    blocked = _BLOCKED_MODULES + _TEST_MODULES + (_NATIVE_MODULES if engine == "pyodide" else ())
    net_msg = ("network access is disabled in the sandbox; use requests.get/requests.post, which reach "
               "only the URLs the sandbox allow-lists")
    proc_msg = "creating processes is disabled in the sandbox"
    native_msg = "loading native code (ctypes) is disabled in the sandbox"
    heap_msg = "walking the interpreter's heap (gc.get_objects and friends) is disabled in the sandbox"
    hook_msg = "adding audit hooks is disabled in the sandbox"
    refused = _Refused
    interp_msg = "creating sub-interpreters is disabled in the sandbox"

    def hook(event, args, _blocked=blocked, _blocked_dots=tuple(m + "." for m in blocked), _str=str,
             _type=type, _startswith=str.startswith, _ImportError=ImportError, _PermissionError=PermissionError,
             _net=net_msg, _proc=proc_msg, _native=native_msg, _heap=heap_msg, _hook=hook_msg, _interp=interp_msg,
             _Refused=refused,
             _native_events=engine == "pyodide"):
        if event == "import":
            name = args[0]
            if _type(name) is not _str:
                raise _ImportError("module names must be plain strings in the sandbox")
            if name in _blocked or _startswith(name, _blocked_dots):
                raise _ImportError(f"module '{name}' is not available in the sandbox")
            return
        if event == "sys.addaudithook":
            # CPython swallows an Exception raised here (the hook is then silently not added); this one reaches the caller.
            raise _Refused(_hook)
        if event == "cpython.PyInterpreterState_New":
            raise _PermissionError(_interp)
        if event == "socket.__new__":
            # Local socket pairs (asyncio's self-pipe) are fine for real CPython; Pyodide needs none
            # (its asyncio has no self-pipe) and its sockets live in the worker's JavaScript.
            if args[1] == 1 and not _native_events:
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
    """Import every builtin module and what tools commonly use, so that no call pays for them: each
    Pyodide call starts from the memory copied after this (a module a call imports is gone for the
    next), and Pyodide's start-up snapshot is taken after it too."""
    for name in sys.builtin_module_names:
        if name in _BLOCKED_MODULES or name in _TEST_MODULES or (engine == "pyodide" and name in _NATIVE_MODULES):
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


# ---------------------------------------------------------------- serving

def _safe_str(e):
    try:
        return str(e)
    except BaseException:
        return f"<{type(e).__name__}: str() failed>"


class _Runner:
    """Runs one call and says its answer. It keeps no state from call to call: there is no next call
    in this interpreter state (see the module docstring)."""

    def __init__(self, engine, chan, init):
        self.engine = engine
        self.chan = chan
        self.output_limit = int(init["output_limit"])
        self.result_limit = int(init["result_limit"])
        self.call_id = None
        mod = types.ModuleType("requests")
        mod.__dict__["_transport"] = self.transport
        exec(compile(init["requests_src"], "<requests>", "exec"), mod.__dict__)
        sys.modules["requests"] = mod
        sys.modules["requests.exceptions"] = mod.exceptions

    def transport(self, method, url, headers, body, timeout):
        """The requests shim's way out: the host performs allow-listed requests, one at a time."""
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

    def serve_one(self):
        """Reads one call from the channel and writes its answer (what Pyodide's worker calls per call)."""
        try:
            msg = self.chan.recv()
        except EOFError:
            return
        if msg.get("t") == "call":
            self.chan.send(self.run(msg))

    def run(self, msg):
        self.call_id = msg.get("id")
        if self.engine == "pyodide":
            import random
            random.seed()  # from os.urandom: the copied memory would give every call the same sequence
        writer = _CappedWriter(self.output_limit, lambda: self.chan.send({"t": "limit", "what": "output"}))
        result_json = None
        error = None
        limit = None
        saved = (sys.stdout, sys.stderr, sys.stdin)
        sys.stdout = writer
        try:
            env = msg.get("env")
            call = msg.get("call")
            if not isinstance(env, str) or not isinstance(call, str):
                raise TypeError("env and call must be strings")
            g = {"__name__": "__main__"}
            exec(compile(env, "<env>", "exec"), g)
            exec(compile(f"response = {call}", "<call>", "exec"), g)
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


def _settle(init):
    home = init.get("home") or os.getcwd()
    os.makedirs(home, exist_ok=True)
    os.chdir(home)
    os.environ.clear()
    os.environ.update({"HOME": home, "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
                       "USER": "sandbox", "LOGNAME": "sandbox"})


def setup_pyodide():
    """Called once by the Pyodide worker before its memory is copied: everything every call starts from."""
    fd = os.open("/dev/recall", os.O_RDWR)
    chan = _Channel(fd, fd)
    init = chan.recv()
    _settle(init)
    _seal_pyodide()
    runner = _Runner("pyodide", chan, init)
    preload_modules("pyodide")
    for name in _TEST_MODULES:
        sys.modules.pop(name, None)
    _seal_imports("pyodide")
    _install_audit_hook("pyodide")
    entry = runner.serve_one
    # The worker keeps `entry` alive with a reference of its own and calls it by address once per call.
    chan.send({"t": "runner", "address": id(entry), "python": sys.version.split()[0]})


def main(engine):
    """`--engine python`: set up, serve ONE call, then wait to be killed (the host never sends a second)."""
    fd_in, fd_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    chan = _Channel(fd_in, fd_out)
    init = chan.recv()
    try:  # a process group of its own, which the host kills after the call (children included)
        os.setpgid(0, 0)
    except OSError:
        pass
    if sys.platform == "linux":
        try:  # die with the pool, even mid-call (bubblewrap's --die-with-parent does it when present)
            import ctypes
            ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)
        except Exception:
            pass
    if init.get("memory_bytes"):
        import resource
        with open("/proc/self/statm") as f:
            base = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = base + int(init["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    _settle(init)
    runner = _Runner(engine, chan, init)
    _install_audit_hook(engine)
    chan.send({"t": "ready", "engine": engine, "python": sys.version.split()[0]})
    try:
        msg = chan.recv()
    except EOFError:
        return
    if msg.get("t") == "call":
        chan.send(runner.run(msg))
    try:
        while True:
            chan.recv()  # only to notice the host closing the channel
    except BaseException:
        pass
    os._exit(0)
