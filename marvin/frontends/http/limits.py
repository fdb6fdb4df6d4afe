"""Per-key rate limits and bounded request bodies."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

__all__ = ["RateLimiter", "ApiError", "read_json"]


class ApiError(Exception):
    """An answer other than success: ``status``, a stable ``code`` and a message for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, ``per_minute`` sustained."""

    def __init__(
        self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if the request may go on; otherwise the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def refuse(self, key: str) -> None:
        wait = self.take(key)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "rate_limited",
                f"Too many requests with this key; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, refusing more than ``limit`` bytes (413) before reading it
    all, and anything but a JSON object (400)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send JSON (Content-Type: application/json).")
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise ApiError(400, "bad_json", "The body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", "The body must be a JSON object.")
    return value


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"The request body is larger than {limit} bytes.")
