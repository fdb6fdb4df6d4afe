"""Per-scope execution locks: two mutating commands on the same environment never overlap.

A command declares ``lock="environment"``: the key is (family, scope, value of the command's
``environment`` parameter). The family is part of the key by default because each family owns
its own stacks (``platform-demo01`` and ``api-demo01`` are different CloudFormation stacks, so
``platform.create`` and ``api.create`` on demo01 may run side by side, while ``platform.create``
and ``platform.destroy`` on demo01 may not). Set ``jobs.lock_by_family: false`` to make one
environment name a single lock across families. A scope that is not one of the command's
parameters (``lock="jenkins"``) is a single lock of that name, e.g. for a shared backend.
``lock="*.environment"`` takes the environment's lock across every family: it waits for and
holds off every family's ``environment`` lock on that value (database migrations: no deploy or
restore of the environment meanwhile), while those families still do not exclude each other.

``LockTable`` keeps locks in one process's memory: the reference model of these semantics.
Marvin itself keeps them in the store (``marvin.runtime.shared_locks``, the same interface), so
they hold across processes and replicas.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marvin.core.text import age_text

__all__ = [
    "LockKey",
    "Holder",
    "LockTable",
    "lock_key",
]


@dataclass(frozen=True)
class LockKey:
    family: str | None  # None: shared across families
    scope: str
    value: str | None  # None: the scope is a named lock, not a parameter

    def describe(self) -> str:
        """How people name it: ``platform environment demo01``, or ``jenkins``."""
        parts = [self.family] if self.family else []
        parts.append(self.scope if self.value is None else f"{self.scope} {self.value}")
        return " ".join(parts)


@dataclass(frozen=True)
class Holder:
    execution_id: str
    ref: str
    requester: str
    since: float  # time.time() when the lock was taken

    def describe(self, now: float | None = None) -> str:
        age = age_text((now or time.time()) - self.since)
        return f"`{self.execution_id}` {self.ref} by {self.requester}, {age} ago"


def lock_key(
    spec_lock: str | None,
    family: str,
    command_params: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    by_family: bool = True,
) -> LockKey | None:
    """The key a command with ``lock=spec_lock`` takes for these parameter values."""
    if not spec_lock:
        return None
    every_family = spec_lock.startswith("*.")  # family None: conflicts with every family's
    scope = spec_lock.removeprefix("*.")
    value = None
    if scope in command_params:
        raw = params.get(scope)
        value = "" if raw is None else str(raw).lower()  # names are case-insensitive in chat
    return LockKey(family if by_family and not every_family else None, scope, value)


def _overlap(a: LockKey, b: LockKey) -> bool:
    """Same key, or the same scope and value where one of them spans every family."""
    if a == b:
        return True
    return a.scope == b.scope and a.value == b.value and (a.family is None or b.family is None)


class LockTable:
    """Held locks and, per key, a line of executions waiting (``lock_wait=True``)."""

    def __init__(self) -> None:
        self._held: dict[LockKey, Holder] = {}
        self._lines: dict[LockKey, deque[tuple[Holder, Callable[[], None]]]] = {}
        self._lock = threading.Lock()

    def acquire(
        self, key: LockKey, holder: Holder, on_free: Callable[[], None] | None = None
    ) -> Holder | None:
        """Take ``key`` (returns None) or return who holds it. With ``on_free`` the caller
        also joins the line: ``on_free()`` is called once the lock has passed to it."""
        with self._lock:
            current = self._blocker(key)
            if current is None:
                self._held[key] = holder
                return None
            if on_free is not None:
                self._lines.setdefault(key, deque()).append((holder, on_free))
            return current

    def release(self, key: LockKey, execution_id: str) -> Callable[[], None] | None:
        """Free ``key`` if ``execution_id`` holds it; returns the next waiter's start function
        (call it outside any lock) after handing the key to that waiter."""
        with self._lock:
            current = self._held.get(key)
            if current is None or current.execution_id != execution_id:
                return None
            del self._held[key]
            # Usually one line (this key's); an every-family key may free several families'.
            started: list[Callable[[], None]] = []
            for waiting in [k for k in self._lines if _overlap(k, key)]:
                line = self._lines[waiting]
                if self._blocker(waiting) is not None:
                    continue
                waiter, on_free = line.popleft()
                if not line:
                    del self._lines[waiting]
                self._held[waiting] = Holder(
                    waiter.execution_id, waiter.ref, waiter.requester, time.time()
                )
                started.append(on_free)
            if not started:
                return None
            return started[0] if len(started) == 1 else lambda: [f() for f in started]

    def _blocker(self, key: LockKey) -> Holder | None:
        """Who holds ``key`` or an overlapping key (caller holds ``_lock``)."""
        held = self._held.get(key)
        if held is not None:
            return held
        return next((h for k, h in self._held.items() if _overlap(k, key)), None)

    def leave(self, key: LockKey, execution_id: str) -> bool:
        """Remove a waiter from the line (cancelled before it ran)."""
        with self._lock:
            line = self._lines.get(key)
            if not line:
                return False
            for item in line:
                if item[0].execution_id == execution_id:
                    line.remove(item)
                    if not line:
                        del self._lines[key]
                    return True
            return False

    def holder(self, key: LockKey) -> Holder | None:
        with self._lock:
            return self._held.get(key)
