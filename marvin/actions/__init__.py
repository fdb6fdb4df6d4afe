"""The shared action library: what commands call to act on the estate. Actions take the
execution context (for progress, cancellation and logging) and a client; they never format
chat replies beyond progress lines, so the same action serves chat, CLI and programs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from marvin.core.model import ExpectedFailure

T = TypeVar("T")

FIRST_POLL = 1.0  # seconds: a step that ends in 2 s is seen after about 2 s, not a full period
GROWTH = 1.5  # each pause 1.5x the last: a step is noticed within ~half its length, at most a cap


class ActionError(RuntimeError, ExpectedFailure):
    """An action failed for a reason worth telling the user verbatim."""


def backoff(every: float, first: float = FIRST_POLL, growth: float = GROWTH) -> Callable[[], float]:
    """Successive pauses: ``first`` (never more than ``every``), growing ``growth`` times each
    time up to ``every``. 1.5 rather than doubling: polls land at 1, 2.5, 4.75, 8.1 s..., so
    a step is noticed within about a quarter of its length on average, for a few more calls."""
    state = {"next": min(first, every)}

    def pause() -> float:
        delay = state["next"]
        state["next"] = min(delay * growth, every)
        return delay

    return pause


def wait_until(
    ctx: Any,
    check: Callable[[], T | None],
    *,
    every: float,
    timeout: float,
    what: Callable[[], str],
    first: float = FIRST_POLL,
    growth: float = GROWTH,
) -> T:
    """Call ``check`` until it returns a result (it raises ActionError on failure and may report
    progress). Pauses start at ``first`` and grow up to ``every`` (the configured poll cap):
    a quick step is noticed quickly, a long one costs few calls. Each pause is ``ctx.sleep``:
    a cancel or timeout wakes it at once, which is what the seed team's workflow engine,
    polling blindly between steps, could not do."""
    deadline = time.monotonic() + timeout
    pause = backoff(every, first, growth)
    while True:
        result = check()
        if result is not None:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise ActionError(f"{what()} after {timeout:.0f} s")
        ctx.sleep(min(pause(), left))  # the last pause ends at the deadline, not past it
