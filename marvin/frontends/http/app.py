"""The Starlette application: routes, the key check, rate limits, the audit row of every
request, errors as JSON (never a stack trace), and request latencies for /metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marvin.core.apikeys import ApiKey, KeyRefused, user_id
from marvin.core.facade import Operations
from marvin.core.model import Message as ChatMessage
from marvin.core.model import User
from marvin.frontends.http.executions import Context, Executions, channel
from marvin.frontends.http.feeds import ApiResponder, Feed, Feeds
from marvin.frontends.http.identity import NAME
from marvin.frontends.http.limits import ApiError, RateLimiter
from marvin.frontends.http.openapi import document
from marvin.frontends.http.settings import ApiSettings
from marvin.frontends.http.views import error_response
from marvin.runtime.metrics import LATENCY_BUCKETS

__all__ = ["ApiApp"]

log = structlog.get_logger("marvin.api")

Handler = Callable[[Request, ApiKey, Context], Awaitable[Response]]
INTERNAL = "Something went wrong on my side; it has been logged."
# A key in the URL ends up in proxies' and browsers' logs: refused before anything else.
_KEY_IN_URL = re.compile(r"(^|&)(access_token|api_key|apikey|key|token)=|mrv_", re.I)


class ApiApp:
    def __init__(self, ops: Operations, settings: ApiSettings) -> None:
        self.ops = ops
        self.settings = settings
        self.feeds = Feeds(settings.replies_kept)
        self.limiter = RateLimiter(settings.rate_per_minute, settings.burst)
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "marvin_api_request_seconds",
            "API requests: time to the response's start, by route and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        ex = Executions(ops, self.feeds, settings.max_body_bytes)
        v1 = "/api/v1"
        routes = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route(f"{v1}/openapi.json", self.openapi, methods=["GET"]),
            Route(f"{v1}/commands", self.authed(ex.commands), methods=["GET"]),
            Route(f"{v1}/executions", self.authed(ex.create), methods=["POST"]),
            Route(f"{v1}/executions/{{id}}", self.authed(ex.show), methods=["GET"]),
            Route(f"{v1}/executions/{{id}}/events", self.authed(ex.events), methods=["GET"]),
            Route(f"{v1}/executions/{{id}}/cancel", self.authed(ex.cancel), methods=["POST"]),
        ]
        self.starlette = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error, Exception: self._crash},
        )
        self.asgi: ASGIApp = _Timed(self.starlette, self.latency)

    # -- public endpoints -------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        body = await run_in_threadpool(self.ops.metrics_text)
        body += generate_latest(self.registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(document())

    # -- requests made with a key -------------------------------------------------------------

    def authed(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            key: ApiKey | None = None
            ctx: Context = {}
            try:
                key = await run_in_threadpool(self.ops.keys.verify, _bearer(request))
                self.limiter.refuse(key.id)
                response = await handler(request, key, ctx)
            except KeyRefused as exc:
                ctx.update(problem=exc.problem, key_id=exc.key_id)
                response = error_response(
                    ApiError(401, "unauthorized", str(exc), headers=_CHALLENGE)
                )
            except ApiError as exc:
                response = error_response(exc)
            except Exception:
                log.exception("api request failed", path=request.url.path)
                response = error_response(ApiError(500, "internal", INTERNAL))
            await self._audit(request, key, response.status_code, ctx)
            return response

        return endpoint

    async def _audit(self, request: Request, key: ApiKey | None, status: int, ctx: Context) -> None:
        """One audit row per request, with the key's name and owner (never the key)."""
        path = f"{request.method} {request.url.path} -> {status}"
        if key is not None:
            user = User(user_id(key.id), key.owner, name=key.name, source=NAME)
            where, detail = channel(key), f"{path}; key {key.name} ({key.id})"
        else:
            user = User(user_id(ctx.get("key_id") or "-"), None, source=NAME)
            where, detail = NAME, f"{path}; key {ctx.get('problem', '?')}"
        msg = ChatMessage(path, user, ApiResponder(Feed(), confirm=False), where)
        try:
            await run_in_threadpool(
                self.ops.audit,
                "api_request",
                msg,
                ctx.get("ref"),
                detail=detail,
                execution_id=ctx.get("execution_id") if request.method == "POST" else None,
            )
        except Exception:
            log.exception("could not audit an api request", path=request.url.path)

    # -- errors -----------------------------------------------------------------------------------

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)))

    async def _crash(self, request: Request, exc: Exception) -> Response:
        log.error("api crashed", path=request.url.path, error=type(exc).__name__)
        return error_response(ApiError(500, "internal", INTERNAL))


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="marvin"'}


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise KeyRefused("missing")
    return token.strip()


def _route(path: str) -> str:
    """The route template, so an execution id never becomes a label value."""
    if path.startswith("/api/v1/executions/"):
        tail = path.removeprefix("/api/v1/executions/").partition("/")[2]
        return "/api/v1/executions/{id}" + (f"/{tail}" if tail in ("events", "cancel") else "")
    known = ("/healthz", "/metrics", "/openapi.json", "/api/v1/openapi.json")
    return path if path in known or path in ("/api/v1/executions", "/api/v1/commands") else "other"


class _Timed:
    """ASGI middleware: refuse keys in URLs; time each request to its response's start."""

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        query = scope.get("query_string", b"").decode("latin-1")
        if _KEY_IN_URL.search(query):
            text = "Send the key in the Authorization header (Bearer), never in the URL."
            response = error_response(ApiError(400, "key_in_url", text))
            await response(scope, receive, send)
            return

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                labels: dict[str, Any] = {
                    "method": scope["method"],
                    "route": _route(scope["path"]),
                    "status": str(message["status"]),
                }
                self.latency.labels(**labels).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed)
