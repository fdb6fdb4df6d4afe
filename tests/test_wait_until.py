"""The shared wait: fast first polls that back off to the configured cap, prompt notice of a
quick step, cancellation at once, and a timeout that names what was awaited."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from marvin.actions import ActionError, backoff, wait_until
from marvin.core.model import Cancelled


class Ctx:
    def __init__(self) -> None:
        self.cancel_event = threading.Event()
        self.pauses: list[float] = []
        self.log = SimpleNamespace(info=lambda *a, **k: None)

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if self.cancel_event.wait(seconds):
            raise Cancelled("ex-000000")


def test_pauses_grow_from_first_to_the_cap() -> None:
    pause = backoff(10.0)
    assert [round(pause(), 2) for _ in range(8)] == [1, 1.5, 2.25, 3.38, 5.06, 7.59, 10, 10]
    doubling = backoff(10.0, growth=2)
    assert [doubling() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    small = backoff(0.05)  # a cap below the first pause wins (tests use tiny caps)
    assert [small() for _ in range(3)] == [0.05, 0.05, 0.05]


def test_a_quick_step_is_noticed_quickly_not_after_a_full_period() -> None:
    ctx, start = Ctx(), time.monotonic()
    done_at = start + 0.25

    def check() -> str | None:
        return "done" if time.monotonic() >= done_at else None

    assert wait_until(ctx, check, every=5.0, timeout=10, what=str, first=0.1) == "done"
    lag = time.monotonic() - done_at
    assert lag < 0.3, lag  # polls at 0, 0.1, 0.25, 0.475: a fixed 5 s would lag 4.75 s
    assert [round(p, 3) for p in ctx.pauses[:2]] == [0.1, 0.15] and len(ctx.pauses) <= 3


def test_cancel_interrupts_a_long_pause_at_once() -> None:
    ctx = Ctx()
    threading.Timer(0.2, ctx.cancel_event.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled):
        wait_until(ctx, lambda: None, every=60, timeout=600, what=str, first=30)
    assert time.monotonic() - start < 1.0


def test_timeout_names_what_was_awaited_and_never_oversleeps() -> None:
    ctx, start = Ctx(), time.monotonic()
    with pytest.raises(ActionError, match="stack x still CREATE_IN_PROGRESS after 0 s"):
        wait_until(
            ctx,
            lambda: None,
            every=10,
            timeout=0.3,
            what=lambda: "stack x still CREATE_IN_PROGRESS",
        )
    assert time.monotonic() - start < 1.0  # the last pause is cut to the deadline


def test_a_failing_check_ends_the_wait() -> None:
    def check() -> None:
        raise ActionError("stack x CREATE_FAILED")

    with pytest.raises(ActionError, match="CREATE_FAILED"):
        wait_until(Ctx(), check, every=1, timeout=5, what=str)
