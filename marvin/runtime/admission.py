"""The pipeline's last steps, once a request is authorised: the execution's durable record,
admission to the job pool (per-user cap, lock, queue bound) and, on the job thread, the
second factor. ``Marvin`` delegates here so ``app`` keeps the steps before them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from marvin.core.authz import Decision, SecondFactor
from marvin.core.facade import Outcome
from marvin.core.model import Message
from marvin.core.registry import Command
from marvin.runtime.audit import Attempt
from marvin.runtime.jobs import Job, JobSettings
from marvin.runtime.locks import lock_key
from marvin.runtime.parts import Runtime

__all__ = ["Admission", "NO_MFA_LOG", "second_factor"]

log = structlog.get_logger("marvin")

NO_MFA_LOG = "a second factor is required but none is configured (security.duo)"


class Admission:
    """Admits authorised requests to the job pool; ``run`` is what a job thread does then."""

    def __init__(self, rt: Runtime, settings: JobSettings, run: Callable[[Job], None]) -> None:
        self.rt, self.settings, self.run = rt, settings, run

    def record(
        self,
        msg: Message,
        cmd: Command,
        attempt: Attempt,
        *,
        state: str = "queued",
        pid: int | None = None,
    ) -> str:
        """The execution's durable record (its id), as every path that creates one writes it."""
        user = msg.user
        return self.rt.store.create_execution(
            ref=cmd.ref,
            params=attempt.params or {},
            user_id=user.id,
            email=user.email,
            channel=msg.channel,
            thread=msg.thread,
            source=user.source,
            state=state,
            pid=pid,
            owner=self.rt.owner,
            ts=msg.ts,
        )

    def start(
        self,
        msg: Message,
        cmd: Command,
        params: Mapping[str, Any],
        decision: Decision,
        attempt: Attempt,
        *,
        execution_id: str | None = None,
    ) -> Outcome:
        """Record the execution (or requeue an approved one) and admit it: accepted, or
        refused by the per-user cap, the lock or the queue bound."""
        rt, settings = self.rt, self.settings
        if execution_id is not None:  # approved: the execution exists since the request
            ex_id = execution_id
            rt.store.update(ex_id, state="queued", pid=os.getpid(), owner=rt.owner)
        else:
            ex_id = self.record(msg, cmd, attempt, pid=os.getpid())
        job = Job(
            ex_id,
            cmd,
            params,
            msg,
            attempt.params or {},
            timeout=float(cmd.spec.timeout or settings.default_timeout),
            mfa=decision.mfa,
            checks=tuple(dict.fromkeys([*cmd.spec.checks, *decision.checks])),
            lock=lock_key(
                cmd.spec.lock,
                cmd.spec.family,
                cmd.params,
                params,
                by_family=settings.lock_by_family,
            ),
        )

        def on_admitted() -> None:
            rt.recorder.record("accepted", attempt, execution_id=ex_id)

        refusal = rt.jobs.admit(job, self.run, on_admitted)
        if refusal is not None:
            rt.recorder.outcome(ex_id, "refused", attempt, refusal.reason, at=time.time())
            log.info("refused", execution_id=ex_id, ref=cmd.ref, reason=refusal.reason)
            msg.responder.whisper(refusal.text)
            return Outcome(refusal.kind, refusal.text, ex_id, cmd.ref)
        msg.responder.react("accepted")
        if job.blocked_by is not None and job.lock is not None:
            msg.responder.say(
                f"{job.lock.describe()} is busy: {job.blocked_by.describe()}. "
                f"`{ex_id}` will start when it is free."
            )
        return Outcome("accepted", execution_id=ex_id, ref=cmd.ref)


def second_factor(rt: Runtime, factor: SecondFactor | None, job: Job) -> bool:
    """On the job thread, before the handler: True if ``factor`` approved ``job``; otherwise
    the refusal is recorded and told (unless a drain or cancel got there first)."""
    msg, cmd, ex_id = job.message, job.command, job.execution_id
    if factor is None:
        reason = NO_MFA_LOG
    else:
        result = factor(msg, cmd, ex_id, job.cancel_event)
        event = "mfa_approved" if result.approved else "mfa_refused"
        rt.recorder.record(event, job.attempt, execution_id=ex_id, detail=result.detail)
        if result.approved:
            return True
        reason = "second factor not approved"
    if not job.claim():
        return False  # a drain or cancel recorded the outcome while the push was pending
    rt.recorder.outcome(ex_id, "refused", job.attempt, reason, at=time.time())
    msg.responder.whisper(f"`{cmd.ref}` was not run: {reason}.")
    msg.responder.react("failed")
    return False
