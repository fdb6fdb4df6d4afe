"""The parallel-branches helper, on a real execution Context: one progress message, the
first failure cancels the others, a cancel reaches every branch, the join reports each."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from marvin import Cancelled
from marvin.actions import ActionError, wait_until
from marvin.actions.parallel import ParallelFailed, run_parallel
from marvin.core.model import Message, User
from marvin.runtime.execution import Context


class Capture:
    def __init__(self) -> None:
        self.progress_texts: list[str] = []
        self.said: list[str] = []

    def say(self, text: object) -> None:
        self.said.append(str(text))

    def whisper(self, text: str) -> None:
        self.said.append(text)

    def progress(self, text: str) -> None:
        self.progress_texts.append(text)

    def react(self, state: str) -> None:
        pass


def make_ctx() -> tuple[Context, Capture]:
    cap = Capture()
    msg = Message(text="x", user=User(id="U1", email="a@example.com"), responder=cap)
    ctx = Context(
        execution_id="ex-test01",
        command=SimpleNamespace(ref="test.parallel"),
        params={},
        message=msg,
        services=SimpleNamespace(config=None),
    )
    ctx.PROGRESS_INTERVAL = 0  # every update reaches the responder: the test reads them all
    return ctx, cap


def test_every_branch_succeeds_and_shares_one_progress_message() -> None:
    ctx, cap = make_ctx()
    threads: set[str] = set()

    def branch(n: int):  # noqa: ANN202
        def run(bctx):  # noqa: ANN001, ANN202
            threads.add(threading.current_thread().name)
            for i in range(3):
                bctx.progress(f"step {i}")
                bctx.sleep(0.01)
            return n * 10

        return run

    out = run_parallel(ctx, {"orders": branch(1), "users": branch(2)}, title="Restoring:")
    assert {k: (o.state, o.value) for k, o in out.items()} == {
        "orders": ("succeeded", 10),
        "users": ("succeeded", 20),
    }
    assert threads == {"branch-orders", "branch-users"}  # really on their own threads
    assert cap.progress_texts[-1] == "Restoring:\n• orders: done\n• users: done"
    both = [t for t in cap.progress_texts if "orders: step" in t and "users: step" in t]
    assert both, "a progress text showed both branches at once"


def test_first_failure_cancels_the_others_and_the_join_reports_each() -> None:
    ctx, cap = make_ctx()
    cleaned = threading.Event()

    def slow(bctx):  # noqa: ANN001, ANN202
        try:
            wait_until(bctx, lambda: None, every=0.02, timeout=30, what=lambda: "never")
        finally:
            cleaned.set()  # a branch's own clean-up runs before the join returns

    def fails(bctx):  # noqa: ANN001, ANN202
        bctx.sleep(0.1)
        raise ActionError("snapshot is incompatible")

    def quick(bctx):  # noqa: ANN001, ANN202
        return "ok"

    started = time.monotonic()
    with pytest.raises(ParallelFailed) as err:
        run_parallel(ctx, {"slow": slow, "bad": fails, "quick": quick})
    assert time.monotonic() - started < 5
    assert cleaned.is_set()
    states = {k: o.state for k, o in err.value.outcomes.items()}
    assert states == {"slow": "cancelled", "bad": "failed", "quick": "succeeded"}
    assert "bad: failed (snapshot is incompatible)" in str(err.value)
    assert "slow: cancelled" in str(err.value)
    assert "• bad: failed: snapshot is incompatible" in cap.progress_texts[-1]


def test_a_cancel_reaches_every_branch() -> None:
    ctx, _cap = make_ctx()
    stopped: list[str] = []

    def forever(name: str):  # noqa: ANN202
        def run(bctx):  # noqa: ANN001, ANN202
            try:
                while True:
                    bctx.sleep(0.05)
            except Cancelled:
                stopped.append(name)
                raise

        return run

    threading.Timer(0.2, ctx.cancel_event.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_parallel(ctx, {n: forever(n) for n in ("a", "b", "c")})
    assert time.monotonic() - started < 3
    assert sorted(stopped) == ["a", "b", "c"]


def test_an_unexpected_exception_is_a_failure_with_its_type() -> None:
    ctx, _cap = make_ctx()

    def broken(bctx):  # noqa: ANN001, ANN202
        raise KeyError("DBInstances")

    with pytest.raises(ParallelFailed) as err:
        run_parallel(ctx, {"x": broken})
    assert err.value.outcomes["x"].error == "KeyError: 'DBInstances'"
