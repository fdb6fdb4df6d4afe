"""Per-scope execution locks: two mutating commands on the same environment never overlap.

A command declares ``lock="environment"``: the key is (family, scope, value of the command's
``environment`` parameter). The family is part of the key by default because each family owns
its own stacks (``platform-demo01`` and ``api-demo01`` are different CloudFormation stacks, so
``platform.create`` and ``api.create`` on demo01 may run side by side, while ``platform.create``
and ``platform.destroy`` on demo01 may not). Set ``jobs.lock_by_family: false`` to make one
environment name a single lock across families. A scope that is not one of the command's
parameters (``lock="jenkins"``) is a single lock of that name, e.g. for a shared backend.

Locks live in this process only (one Marvin process owns the store). Ownership across
processes is ``marvin.runtime.owner``.
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
    value = None
    if spec_lock in command_params:
        raw = params.get(spec_lock)
        value = "" if raw is None else str(raw).lower()  # names are case-insensitive in chat
    return LockKey(family if by_family else None, spec_lock, value)


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
            current = self._held.get(key)
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
            line = self._lines.get(key)
            if not line:
                self._lines.pop(key, None)
                return None
            waiter, on_free = line.popleft()
            if not line:
                del self._lines[key]
            self._held[key] = Holder(waiter.execution_id, waiter.ref, waiter.requester, time.time())
            return on_free

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
