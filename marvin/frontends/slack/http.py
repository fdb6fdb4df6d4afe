"""A WebClient that keeps its HTTP connections: one per thread and host, reused across calls.

slack_sdk's WebClient opens a new TCP (and TLS) connection for every call through urllib;
in a burst that handshake is most of the cost of a reply. Here each thread keeps one
HTTP/1.1 connection (keep-alive, as Slack's API allows) and reconnects once when a kept
connection turns out to be closed.

The connection speaks just the HTTP/1.1 a Web API call needs (one request written with one
``sendall``; a status line, headers and a Content-Length or chunked body read back), because
``http.client`` parses every response's headers with the ``email`` package, which was a
third of a reply's CPU time in a burst. Errors keep slack_sdk's shape: a status >= 400 raises
``urllib.error.HTTPError``, so its retry handlers (429, 5xx) work unchanged.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
import urllib.error
import urllib.parse
from typing import Any
from urllib.request import Request

from slack_sdk import WebClient

__all__ = ["KeepAliveWebClient"]

_MAX_LINE = 65536
_MAX_HEADERS = 100
_SET_HERE = frozenset({"host", "content-length", "accept-encoding", "connection"})  # by us


class _Closed(ConnectionError):
    """The server closed a kept connection before answering: safe to send once more."""


class _Response:
    __slots__ = ("status", "reason", "headers", "raw_headers", "body", "will_close")

    def __init__(self) -> None:
        self.status, self.reason, self.body, self.will_close = 0, "", b"", False
        self.headers: dict[str, str] = {}
        self.raw_headers = b""

    def message(self) -> http.client.HTTPMessage:
        """The headers as http.client would give them (for HTTPError; errors only)."""
        return http.client.parse_headers(io.BytesIO(self.raw_headers + b"\r\n"))

    def charset(self) -> str:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"


class _Connection:
    """One kept-alive HTTP/1.1 connection to ``netloc``."""

    def __init__(
        self, scheme: str, netloc: str, timeout: float, context: ssl.SSLContext | None
    ) -> None:
        parts = urllib.parse.urlsplit(f"{scheme}://{netloc}")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if scheme == "https" else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait per call
        if scheme == "https":
            sock = (context or ssl.create_default_context()).wrap_socket(sock, server_hostname=host)
        self.netloc, self.sock = netloc, sock
        self.rfile = sock.makefile("rb")
        self.used = False

    def close(self) -> None:
        for closing in (self.rfile, self.sock):
            try:
                closing.close()
            except OSError:
                pass

    def exchange(self, method: str, path: str, headers: dict[str, Any], body: bytes) -> _Response:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in _SET_HERE]
        lines += [f"Content-Length: {len(body)}", "Accept-Encoding: identity", "", ""]
        kept = self.used
        self.used = True
        try:
            self.sock.sendall("\r\n".join(lines).encode("latin-1") + body)
            status = self.rfile.readline(_MAX_LINE + 1)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if kept:
                raise _Closed(str(exc)) from exc
            raise
        if not status:
            if kept:
                raise _Closed("kept connection closed by the server")
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        return self._read(status, method)

    def _read(self, status: bytes, method: str) -> _Response:
        resp = _Response()
        while True:
            version, _, rest = status.decode("latin-1").rstrip("\r\n").partition(" ")
            code, _, resp.reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise http.client.BadStatusLine(status.decode("latin-1", "replace"))
            resp.status = int(code)
            raw = self._headers(resp)
            if resp.status != 100:
                break
            status = self.rfile.readline(_MAX_LINE + 1)  # 100 Continue: the real one follows
        resp.raw_headers = raw
        connection = resp.headers.get("connection", "").lower()
        old = version == "HTTP/1.0" and connection != "keep-alive"
        resp.will_close = connection == "close" or old
        if method == "HEAD" or resp.status in (204, 304):
            return resp
        if resp.headers.get("transfer-encoding", "").lower() == "chunked":
            resp.body = self._chunked()
        elif "content-length" in resp.headers:
            resp.body = self._exactly(int(resp.headers["content-length"]))
        else:  # delimited by the close
            resp.body, resp.will_close = self.rfile.read(), True
        return resp

    def _headers(self, resp: _Response) -> bytes:
        raw = []
        for _ in range(_MAX_HEADERS + 1):
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong("header line")
            if line in (b"\r\n", b"\n", b""):
                return b"".join(raw)
            raw.append(line)
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers[name.strip().lower()] = value.strip()
        raise http.client.HTTPException(f"more than {_MAX_HEADERS} headers")

    def _exactly(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise http.client.IncompleteRead(data, n - len(data))
        return data

    def _chunked(self) -> bytes:
        out = []
        while True:
            size_line = self.rfile.readline(_MAX_LINE + 1)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(out)
            out.append(self._exactly(size))
            self._exactly(2)  # the CRLF after each chunk


class KeepAliveWebClient(WebClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        parts = urllib.parse.urlsplit(url)
        if self.proxy is not None or parts.scheme not in ("http", "https"):
            return super()._perform_urllib_http_request_internal(url, req)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = dict(req.header_items())
        data = req.data if isinstance(req.data, bytes) else b""
        for attempt in (1, 2):
            conn = self._connection(parts, fresh=attempt == 2)
            try:
                resp = conn.exchange(req.get_method(), path, headers, data)
            except _Closed:
                self._drop(parts)
                continue  # the server closed a kept connection: once more on a new one
            except BaseException:
                self._drop(parts)
                raise
            if resp.will_close:
                self._drop(parts)
            if resp.status >= 400:
                raise urllib.error.HTTPError(
                    url, resp.status, resp.reason, resp.message(), io.BytesIO(resp.body)
                )
            if resp.headers.get("content-type", "").startswith("application/gzip"):
                return {"status": resp.status, "headers": resp.headers, "body": resp.body}
            body = resp.body.decode(resp.charset())
            return {"status": resp.status, "headers": resp.headers, "body": body}
        raise AssertionError("unreachable")

    def _conns(self) -> dict[tuple[str, str], _Connection]:
        conns: dict[tuple[str, str], _Connection] = self._local.__dict__.setdefault("conns", {})
        return conns

    def _connection(self, parts: urllib.parse.SplitResult, *, fresh: bool) -> _Connection:
        key = (parts.scheme, parts.netloc)
        conns = self._conns()
        conn = conns.get(key)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = _Connection(parts.scheme, parts.netloc, float(self.timeout), self.ssl)
            conns[key] = conn
        return conn

    def _drop(self, parts: urllib.parse.SplitResult) -> None:
        conn = self._conns().pop((parts.scheme, parts.netloc), None)
        if conn is not None:
            conn.close()
