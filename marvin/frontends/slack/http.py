"""A WebClient that keeps its HTTP connections: one per thread and host, reused across calls.

slack_sdk's WebClient opens a new TCP (and TLS) connection for every call through urllib;
in a burst that handshake is most of the cost of a reply. Here each thread keeps an
``http.client`` connection (keep-alive, as Slack's API allows) and reconnects once when a
kept connection turns out to be closed. Errors keep slack_sdk's shape: a status >= 400 raises
``urllib.error.HTTPError``, so its retry handlers (429, 5xx) work unchanged.
"""

from __future__ import annotations

import http.client
import io
import threading
import urllib.error
import urllib.parse
from typing import Any
from urllib.request import Request

from slack_sdk import WebClient

__all__ = ["KeepAliveWebClient"]

_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class KeepAliveWebClient(WebClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        parts = urllib.parse.urlsplit(url)
        if self.proxy is not None or parts.scheme not in ("http", "https"):
            return super()._perform_urllib_http_request_internal(url, req)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = dict(req.header_items())
        for attempt in (1, 2):
            conn = self._connection(parts, fresh=attempt == 2)
            try:
                conn.request(req.get_method(), path, body=req.data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except _STALE:
                conn.close()
                if attempt == 2:
                    raise
                continue  # the server closed a kept connection: once more on a new one
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
                self._local.conns.pop((parts.scheme, parts.netloc), None)
            if resp.status >= 400:
                raise urllib.error.HTTPError(
                    url, resp.status, resp.reason, resp.headers, io.BytesIO(body)
                )
            if resp.headers.get_content_type() == "application/gzip":
                return {"status": resp.status, "headers": resp.headers, "body": body}
            charset = resp.headers.get_content_charset() or "utf-8"
            return {"status": resp.status, "headers": resp.headers, "body": body.decode(charset)}
        raise AssertionError("unreachable")

    def _connection(
        self, parts: urllib.parse.SplitResult, *, fresh: bool
    ) -> http.client.HTTPConnection:
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {}
        )
        key = (parts.scheme, parts.netloc)
        conn = conns.get(key)
        if conn is None or fresh:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.netloc, timeout=self.timeout, context=self.ssl
                )
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
            conns[key] = conn
        return conn
