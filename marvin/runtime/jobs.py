"""Job admission: command handlers never run on a front end's thread.

``JobManager`` admits executions onto the bounded pool (``marvin.pool``) — per-user cap, locks,
queue bound — and keeps this process's live jobs (threads, cancel events) that ``cancel`` and
drain use. The cap and the locks are decided in the store (``marvin.runtime.running``), so they
hold across every process and replica sharing it.
What is said to people and written to the store is ``marvin.app``'s and ``marvin.execution``'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from marvin.core.facade import OutcomeKind
from marvin.core.model import Message
from marvin.core.registry import Command
from marvin.runtime.audit import Attempt
from marvin.runtime.locks import Holder, LockKey
from marvin.runtime.pool import JobPool, PoolFull, Scheduler, Timer
from marvin.runtime.running import RunningTable

__all__ = [
    "JobPool",
    "PoolFull",
    "Scheduler",
    "Timer",
    "Job",
    "JobManager",
    "JobSettings",
    "Refusal",
]

if TYPE_CHECKING:
    from marvin.runtime.execution import Context

log = structlog.get_logger("marvin.jobs")


BUSY = "I'm busy right now; please try again in a minute."
RESTARTING = "I'm restarting; please try again in a minute."


@dataclass(frozen=True)
class JobSettings:
    """The ``jobs.*`` configuration."""

    workers: int = 32
    queue: int = 256
    per_user: int = 4
    default_timeout: float = 3600.0
    cancel_grace: float = 5.0  # how long a timed-out handler gets to stop before it's abandoned
    grace_seconds: float = 30.0  # SIGTERM: how long running jobs get to finish
    cancel_groups: frozenset[str] = frozenset()
    lock_by_family: bool = True

    @classmethod
    def from_config(cls, config: Any) -> JobSettings:
        get = config.get
        return cls(
            workers=get("jobs.workers"),
            queue=get("jobs.queue"),
            per_user=get("jobs.per_user"),
            default_timeout=float(get("jobs.default_timeout")),
            cancel_grace=float(get("jobs.cancel_grace")),
            grace_seconds=float(get("jobs.grace_seconds")),
            cancel_groups=frozenset(g.lower() for g in get("jobs.cancel_groups")),
            lock_by_family=get("jobs.locks") == "per_family",
        )


@dataclass(frozen=True)
class Refusal:
    reason: str  # for the store and the log
    text: str  # for the requester
    kind: OutcomeKind = "busy"  # shutdown | limit | locked | busy


@dataclass(eq=False)
class Job:
    """One accepted execution while this process is responsible for it."""

    execution_id: str
    command: Command
    params: Mapping[str, Any]
    message: Message
    shown: Mapping[str, Any]  # parameters with secrets redacted, for listings
    timeout: float
    mfa: bool = False
    checks: tuple[str, ...] = ()  # out-of-band checks to pass before the handler runs
    lock: LockKey | None = None
    created: float = field(default_factory=time.time)
    state: str = "queued"  # queued | waiting (for its lock) | running | abandoned
    started: float | None = None
    blocked_by: Holder | None = None
    ctx: Context | None = None  # once it runs
    thread: threading.Thread | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    cancelled_by: str | None = None
    timed_out: bool = False
    _claimed: bool = False
    _claim_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def user_id(self) -> str:
        return self.message.user.id

    @property
    def requester(self) -> str:
        return self.message.user.email or self.message.user.id

    @property
    def progress(self) -> str | None:
        return self.ctx.latest_progress if self.ctx is not None else None

    @property
    def attempt(self) -> Attempt:
        return Attempt.of(self.message, self.command.ref, self.shown)

    @property
    def finished(self) -> bool:
        return self._claimed

    def claim(self) -> bool:
        """Exactly one outcome is recorded: the handler's, a cancel's, a timeout's or a drain's."""
        with self._claim_lock:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def holder(self) -> Holder:
        return Holder(self.execution_id, self.command.ref, self.requester, time.time())


class JobManager:
    """Admission and the live table. Thread-safe; one per Marvin."""

    def __init__(self, settings: JobSettings, running: RunningTable) -> None:
        self.settings = settings
        self.pool = JobPool(settings.workers, settings.queue, name="marvin-job")
        self._timers = JobPool(8, 1_000_000, name="marvin-timer")  # timeouts, progress
        self.scheduler = Scheduler(self._timers)
        self.running = running  # the store's running-job table: cap, locks, cancel requests
        self.locks = running.locks
        # Set by the application: a cancel asked on another process for one of our jobs.
        self.on_cancel_request: Callable[[Job, str], None] | None = None
        self.accepting = True
        self._live: dict[str, Job] = {}
        self._cond = threading.Condition()

    def admit(
        self, job: Job, runner: Callable[[Job], None], admitted: Callable[[], None]
    ) -> Refusal | None:
        """Check the per-user cap and the lock, then queue ``runner(job)``. ``admitted`` is
        called (to audit "accepted") once the checks pass and before the job can start."""
        cap = self.settings.per_user
        with self._cond:
            if not self.accepting:
                return Refusal("shutting down", RESTARTING, "shutdown")
            waits = job.lock is not None and job.command.spec.lock_wait
            verdict = self.running.admit(
                execution_id=job.execution_id,
                user_id=job.user_id,
                ref=job.command.ref,
                requester=job.requester,
                shown=job.shown,
                cap=cap,
                lock=job.lock,
                on_free=(lambda: self._lock_passed(job, runner)) if waits else None,
            )
            if verdict.cap is not None:
                ids = ", ".join(f"`{ex}`" for ex in verdict.cap)
                return Refusal(
                    f"per-user limit of {cap}",
                    f"You already have {len(verdict.cap)} commands running or queued ({ids}); "
                    f"the limit is {cap}. Wait for one to finish, or `cancel` one.",
                    "limit",
                )
            holder = verdict.holder
            if holder is not None and job.lock is not None and not verdict.waiting:
                return Refusal(
                    f"{job.lock.describe()} locked by {holder.execution_id}",
                    f"{job.lock.describe()} is busy: {holder.describe()}. "
                    "Try again when it has finished.",
                    "locked",
                )
            if holder is not None:
                job.state, job.blocked_by = "waiting", holder
            self._live[job.execution_id] = job
            try:
                admitted()
            except BaseException:
                # Nothing may hold a lock or a cap slot for a job that was never admitted.
                self.release(job)
                raise
        if job.state == "queued":
            try:
                self.pool.submit(lambda: self._work(job, runner), key=job.execution_id)
            except (PoolFull, RuntimeError):
                self.release(job)
                job.done.set()
                return Refusal("busy", BUSY)
        return None

    def _lock_passed(self, job: Job, runner: Callable[[Job], None]) -> None:
        with self._cond:
            job.state, job.blocked_by = "queued", None
        try:
            self.pool.submit(lambda: self._work(job, runner), key=job.execution_id, force=True)
        except RuntimeError:
            self.release(job)  # shutting down: drain has recorded it already
            job.done.set()

    def _work(self, job: Job, runner: Callable[[Job], None]) -> None:
        job.thread = threading.current_thread()
        try:
            with self._cond:
                if job.finished:
                    return  # withdrawn (cancel, drain) after it left the queue
                job.state, job.started = "running", time.time()
            self.running.set_state(job.execution_id, "running", job.started)
            runner(job)
        finally:
            self.release(job)
            job.done.set()  # normally already set by execution.finish, after the result

    def release(self, job: Job, *, forget: bool = True) -> None:
        """Pass ``job``'s lock on and (with ``forget``) drop it from the live table; safe to
        call more than once. ``execution.finish`` frees the lock first and forgets the job
        only after the result is said, so ``Marvin.wait`` never returns before it."""
        granted: list[str] = []
        with self._cond:
            # Not in the live table: released and forgotten already (the store knows).
            if job.execution_id in self._live and (job.lock is not None or forget):
                granted = self.running.release(job.execution_id, job.lock, forget=forget)
            if forget:
                self._live.pop(job.execution_id, None)
            self._cond.notify_all()
        start_next = self.locks.starter(granted)
        if start_next is not None:
            start_next()

    def withdraw(self, job: Job, by: str | None = None) -> str:
        """Cancel: "removed" (had not started: the caller records it), "signalled" (running:
        its cancel_event is set) or "finished" (already over, or abandoned)."""
        with self._cond:
            if job.finished:
                return "finished"
            job.cancelled_by = by
            job.cancel_event.set()  # also stops it should it slip out of the queue right now
            if job.state == "queued" and self.pool.remove(job.execution_id):
                return "removed"
            if job.state == "waiting" and job.lock and self.locks.leave(job.lock, job.execution_id):
                return "removed"
            return "signalled"

    def abandon(self, job: Job) -> None:
        """A timed-out handler that ignores cancellation: free its worker slot, keep its lock
        (it may still be changing things) until its thread really ends."""
        with self._cond:
            job.state = "abandoned"
        self.running.set_state(job.execution_id, "abandoned")
        self.pool.abandon(job.thread)

    def close(self) -> list[Job]:
        """Stop accepting; withdraw everything not yet started and return what was removed
        before it ran (one that slipped into a worker meanwhile is left to ``wait_idle``)."""
        with self._cond:
            self.accepting = False
            pending = [j for j in self._live.values() if j.state in ("queued", "waiting")]
        return [job for job in pending if self.withdraw(job, by="shutdown") == "removed"]

    def wait_idle(self, timeout: float) -> list[Job]:
        """Wait up to ``timeout`` for running jobs to end (their result said, not just their
        lock released); returns those still running."""
        deadline = time.monotonic() + timeout
        with self._cond:
            running = [j for j in self._live.values() if j.state == "running"]
        for job in running:
            job.done.wait(max(0.0, deadline - time.monotonic()))
        return [j for j in running if not j.done.is_set()]

    def poll(self) -> None:
        """From the pulse thread: cancel requests made on other processes for our jobs, and
        locks handed to our waiting jobs by other processes."""
        for ex_id, by in self.running.cancel_requests():
            job = self.get(ex_id)
            if job is not None and not job.cancel_event.is_set() and self.on_cancel_request:
                self.on_cancel_request(job, by)
        self.locks.poll()

    def get(self, ex_id: str) -> Job | None:
        with self._cond:
            return self._live.get(ex_id)

    def live(self) -> list[Job]:
        with self._cond:
            return sorted(self._live.values(), key=lambda j: j.created)

    def shutdown(self, timeout: float | None = None) -> None:
        self.pool.shutdown(wait=True, timeout=timeout)
        self.scheduler.stop()
        self._timers.shutdown(wait=False)
