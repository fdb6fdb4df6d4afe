"""``/healthz``: 200 while the Socket Mode connection is up, 503 otherwise."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HealthServer"]


class HealthServer(ThreadingHTTPServer):
    """A tiny HTTP server on its own daemon thread; ``healthy()`` is asked on each request."""

    daemon_threads = True

    def __init__(self, port: int, healthy: Callable[[], bool], host: str = "0.0.0.0") -> None:
        self.healthy = healthy
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="marvin-health"
        )
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self._reply(404, b"not found\n")
            return
        try:
            ok = bool(self.server.healthy())
        except Exception:  # a probe must answer, never hang or crash
            ok = False
        self._reply(200 if ok else 503, b"ok\n" if ok else b"disconnected\n")

    do_HEAD = do_GET

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would drown the log
