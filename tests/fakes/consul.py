"""A strict loopback fake of Consul's KV HTTP API, as py-consul (``import consul``) uses it.

No real Consul can be installed here, so this speaks the wire protocol closely enough that the
real client runs unchanged::

    with FakeConsul.start(acl={"tok": [("", "write")]}) as fake:
        c = consul.Consul(host="127.0.0.1", port=fake.port, token="tok")
        c.kv.put("demo01/config/x", b"1")

Strict like the real agent: ``X-Consul-Index`` on every answer (404s included), ``Value`` as
base64 (null when empty), ``?recurse``, ``?keys`` (+ ``separator``), ``?cas`` answering
``true``/``false`` (0 = only if absent), blocking ``?index=&wait=``, 413 beyond the 512 KiB
``kv_max_value_size``, 400 for malformed numbers or durations, 405 for other methods. With an
ACL table (token -> [(key prefix, "read"|"write"|"deny")], longest prefix wins, anonymous when
no token), a refused single-key request gets 403 ``Permission denied`` and lists are filtered.

Test controls: ``put``/``get``/``delete`` in-process, ``delay`` (a slow agent),
``interleave(key, value)`` (another writer changes ``key`` just before Marvin's next write to
it reaches the store: a CAS race on the wire), ``requests`` (what was asked), ``stop()``.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["FakeConsul", "MAX_VALUE", "fake_consul"]

MAX_VALUE = 512 * 1024  # Consul's default kv_max_value_size
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")


@dataclass
class _Entry:
    value: bytes
    create: int
    modify: int
    flags: int = 0


class _Bad(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _duration(text: str) -> float:
    if not _DURATION.match(text):
        raise _Bad(400, f"Invalid wait time: {text!r}")
    return sum(
        float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    )


def _uint(name: str, text: str) -> int:
    if not text.isdigit():
        raise _Bad(400, f"Invalid {name} index: {text!r}")
    return int(text)


class FakeConsul:
    def __init__(self, acl: dict[str, list[tuple[str, str]]] | None = None) -> None:
        self.acl = acl  # None: ACLs disabled (every request allowed)
        self.delay = 0.0
        self.requests: list[tuple[str, str]] = []
        self._kv: dict[str, _Entry] = {}
        self._index = 1  # Consul's raft index never starts at 0
        self._changed = threading.Condition()
        self._interleave: dict[str, bytes | None] = {}
        self._http: ThreadingHTTPServer | None = None
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, **kwargs: Any) -> FakeConsul:
        return cls(**kwargs)._boot()

    def _boot(self, port: int = 0) -> FakeConsul:
        fake = self

        class Handler(_Handler):
            consul = fake

        self._http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop answering, as when the agent is down: new connections are refused and open
        keep-alive connections are cut."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        with self._conn_lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._conns.clear()
        with self._changed:
            self._changed.notify_all()

    def restart(self) -> None:
        """Answer again on the same port, with the same data."""
        if self._http is None:
            self._boot(self.port)

    def __enter__(self) -> FakeConsul:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- test controls -----------------------------------------------------------------------

    def put(self, key: str, value: bytes | str) -> int:
        """Write as another client would; returns the new ModifyIndex."""
        with self._changed:
            return self._write(key, value.encode() if isinstance(value, str) else value)

    def get(self, key: str) -> bytes | None:
        with self._changed:
            entry = self._kv.get(key)
            return None if entry is None else entry.value

    def index_of(self, key: str) -> int | None:
        with self._changed:
            entry = self._kv.get(key)
            return None if entry is None else entry.modify

    def delete(self, key: str) -> None:
        with self._changed:
            if self._kv.pop(key, None) is not None:
                self._bump()

    def keys(self) -> list[str]:
        with self._changed:
            return sorted(self._kv)

    def interleave(self, key: str, value: bytes | str | None) -> None:
        """The next PUT or DELETE of ``key`` finds that another writer set it to ``value``
        (None: deleted it) after the client read it."""
        raw = value.encode() if isinstance(value, str) else value
        with self._changed:
            self._interleave[key] = raw

    # -- the store (callers hold self._changed) ------------------------------------------------

    def _bump(self) -> int:
        self._index += 1
        self._changed.notify_all()
        return self._index

    def _write(self, key: str, value: bytes, flags: int = 0) -> int:
        index = self._bump()
        old = self._kv.get(key)
        self._kv[key] = _Entry(value, old.create if old else index, index, flags)
        return index

    def _race(self, key: str) -> None:
        if key in self._interleave:
            value = self._interleave.pop(key)
            if value is None:
                self._kv.pop(key, None)
                self._bump()
            else:
                self._write(key, value)

    def _matching(self, prefix: str, token: str | None) -> list[str]:
        return sorted(
            k for k in self._kv if k.startswith(prefix) and self._allowed(token, k, "read")
        )

    def _table_index(self, keys: list[str]) -> int:
        return max((self._kv[k].modify for k in keys), default=self._index)

    def _allowed(self, token: str | None, key: str, access: str) -> bool:
        if self.acl is None:
            return True
        rules = self.acl.get(token or "anonymous", [])
        best = max(
            (r for r in rules if key.startswith(r[0])), key=lambda r: len(r[0]), default=None
        )
        if best is None or best[1] == "deny":
            return False
        return access == "read" or best[1] == "write"


class _Handler(BaseHTTPRequestHandler):
    consul: FakeConsul
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.consul._conn_lock:
            self.consul._conns.add(self.connection)

    def finish(self) -> None:
        with self.consul._conn_lock:
            self.consul._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        fake = self.consul
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        args = {k: v[-1] for k, v in query.items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake.requests.append((method, self.path))
        if fake.delay:
            time.sleep(fake.delay)
        try:
            if not url.path.startswith("/v1/kv/"):
                raise _Bad(404, "404 page not found")
            key = urllib.parse.unquote(url.path[len("/v1/kv/") :])
            if "dc" in args and args["dc"] not in ("", "dc1"):
                raise _Bad(500, f'No path to datacenter "{args["dc"]}"')
            token = self.headers.get("X-Consul-Token")
            if method == "GET":
                status, index, out = self._get(key, args, token)
            elif method in ("PUT", "DELETE"):
                status, index, out = self._change(method, key, args, body, token)
            else:
                raise _Bad(405, f"method {method} not allowed")
        except _Bad as bad:
            with fake._changed:
                index = fake._index
            self._send(bad.code, index, bad.text.encode(), "text/plain; charset=utf-8")
            return
        self._send(status, index, out, "application/json")

    def _get(self, key: str, args: dict[str, str], token: str | None) -> tuple[int, int, bytes]:
        fake = self.consul
        recurse, list_keys = "recurse" in args, "keys" in args
        if not recurse and not list_keys and not fake._allowed(token, key, "read"):
            raise _Bad(403, "Permission denied")
        wait_for = _uint("wait", args["index"]) if args.get("index") else 0
        wait = min(_duration(args["wait"]) if "wait" in args else 300.0, 600.0)
        deadline = time.monotonic() + wait
        with fake._changed:
            while True:
                if recurse or list_keys:
                    keys = fake._matching(key, token)
                    index = fake._table_index(keys)
                else:
                    keys = [key] if key in fake._kv else []
                    index = fake._kv[key].modify if keys else fake._index
                left = deadline - time.monotonic()
                if not wait_for or index > wait_for or left <= 0 or fake._http is None:
                    break
                fake._changed.wait(left)
            if list_keys:
                sep = args.get("separator", "")
                shown: list[str] = []
                for k in keys:
                    cut = k.find(sep, len(key)) if sep else -1
                    name = k[: cut + len(sep)] if cut >= 0 else k
                    if name not in shown:
                        shown.append(name)
                return (
                    (200 if shown else 404),
                    index,
                    (json.dumps(shown).encode() if shown else b""),
                )
            rows = [self._row(k, fake._kv[k]) for k in keys]
        if not rows:
            return 404, index, b""
        return 200, index, json.dumps(rows).encode()

    @staticmethod
    def _row(key: str, e: _Entry) -> dict[str, Any]:
        return {
            "LockIndex": 0,
            "Key": key,
            "Flags": e.flags,
            "Value": base64.b64encode(e.value).decode() if e.value else None,
            "CreateIndex": e.create,
            "ModifyIndex": e.modify,
        }

    def _change(
        self, method: str, key: str, args: dict[str, str], body: bytes, token: str | None
    ) -> tuple[int, int, bytes]:
        fake = self.consul
        if not key:
            raise _Bad(400, "Missing key name")
        if method == "PUT" and len(body) > MAX_VALUE:
            raise _Bad(
                413,
                f"Request body({len(body)} bytes) too large, max size: {MAX_VALUE} bytes. See "
                "https://developer.hashicorp.com/consul/docs/agent/config/config-files"
                "#kv_max_value_size.",
            )
        if not fake._allowed(token, key, "write"):
            raise _Bad(403, "Permission denied")
        cas = _uint("cas", args["cas"]) if "cas" in args else None
        flags = _uint("flags", args["flags"]) if "flags" in args else 0
        with fake._changed:
            fake._race(key)
            current = fake._kv.get(key)
            if method == "DELETE" and "recurse" in args:
                for k in [k for k in fake._kv if k.startswith(key)]:
                    del fake._kv[k]
                return 200, fake._bump(), b"true"
            if cas is not None:
                if method == "DELETE" and cas == 0:
                    return 200, fake._index, b"false"  # a 0 index never deletes
                if (current.modify if current else 0) != cas:
                    return 200, fake._index, b"false"
            if method == "DELETE":
                if current is not None:
                    del fake._kv[key]
                    fake._bump()
                return 200, fake._index, b"true"
            return 200, fake._write(key, body, flags), b"true"

    def _send(self, status: int, index: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("X-Consul-Index", str(index))
        self.send_header("X-Consul-Knownleader", "true")
        self.send_header("X-Consul-Lastcontact", "0")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)


@pytest.fixture
def fake_consul(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConsul]:
    """A fake with ACLs off; CONSUL_HTTP_ADDR points at it (for this process and children)."""
    with FakeConsul.start() as fake:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", fake.address)
        monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
        yield fake
