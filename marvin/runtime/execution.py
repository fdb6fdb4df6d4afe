"""One execution of a command: its context object and the run on a job thread.

Outcomes: the handler's return value becomes the result message; an exception becomes a short
error with the execution id (the traceback goes to the log only); ``Cancelled`` (raised by
``ctx.sleep``/``ctx.check`` once ``cancel <id>`` was asked) records "cancelled".

Timeouts are cooperative, because Python cannot kill a thread: at the deadline
``ctx.cancel_event`` is set and a handler that honours it ends as ``timed_out``. One that keeps
going ``jobs.cancel_grace`` seconds longer is abandoned: the execution is still recorded
``timed_out`` and the requester told, its worker slot goes to a new thread, and its lock stays
held until the thread really returns (it may still be changing things); ``jobs`` lists it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from marvin.core.facade import Operations
from marvin.core.model import Cancelled, ExpectedFailure, Message, Refusal, Reply, User
from marvin.core.registry import Command
from marvin.logs import SECRETS_KEY, Secrets
from marvin.runtime import checks

if TYPE_CHECKING:
    from marvin.runtime.jobs import Job, Scheduler, Timer
    from marvin.runtime.parts import Runtime

__all__ = [
    "Context",
    "Cancelled",
    "render",
    "run",
    "finish",
    "cancelled_text",
    "secret_values",
]

_TEMPLATE = re.compile(r"{{\s*([\w.]+)\s*}}")
log = structlog.get_logger("marvin.execution")


def render(template: str, params: Mapping[str, Any], execution_id: str) -> str:
    """Fill ``{{ name }}`` (or StackStorm's ``{{ execution.parameters.name }}``) placeholders."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1).removeprefix("execution.parameters.")
        if key in ("execution.id", "execution_id"):
            return execution_id
        value = params.get(key)
        return "" if value is None else str(value)

    return _TEMPLATE.sub(sub, template)


class Context:
    """What a handler receives first: ``ctx.reply()``, ``ctx.progress()``, ``ctx.log``..."""

    PROGRESS_INTERVAL = 2.0  # Slack edits are rate limited; one update per 2 s is plenty

    def __init__(
        self,
        *,
        execution_id: str,
        command: Command,
        params: Mapping[str, Any],
        message: Message,
        services: Any = None,
        cancel_event: threading.Event | None = None,
        scheduler: Scheduler | None = None,
        on_progress: Callable[[str], None] | None = None,
        ops: Operations | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.ops = ops  # built-ins only: the application's declared operations
        self.command = command
        self.params = dict(params)
        self.message = message
        self.services = (
            services  # clients and settings from configuration (marvin.actions.clients.Clients)
        )
        self.cancel_event = cancel_event or threading.Event()
        self.log = structlog.get_logger("marvin.command").bind(
            execution_id=execution_id, ref=command.ref, user=message.user.id
        )
        secrets = secret_values(command, params) if params else ()
        if secrets:  # masked in every line this logger writes, from whichever thread
            self.log = self.log.bind(**{SECRETS_KEY: Secrets(secrets)})
        self.latest_progress: str | None = None
        self._scheduler = scheduler  # flushes a held-back update when its interval is up
        self._on_progress = on_progress  # e.g. keep the latest progress in the store
        self._last_progress = -math.inf
        self._pending_progress: str | None = None
        self._timer: Timer | None = None
        self._closed = False
        self._state_lock = threading.Lock()
        self._emit_lock = threading.Lock()  # updates reach the front end in the order made

    @property
    def user(self) -> User:
        return self.message.user

    def reply(self, text: str | Reply) -> None:
        self.message.responder.say(text)

    def progress(self, text: str) -> None:
        """Update the request's one progress message. At most one update per
        PROGRESS_INTERVAL is sent; a newer text replaces a held-back one, which is sent when
        the interval is up (by a timer) or before the result, so the last one is never lost."""
        with self._state_lock:
            if self._closed:
                return
            self.latest_progress = self._pending_progress = str(text)
            wait = self._last_progress + self.PROGRESS_INTERVAL - time.monotonic()
            if wait > 0:
                if self._timer is None and self._scheduler is not None:
                    self._timer = self._scheduler.call_later(wait, self._send_pending)
                return
        self._send_pending()

    def _send_pending(self) -> None:
        with self._emit_lock:
            with self._state_lock:
                text, self._pending_progress, self._timer = self._pending_progress, None, None
                if text is None or self._closed:
                    return
                self._last_progress = time.monotonic()
            try:
                self.message.responder.progress(text)
                if self._on_progress is not None:
                    self._on_progress(text)
            except Exception:  # a failed progress edit must not fail the command
                self.log.warning("progress update failed", exc_info=True)

    def flush_progress(self) -> None:
        """Send a held-back progress update now."""
        with self._state_lock:
            if self._timer is not None:
                self._timer.cancel()
        self._send_pending()

    def close(self) -> None:
        """No more progress: the result is about to be (or has been) said."""
        with self._state_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if the execution was cancelled or timed out."""
        if self.cancel_event.is_set():
            raise Cancelled(self.execution_id)

    def sleep(self, seconds: float) -> None:
        """Wait, waking at once when the execution is cancelled."""
        if self.cancel_event.wait(seconds):
            raise Cancelled(self.execution_id)

    def record_undo(self, **data: Any) -> None:
        """Record how to undo this execution (hook; the mechanism is marvin.runtime.undo)."""
        from marvin.runtime.undo import record_undo

        record_undo(self, **data)


def secret_values(command: Command, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The values of ``command``'s secret parameters in ``params`` (for log masking)."""
    return tuple(
        str(params[name])
        for name, ptype in command.params.items()
        if ptype.secret and params.get(name) is not None and str(params[name])
    )


def run(rt: Runtime, job: Job) -> None:
    """Run one accepted execution on the current (job) thread and report the outcome. Every
    log line on this thread meanwhile carries the execution id, ref and user."""
    bound: dict[str, Any] = {}
    secrets = secret_values(job.command, job.params)
    if secrets:  # every line logged on this thread meanwhile has them masked (marvin.logs)
        bound[SECRETS_KEY] = Secrets(secrets)
    with structlog.contextvars.bound_contextvars(
        execution_id=job.execution_id, ref=job.command.ref, user=job.message.user.id, **bound
    ):
        try:
            _execute(rt, job)
        except Exception as exc:
            # Marvin's own failure around the handler (e.g. the store): still one recorded
            # outcome, so nothing stays "queued" or "running" until the next restart.
            log.exception("execution machinery failed")
            reason = f"internal error: {type(exc).__name__}"
            text = f"`{job.command.ref}` failed (`{job.execution_id}`): {reason}"
            try:
                finish(rt, job, "failed", text, reason)
            except Exception:
                log.exception("could not record the failure")


def _execute(rt: Runtime, job: Job) -> None:
    cmd, params, msg, ex_id = job.command, job.params, job.message, job.execution_id
    store = rt.store
    ctx = Context(
        execution_id=ex_id,
        command=cmd,
        params=params,
        message=msg,
        services=rt.services,
        cancel_event=job.cancel_event,
        scheduler=rt.jobs.scheduler,
        on_progress=lambda text: store.update(ex_id, progress=text[:1000]),
    )
    job.ctx = ctx
    if ctx.cancelled:  # cancelled in the instant between leaving the queue and starting
        finish(rt, job, "cancelled", cancelled_text(job, started=False), "cancelled")
        return
    store.update(ex_id, state="running", started_at=time.time())
    ctx.log.info("execution started")
    watch = None
    if job.timeout > 0:
        watch = rt.jobs.scheduler.call_later(job.timeout, lambda: _time_out(rt, job))
    try:
        # Out-of-band checks (marvin/runtime/checks.py), just before the handler: after any
        # confirmation or second factor. On a refusal the outcome is recorded already.
        def record(event: str, detail: str) -> None:
            rt.recorder.record(event, job.attempt, execution_id=ex_id, detail=detail)

        refusal = checks.run(job.checks, ctx, record)
        if refusal is not None:
            text, reason = refusal
            finish(rt, job, "refused", f"`{cmd.ref}` was not run (`{ex_id}`): {text}", reason)
            return
        if cmd.spec.ack:
            msg.responder.say(render(cmd.spec.ack, params, ex_id))
        value = cmd.handler(ctx, **params)
    except Exception as exc:
        if job.timed_out:
            finish(rt, job, "timed_out", _timeout_text(job), f"timed out after {job.timeout:g} s")
        elif isinstance(exc, Cancelled) or ctx.cancelled:
            finish(rt, job, "cancelled", cancelled_text(job, started=True), "cancelled")
        elif isinstance(exc, Refusal):
            reason = cmd.mask(str(exc), params)[:500]
            finish(rt, job, "refused", f"`{cmd.ref}` was not run (`{ex_id}`): {reason}", reason)
        else:
            if isinstance(exc, ExpectedFailure):  # told to the requester; no traceback
                ctx.log.warning("execution failed", error=f"{type(exc).__name__}: {exc}")
            else:
                ctx.log.exception("execution failed")
            reason = cmd.mask(f"{type(exc).__name__}: {exc}", params)[:500]
            finish(rt, job, "failed", f"`{cmd.ref}` failed (`{ex_id}`): {reason}", reason)
        return
    finally:
        if watch is not None:
            watch.cancel()
    if isinstance(value, Reply):
        text: str | Reply = Reply(f"{value.text} (`{ex_id}`)", value.blocks, execution_id=ex_id)
    else:
        body = (
            str(value) if value is not None else render(cmd.spec.result or "Done.", params, ex_id)
        )
        text = f"{body} (`{ex_id}`)"
    finish(rt, job, "succeeded", text, None)


def finish(
    rt: Runtime,
    job: Job,
    state: str,
    text: str | Reply,
    reason: str | None,
    *,
    abandon: bool = False,
) -> bool:
    """Record the one outcome of ``job`` and tell the requester; False if already recorded."""
    if not job.claim():
        return False
    msg, ctx = job.message, job.ctx
    if ctx is not None:
        ctx.flush_progress()  # the last progress comes before the result, never after
        ctx.close()
    rt.recorder.outcome(job.execution_id, state, job.attempt, reason, at=time.time())
    log.info("execution finished", execution_id=job.execution_id, ref=job.command.ref, state=state)
    if abandon:
        rt.jobs.abandon(job)
    else:
        rt.jobs.release(job, forget=False)  # free the lock before the requester reads this
    try:
        msg.responder.say(text)
        # A cancel or a restart is not a failure of the command: each has its own reaction.
        shown = state if state in ("succeeded", "cancelled", "interrupted") else "failed"
        msg.responder.react(shown)  # type: ignore[arg-type]
    except Exception:
        log.exception("could not deliver the result", execution_id=job.execution_id)
    job.done.set()
    if not abandon:
        rt.jobs.release(job)  # out of the live table only now: wait() sees it until here
    return True


def cancelled_text(job: Job, *, started: bool) -> str:
    by = job.cancelled_by
    who = f", as asked by {by}" if by and by != job.requester else ""
    when = "" if started else " before it started"
    return f"Cancelled `{job.execution_id}` ({job.command.ref}){when}{who}."


def _timeout_text(job: Job) -> str:
    return f"`{job.command.ref}` timed out after {job.timeout:g} s (`{job.execution_id}`)."


def _time_out(rt: Runtime, job: Job) -> None:
    """At the deadline: ask the handler to stop, and give it ``cancel_grace`` to do so."""
    if job.finished:
        return
    job.timed_out = True
    log.warning("execution timed out; asking it to stop", execution_id=job.execution_id)
    job.cancel_event.set()
    rt.jobs.scheduler.call_later(rt.jobs.settings.cancel_grace, lambda: _abandon(rt, job))


def _abandon(rt: Runtime, job: Job) -> None:
    if job.finished:
        return
    log.error(
        "timed-out handler ignores cancellation; abandoning its thread",
        execution_id=job.execution_id,
        ref=job.command.ref,
    )
    text = (
        _timeout_text(job) + " It did not stop when asked, so I stopped waiting for it; it may "
        "still be changing things, so check before retrying."
    )
    reason = f"timed out after {job.timeout:g} s; ignored cancellation, abandoned"
    finish(rt, job, "timed_out", text, reason, abandon=True)
