"""Serving the API: uvicorn on a thread of its own (beside Bolt in ``marvin serve``), or
alone (``marvin api``, for hosts without Slack).

The socket is bound before uvicorn starts, so a busy port is a clear start-up error and the
port actually bound is known (port 0 picks a free one). uvicorn's access log is off: Marvin
audits each request itself, and never logs a query string.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from dataclasses import replace

import structlog
import uvicorn

from marvin.config import Config
from marvin.core.authz import FrontEnd
from marvin.core.facade import Operations
from marvin.frontends.http.app import ApiApp
from marvin.frontends.http.identity import ApiIdentity
from marvin.frontends.http.settings import ApiSettings
from marvin.frontends.lifecycle import install_sigterm

__all__ = ["ApiServer", "ApiService", "run_api"]

log = structlog.get_logger("marvin.api")


class ApiServer:
    def __init__(self, ops: Operations, settings: ApiSettings) -> None:
        self.api = ApiApp(ops, settings)
        self.sock = _listen(settings.host, settings.port)
        self.host, self.port = settings.host, int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            self.api.asgi,
            log_config=None,  # Marvin's logging (structlog) stays as it is
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=15,
            limit_concurrency=1000,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="marvin-api", daemon=True
        )

    def start(self, timeout: float = 10.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the API did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        log.info("api listening", host=self.host, port=self.port, url=self.url)
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(5)
        self.sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. ``proto`` is named: asyncio sets TCP_NODELAY only on accepted
    sockets whose proto is IPPROTO_TCP, and without it a keep-alive response written in two
    parts waits ~40 ms for the client's delayed ACK (Nagle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


class ApiService:
    """The API as a part of another front end's process (``marvin serve``): its FrontEnd is
    registered when the application is built, and it starts serving once that exists."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.identity = ApiIdentity()
        self.server: ApiServer | None = None

    @classmethod
    def from_config(cls, config: Config, port: int | None = None) -> ApiService | None:
        """None unless ``api.enabled`` or a port (``--api-port``) asks for it."""
        settings = ApiSettings.from_config(config)  # ConfigError: the CLI prints it, exit 2
        if port is not None:
            settings = replace(settings, enabled=True, port=port)
        return cls(settings) if settings.enabled else None

    @property
    def front_end(self) -> FrontEnd:
        return self.identity.front_end

    def start(self, ops: Operations) -> None:
        """Raises OSError when the address cannot be bound."""
        self.identity.attach(ops.keys)
        self.server = ApiServer(ops, self.settings).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def run_api(config: Config, args: argparse.Namespace) -> int:
    """``marvin api``: the API alone, until SIGTERM (drain, exit 0) or Ctrl-C."""
    from marvin.bootstrap import build_app

    settings = replace(ApiSettings.from_config(config), enabled=True)
    if args.host is not None:
        settings = replace(settings, host=args.host)
    if args.port is not None:
        settings = replace(settings, port=args.port)
    service = ApiService(settings)
    app = build_app(config, frontends=[service.front_end])
    try:
        service.start(app)
    except OSError as exc:
        print(f"marvin: cannot serve the API on {service.settings.host}: {exc}", file=sys.stderr)
        app.shutdown(timeout=5)
        return 1
    # Executions a previous process left behind are recorded interrupted (and logged: an API
    # client learns it from GET /executions/{id}).
    app.start(lambda row: log.warning("interrupted execution", notice=row["notice"]))
    install_sigterm(app, after=service.stop)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        log.info("interrupted; stopping")
        service.stop()
        app.shutdown(timeout=5)
    return 0
