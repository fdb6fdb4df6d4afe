"""A Marvin process's life on the store: the pulse (lease, cancel polls, the sweep), start-up
(recovery, actions due later, the approvals watch), drain and shutdown. Kept apart from the
request pipeline (``marvin.runtime.app``), which delegates here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from marvin.runtime import approvals, control, due
from marvin.runtime.claims import Shared
from marvin.runtime.jobs import JobPool
from marvin.runtime.parts import Runtime
from marvin.runtime.replicas import Pulse, Replicas, StateSettings

__all__ = ["Lifecycle", "Notify"]

log = structlog.get_logger("marvin")
Notify = Callable[[dict[str, Any]], None]  # the front end's way to tell a request's thread


class Lifecycle:
    """Starts the pulse at once; ``start`` makes the process a long-running one."""

    def __init__(
        self,
        rt: Runtime,
        replicas: Replicas,
        state: StateSettings,
        shared: Shared,
        intake: JobPool,
        notifier: JobPool,
        sweep_approvals: Callable[[], None],
    ) -> None:
        self.rt, self.replicas, self.state, self.shared = rt, replicas, state, shared
        self.intake, self.notifier = intake, notifier  # stopped on shutdown
        self.sweep_approvals = sweep_approvals
        self.due: due.DueScheduler | None = None
        self.notify: Notify | None = None  # from start()
        self.started = False
        self.pulse = Pulse(state, replicas.beat, rt.jobs.poll, self.sweep).start()

    def sweep(self) -> None:
        """Every ``state.heartbeat_seconds`` on the pulse thread: forget expired claims;
        once started (serve, shell), record dead replicas' executions interrupted."""
        self.shared.purge()  # expired event claims
        self.rt.store.expire_plans(self.state.plans_made_before)
        if self.started:
            control.recover(self.rt, self.notify)

    def start(self, notify: Notify | None) -> list[dict]:
        rows = control.recover(self.rt, notify)
        self.notify, self.started = notify, True
        if self.due is None:
            self.due = due.start(self.rt, notify)
            self.watch_approvals()
        return rows

    def watch_approvals(self) -> None:
        """Expire approvals on time, also those another process (``marvin run``) opened."""
        try:
            self.intake.submit(self.sweep_approvals)
            self.rt.jobs.scheduler.call_later(approvals.SWEEP_SECONDS, self.watch_approvals)
        except RuntimeError:  # shutting down
            pass

    def notice(self, row: dict[str, Any]) -> None:
        """Tell a request's thread ``row["notice"]`` through ``start``'s notifier, if any."""
        if self.notify is None:
            return
        try:
            self.notify(row)
        except Exception:
            log.exception("could not deliver a notice", execution_id=row.get("id"))

    def drain(self, grace: float | None) -> list[str]:
        """Graceful stop (see control), then leave the store: the lease ends, what this
        replica still holds is free to take."""
        out = control.drain(self.rt, grace)
        self.leave()
        return out

    def leave(self) -> None:
        self.pulse.stop()
        try:
            self.replicas.stop()
        except Exception:
            log.warning("could not mark this replica stopped", exc_info=True)

    def shutdown(self, timeout: float | None) -> None:
        """Stop: what is still queued or running after ``timeout`` is recorded interrupted."""
        jobs = self.rt.jobs
        if self.due is not None:
            self.due.stop()
        if jobs.live():
            self.drain(5.0 if timeout is None else timeout)
        else:
            jobs.close()
            self.leave()
        self.intake.shutdown(wait=True, timeout=timeout)
        self.notifier.shutdown(wait=True, timeout=timeout)
        jobs.shutdown(timeout=timeout)
