"""The shared action library: what commands call to act on the estate. Actions take the
execution context (for progress, cancellation and logging) and a client; they never format
chat replies beyond progress lines, so the same action serves chat, CLI and programs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ActionError(RuntimeError):
    """An action failed for a reason worth telling the user verbatim."""


def wait_until(
    ctx: Any,
    check: Callable[[], T | None],
    *,
    every: float,
    timeout: float,
    what: Callable[[], str],
) -> T:
    """Call ``check`` until it returns a result (it raises ActionError on failure and may report
    progress). Between calls, ``ctx.sleep``: a cancel or timeout wakes it at once, which is
    what the seed team's workflow engine, polling blindly between steps, could not do."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise ActionError(f"{what()} after {timeout:.0f} s")
        ctx.sleep(every)
