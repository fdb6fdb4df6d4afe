"""One TTL cache for the security chain's lookups (directory groups, Slack ``users.info``).

Bounded in size; single-flight: concurrent askers for one key share one computation, so a
burst of messages from one user costs one lookup. Failures (exceptions) are never cached;
each result can have its own lifetime (e.g. a shorter one for "not found").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

__all__ = ["TTLCache"]

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, ttl: Callable[[V], float] | float, max_size: int = 10_000) -> None:
        self._ttl = ttl if callable(ttl) else (lambda _v, t=float(ttl): t)
        self.max_size = max_size
        self.hits = 0
        self.coalesced = 0  # lookups that waited for an identical one in flight
        self._lock = threading.Lock()
        self._items: dict[Hashable, tuple[float, V]] = {}
        self._inflight: dict[Hashable, Future[V]] = {}

    def get(self, key: Hashable, compute: Callable[[], V], *, fresh: bool = False) -> V:
        """The cached value, or ``compute()``'s (stored for its TTL). ``fresh`` skips the
        cached value (a sensitive check must see a change at once) and replaces it."""
        with self._lock:
            hit = None if fresh else self._items.get(key)
            if hit is not None and hit[0] > time.monotonic():
                self.hits += 1
                return hit[1]
            fut = self._inflight.get(key)
            leader = fut is None or fresh
            if leader:
                fut = Future()
                if not fresh:
                    self._inflight[key] = fut
            else:
                self.coalesced += 1
        assert fut is not None
        if not leader:
            return fut.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                if self._inflight.get(key) is fut:
                    del self._inflight[key]
            fut.set_exception(exc)
            raise
        with self._lock:
            self._store(key, (time.monotonic() + self._ttl(value), value))
            if self._inflight.get(key) is fut:
                del self._inflight[key]
        fut.set_result(value)
        return value

    def _store(self, key: Hashable, item: tuple[float, V]) -> None:
        if len(self._items) >= self.max_size:  # bound memory: drop expired, then everything
            now = time.monotonic()
            for k in [k for k, v in self._items.items() if v[0] <= now]:
                del self._items[k]
            if len(self._items) >= self.max_size:
                self._items.clear()
        self._items[key] = item
