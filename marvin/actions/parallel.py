"""Parallel branches inside one execution (the seed's workflows forked, e.g. seeding two
databases, then joined). Each branch gets a context that looks like the handler's own: its
``progress`` becomes one line of the execution's single progress message, and its ``sleep``
and ``check`` raise ``Cancelled`` when the execution is cancelled or another branch failed,
so the actions' waits (``wait_until``) stop promptly inside a branch as well.

::

    outcomes = run_parallel(ctx, {"orders": restore_orders, "users": restore_users})
    # every branch succeeded here; otherwise ParallelFailed says how each one ended
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from marvin.actions import ActionError
from marvin.core.model import Cancelled

__all__ = ["BranchContext", "BranchOutcome", "ParallelFailed", "run_parallel"]

State = Literal["succeeded", "failed", "cancelled"]
_JOIN_POLL = 0.05  # how often the join looks at the execution's cancel flag


@dataclass(frozen=True)
class BranchOutcome:
    name: str
    state: State
    value: Any = None
    error: str | None = None

    def describe(self) -> str:
        return f"{self.name}: {self.state}" + (f" ({self.error})" if self.error else "")


class ParallelFailed(ActionError):
    """A branch failed: the others were cancelled. ``outcomes`` has every branch's end."""

    def __init__(self, outcomes: Mapping[str, BranchOutcome]) -> None:
        self.outcomes = dict(outcomes)
        super().__init__("; ".join(o.describe() for o in self.outcomes.values()))


class BranchContext:
    """What a branch receives instead of ``ctx``: same services, user and log; progress is
    the branch's own line; cancellation is shared by every branch."""

    def __init__(self, parent: Any, name: str, group: _Group) -> None:
        self.parent, self.name, self._group = parent, name, group
        self.execution_id = parent.execution_id
        self.services = parent.services
        self.log = parent.log.bind(branch=name)

    @property
    def user(self) -> Any:
        return self.parent.user

    @property
    def cancelled(self) -> bool:
        return self._group.stop.is_set()

    def progress(self, text: str) -> None:
        self._group.line(self.name, str(text))

    def reply(self, text: Any) -> None:
        self.parent.reply(text)

    def check(self) -> None:
        if self._group.stop.is_set():
            raise Cancelled(self.execution_id)

    def sleep(self, seconds: float) -> None:
        if self._group.stop.wait(seconds):
            raise Cancelled(self.execution_id)


class _Group:
    def __init__(self, ctx: Any, names: list[str], title: str) -> None:
        self.ctx, self.title = ctx, title
        self.stop = threading.Event()
        self.lines = {name: "waiting" for name in names}
        self.lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        with self.lock:  # one text at a time, so lines never interleave half-updated
            self.lines[name] = text
            shown = "\n".join(f"• {n}: {t}" for n, t in self.lines.items())
            self.ctx.progress(f"{self.title}\n{shown}" if self.title else shown)


def run_parallel(
    ctx: Any,
    branches: Mapping[str, Callable[[BranchContext], Any]],
    *,
    title: str = "",
) -> dict[str, BranchOutcome]:
    """Run each ``branch(branch_ctx)`` on its own thread and join them all.

    The first failure cancels the others; a cancel of the execution reaches every branch.
    Returns every outcome (all succeeded). Raises ``ParallelFailed`` when a branch failed,
    ``Cancelled`` when the execution was cancelled; either only once every branch has ended,
    so a branch's own clean-up has run before the caller reports."""
    names = list(branches)
    group = _Group(ctx, names, title)
    outcomes: dict[str, BranchOutcome] = {}
    done = threading.Condition()

    def run(name: str, fn: Callable[[BranchContext], Any]) -> None:
        bctx = BranchContext(ctx, name, group)
        try:
            outcome = BranchOutcome(name, "succeeded", fn(bctx))
            group.line(name, "done")
        except Cancelled:
            outcome = BranchOutcome(name, "cancelled")
            group.line(name, "cancelled")
        except Exception as exc:  # the branch's reason, told verbatim at the join
            bctx.log.warning("branch failed", exc_info=not isinstance(exc, ActionError))
            reason = str(exc) if isinstance(exc, ActionError) else f"{type(exc).__name__}: {exc}"
            outcome = BranchOutcome(name, "failed", error=reason)
            group.line(name, f"failed: {reason}")
            group.stop.set()  # the first failure cancels the others
        with done:
            outcomes[name] = outcome
            done.notify_all()

    # Each branch runs in a copy of the job thread's logging context (execution id, secrets
    # to mask), so its log lines are the execution's too.
    threads = [
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(run, n, fn),
            name=f"branch-{n}",
            daemon=True,
        )
        for n, fn in branches.items()
    ]
    for t in threads:
        t.start()
    with done:
        while len(outcomes) < len(names):
            if ctx.cancel_event.is_set():
                group.stop.set()
            done.wait(_JOIN_POLL)
    ordered = {n: outcomes[n] for n in names}
    if any(o.state == "failed" for o in ordered.values()):
        raise ParallelFailed(ordered)
    if any(o.state == "cancelled" for o in ordered.values()) or ctx.cancel_event.is_set():
        raise Cancelled(ctx.execution_id)
    return ordered
