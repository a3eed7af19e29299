"""The `requests` module that tool code sees inside the recall sandbox.

There is no network inside the sandbox. This module sends each request over the worker's channel
to the host, which performs it only when the URL's origin is on the sandbox's allow-list, with a
timeout and a size cap, and returns the response. Everything else fails with
requests.exceptions.ConnectionError (or Timeout) carrying the host's reason.

A fresh copy of this module is made for every call; the harness puts `_transport` in its namespace.
"""

import json as _json
import sys as _sys
import types as _types
from urllib.parse import urlencode as _urlencode, urlsplit as _urlsplit, urlunsplit as _urlunsplit

__version__ = "2.32.3"


class RequestException(IOError):
    def __init__(self, *args, request=None, response=None):
        super().__init__(*args)
        self.request = request
        self.response = response


class ConnectionError(RequestException):
    pass


class HTTPError(RequestException):
    pass


class Timeout(RequestException):
    pass


class ConnectTimeout(ConnectionError, Timeout):
    pass


class ReadTimeout(Timeout):
    pass


class TooManyRedirects(RequestException):
    pass


class InvalidURL(RequestException, ValueError):
    pass


class MissingSchema(RequestException, ValueError):
    pass


class InvalidSchema(RequestException, ValueError):
    pass


class JSONDecodeError(RequestException, ValueError):
    pass


exceptions = _types.ModuleType("requests.exceptions")
for _name in ("RequestException", "ConnectionError", "HTTPError", "Timeout", "ConnectTimeout", "ReadTimeout",
              "TooManyRedirects", "InvalidURL", "MissingSchema", "InvalidSchema", "JSONDecodeError"):
    setattr(exceptions, _name, globals()[_name])


class CaseInsensitiveDict(dict):
    """Header mapping with case-insensitive lookups (keys keep the case the server sent)."""

    def _find(self, key):
        low = str(key).lower()
        for k in dict.keys(self):
            if k.lower() == low:
                return k
        return None

    def __getitem__(self, key):
        k = self._find(key)
        if k is None:
            raise KeyError(key)
        return dict.__getitem__(self, k)

    def __contains__(self, key):
        return self._find(key) is not None

    def get(self, key, default=None):
        k = self._find(key)
        return default if k is None else dict.__getitem__(self, k)


class Response:
    def __init__(self, status_code, reason, headers, content, url):
        self.status_code = status_code
        self.reason = reason
        self.headers = CaseInsensitiveDict(headers)
        self.content = content
        self.url = url
        self.encoding = self._charset() or "utf-8"
        self.history = []

    def _charset(self):
        ctype = self.headers.get("content-type", "")
        for part in ctype.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                return v.strip('"')
        return None

    @property
    def text(self):
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self, **kwargs):
        try:
            return _json.loads(self.text, **kwargs)
        except ValueError as e:
            raise JSONDecodeError(str(e), response=self) from None

    @property
    def ok(self):
        return self.status_code < 400

    def raise_for_status(self):
        if 400 <= self.status_code < 600:
            kind = "Client" if self.status_code < 500 else "Server"
            raise HTTPError(f"{self.status_code} {kind} Error: {self.reason} for url: {self.url}", response=self)

    def iter_content(self, chunk_size=1, decode_unicode=False):
        data = self.text if decode_unicode else self.content
        step = chunk_size or len(data) or 1
        for i in range(0, len(data), step):
            yield data[i:i + step]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return f"<Response [{self.status_code}]>"


def _with_params(url, params):
    if not params:
        return url
    if isinstance(params, (dict, list, tuple)):
        query = _urlencode(params, doseq=True)
    else:
        query = str(params)
    parts = _urlsplit(url)
    q = parts.query + ("&" if parts.query and query else "") + query
    return _urlunsplit((parts.scheme, parts.netloc, parts.path, q, parts.fragment))


def request(method, url, params=None, data=None, headers=None, json=None, timeout=None, **kwargs):
    if not isinstance(url, (str, bytes)):
        raise InvalidURL(f"Invalid URL {url!r}")
    url = url.decode() if isinstance(url, bytes) else url
    scheme = _urlsplit(url).scheme.lower()
    if not scheme:
        raise MissingSchema(f"Invalid URL '{url}': No scheme supplied. Perhaps you meant https://{url}?")
    if scheme not in ("http", "https"):
        raise InvalidSchema(f"No connection adapters were found for '{url}'")
    url = _with_params(url, params)
    hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
    body = None
    if json is not None and data is None:
        body = _json.dumps(json).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    elif data is not None:
        if isinstance(data, dict) or (isinstance(data, (list, tuple)) and all(isinstance(x, tuple) for x in data)):
            body = _urlencode(data, doseq=True).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray)):
            body = bytes(data)
        else:
            body = b"".join(bytes(x) for x in data)
    if isinstance(timeout, tuple):
        timeout = sum(t for t in timeout if t)
    answer = _transport(str(method).upper(), url, hdrs, body, None if timeout is None else float(timeout))
    if not answer["ok"]:
        kind, message = answer["kind"], answer["message"]
        if kind == "timeout":
            raise ReadTimeout(message)
        if kind == "redirects":
            raise TooManyRedirects(message)
        raise ConnectionError(message)
    return Response(answer["status"], answer["reason"], answer["headers"], answer["body"], answer["url"])


def get(url, params=None, **kwargs):
    return request("GET", url, params=params, **kwargs)


def options(url, **kwargs):
    return request("OPTIONS", url, **kwargs)


def head(url, **kwargs):
    return request("HEAD", url, **kwargs)


def post(url, data=None, json=None, **kwargs):
    return request("POST", url, data=data, json=json, **kwargs)


def put(url, data=None, **kwargs):
    return request("PUT", url, data=data, **kwargs)


def patch(url, data=None, **kwargs):
    return request("PATCH", url, data=data, **kwargs)


def delete(url, **kwargs):
    return request("DELETE", url, **kwargs)


class Session:
    def __init__(self):
        self.headers = {}
        self.params = {}

    def request(self, method, url, **kwargs):
        headers = dict(self.headers)
        headers.update(kwargs.pop("headers", None) or {})
        params = dict(self.params)
        params.update(kwargs.pop("params", None) or {})
        return request(method, url, headers=headers, params=params or None, **kwargs)

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, data=None, json=None, **kwargs):
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url, data=None, **kwargs):
        return self.request("PUT", url, data=data, **kwargs)

    def delete(self, url, **kwargs):
        return self.request("DELETE", url, **kwargs)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def session():
    return Session()


codes = _types.SimpleNamespace(ok=200, created=201, no_content=204, bad_request=400, unauthorized=401,
                               forbidden=403, not_found=404, server_error=500)
