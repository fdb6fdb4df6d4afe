"""Per-user lanes in front of the intake pool: one user's messages use at most ``per_user`` of
the intake workers at a time, the rest wait in that user's own queue (in order).

Why: identifying a user can be slow (a ``users.info`` that takes 15 s, a directory timing out),
and every message of that user waits for the same lookup. Without a cap, twenty such messages
fill every intake worker and everyone else's ``whoami`` waits too.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from marvin.runtime.pool import JobPool, PoolFull

__all__ = ["Lanes"]

T = TypeVar("T")


@dataclass
class _Lane(Generic[T]):
    active: int = 0
    waiting: deque[T] = field(default_factory=deque)


class Lanes(Generic[T]):
    """``submit(key, item)`` runs ``work(item)`` on ``pool``, at most ``per_user`` at once per
    key; ``max_waiting`` items per key may wait (past that: ``PoolFull``)."""

    def __init__(
        self, pool: JobPool, work: Callable[[T], None], *, per_user: int, max_waiting: int
    ) -> None:
        self.pool, self.work = pool, work
        self.per_user, self.max_waiting = max(1, per_user), max_waiting
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self._lock = threading.Lock()

    def submit(self, key: Hashable, item: T) -> None:
        with self._lock:
            lane = self._lanes.setdefault(key, _Lane())
            if lane.active >= self.per_user:
                if len(lane.waiting) >= self.max_waiting:
                    raise PoolFull("busy")
                lane.waiting.append(item)
                return
            lane.active += 1
        try:
            self.pool.submit(lambda: self._drain(key, item))
        except BaseException:
            self._done(key)
            raise

    def _drain(self, key: Hashable, item: T) -> None:
        """Run ``item``, then whatever this user queued meanwhile, on this worker."""
        nxt: T | None = item
        while nxt is not None:
            self.work(nxt)
            nxt = self._done(key, take_next=True)

    def _done(self, key: Hashable, *, take_next: bool = False) -> T | None:
        with self._lock:
            lane = self._lanes[key]
            if take_next and lane.waiting:
                return lane.waiting.popleft()
            lane.active -= 1
            if lane.active == 0 and not lane.waiting:
                del self._lanes[key]
            return None
