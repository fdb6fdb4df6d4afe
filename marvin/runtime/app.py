"""The Marvin application: text in, at most one command out, run on Marvin's own pool.

Pipeline for each message (on the intake pool, never the front end's thread):
normalise -> match -> identify + authorise (hook) -> confirm (hook) -> execution record ->
admission (per-user cap, lock, queue bound) -> job pool -> handler. Every attempt leaves an
audit row. Jobs: ``cancel``, ``drain`` (graceful stop) and ``recover`` (after a crash).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from marvin.core.authz import Authorizer, LocalAuthorizer, Refused
from marvin.core.matcher import Ambiguous, Invalid, Matched, Matcher, Unknown
from marvin.core.model import Message, User
from marvin.core.normalize import normalize
from marvin.core.registry import Command, CommandTable
from marvin.runtime import control, execution
from marvin.runtime.jobs import BUSY, RESTARTING, Job, JobManager, JobPool, JobSettings, PoolFull
from marvin.runtime.locks import lock_key, process_identity
from marvin.runtime.store import Store, redact

__all__ = ["Marvin"]

log = structlog.get_logger("marvin")


class Marvin:
    def __init__(
        self,
        table: CommandTable,
        *,
        store: Store,
        authorizer: Authorizer | None = None,
        services: Any = None,
        workers: int = 32,
        queue_size: int = 256,
        intake_workers: int = 8,
        settings: JobSettings | None = None,
    ) -> None:
        self.table = table
        self.matcher = Matcher(table)
        self.store = store
        self.authorizer: Authorizer = authorizer or LocalAuthorizer()
        self.services = services
        self.settings = settings or JobSettings(workers=workers, queue=queue_size)
        self.jobs = JobManager(self.settings)
        self.pool = self.jobs.pool
        self.intake = JobPool(intake_workers, 4 * self.settings.queue, name="marvin-intake")
        self.notifier = JobPool(1, 256, name="marvin-notify")
        self.owner = process_identity(os.getpid())  # marks our executions for crash recovery

    # -- entry points -------------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Accept a chat message; returns at once, the work happens on Marvin's pools."""
        try:
            self.intake.submit(lambda: self._guarded(msg))
        except PoolFull:
            self._tell(msg, BUSY)
        except RuntimeError:  # shut down
            self._tell(msg, RESTARTING)

    def _tell(self, msg: Message, text: str) -> None:
        """Answer an overloaded moment from the notifier thread: the caller is a front end's
        event thread, which a Slack call (with its rate-limit retries) must never hold."""
        try:
            self.notifier.submit(lambda: msg.responder.whisper(text))
        except (PoolFull, RuntimeError):
            log.warning("dropped a busy notice", user=msg.user.id)

    def process(self, msg: Message) -> str | None:
        """Handle a message on the calling thread up to the job pool; returns the execution id."""
        text = normalize(msg.text)
        if not text:
            msg.responder.whisper("Say `help` to see what I can do.")
            return None
        result = self.matcher.match(text)
        if isinstance(result, Matched):
            return self.dispatch(msg, result.command, result.params)
        ref = result.command.ref if isinstance(result, Invalid) else None
        event = "unknown" if isinstance(result, Unknown) else "invalid"
        assert isinstance(result, (Unknown, Ambiguous, Invalid))
        try:  # usage lines and suggestions are for people Marvin would answer at all
            msg = replace(msg, user=self.authorizer.identify(msg.user))
        except Refused as exc:
            audit = {"ref": ref, "channel": msg.channel, "params": None}
            return self._refuse(msg, str(exc), exc.log_reason, audit)
        self.store.audit(
            event,
            user_id=msg.user.id,
            email=msg.user.email,
            channel=msg.channel,
            ref=ref,
            detail=result.message()[:300],
        )
        msg.responder.whisper(result.message())
        return None

    def dispatch(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], *, confirmed: bool = False
    ) -> str | None:
        """Authorise and start ``cmd``; returns the execution id, or None if refused."""
        secret = frozenset(n for n, p in cmd.params.items() if p.secret)
        shown = redact(params, secret)
        audit = dict(ref=cmd.ref, channel=msg.channel, params=shown)
        try:
            user = self.authorizer.identify(msg.user)
            msg = replace(msg, user=user)
            decision = self.authorizer.decide(user, cmd, params)
        except Refused as exc:
            return self._refuse(msg, str(exc), exc.log_reason, audit)
        if not decision.allowed:
            return self._refuse(msg, decision.reason, decision.reason, audit)
        if cmd.spec.inline:
            self._inline(msg, cmd, params)
            return None
        if decision.confirm and not confirmed:
            ask = getattr(msg.responder, "confirm", None)
            if ask is None:
                return self._refuse(
                    msg,
                    f"`{cmd.ref}` needs confirmation, which this front end "
                    "can't ask for (with `marvin run`, add --yes).",
                    "confirmation unavailable",
                    audit,
                )
            self.store.audit("confirm_requested", user_id=user.id, email=user.email, **audit)
            started: list[str | None] = []  # filled at once when the front end asks in-line
            ask(
                f"Run `{cmd.ref}` with {_describe(shown)}?",
                lambda ok: started.append(self._confirmed(ok, msg, cmd, params, audit)),
            )
            return started[0] if started else None
        return self._start(msg, cmd, params, decision.mfa, audit)

    def wait(self, ex_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until an execution ends (for the CLI and tests); returns its record."""
        job = self.jobs.get(ex_id)
        if job is not None:
            job.done.wait(timeout)
        return self.store.get(ex_id)

    def cancel(self, ex_id: str, by: User) -> str:
        """Cancel for the requester or a member of ``jobs.cancel_groups`` (see marvin.control)."""
        return control.cancel(self, ex_id, by)

    def drain(self, grace: float | None = None) -> list[str]:
        """Graceful stop; returns the ids recorded interrupted (see marvin.control)."""
        return control.drain(self, grace)

    def recover(self, notify: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """Mark executions of a dead process interrupted and tell requesters (marvin.control)."""
        return control.recover(self, notify)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop: what is still queued or running after ``timeout`` is recorded interrupted."""
        if self.jobs.live():
            self.drain(5.0 if timeout is None else timeout)
        else:
            self.jobs.close()
        self.intake.shutdown(wait=True, timeout=timeout)
        self.notifier.shutdown(wait=True, timeout=timeout)
        self.jobs.shutdown(timeout=timeout)

    # -- internals ----------------------------------------------------------------------------

    def _guarded(self, msg: Message) -> None:
        try:
            self.process(msg)
        except Exception:
            log.exception("message handling failed", user=msg.user.id)
            msg.responder.whisper("Something went wrong on my side; it has been logged.")

    def _refuse(self, msg: Message, text: str, reason: str, audit: dict[str, Any]) -> None:
        log.info("refused", user=msg.user.id, ref=audit.get("ref"), reason=reason)
        self.store.audit(
            "refused", user_id=msg.user.id, email=msg.user.email, detail=reason, **audit
        )
        msg.responder.whisper(text)
        return None

    def _confirmed(
        self,
        ok: bool,
        msg: Message,
        cmd: Command,
        params: Mapping[str, Any],
        audit: dict[str, Any],
    ) -> str | None:
        event = "confirmed" if ok else "cancelled"
        self.store.audit(event, user_id=msg.user.id, email=msg.user.email, **audit)
        if ok:
            # Minutes may have passed: identity, groups and policy are checked again.
            return self.dispatch(msg, cmd, params, confirmed=True)
        msg.responder.whisper(f"Cancelled; `{cmd.ref}` was not run.")
        return None

    def _inline(self, msg: Message, cmd: Command, params: Mapping[str, Any]) -> None:
        ctx = execution.Context(
            execution_id="-", command=cmd, params=params, message=msg, services=self.services
        )
        ctx.app = self  # built-ins (help, whoami, jobs) read the table and the store
        value = cmd.handler(ctx, **params)
        if value is not None:
            msg.responder.say(value)

    def _start(
        self,
        msg: Message,
        cmd: Command,
        params: Mapping[str, Any],
        mfa: bool,
        audit: dict[str, Any],
    ) -> str | None:
        user = msg.user
        ex_id = self.store.create_execution(
            ref=cmd.ref,
            params=audit["params"],
            user_id=user.id,
            email=user.email,
            channel=msg.channel,
            thread=msg.thread,
            source=user.source,
            pid=os.getpid(),
            owner=self.owner,
        )
        job = Job(
            ex_id,
            cmd,
            params,
            msg,
            audit["params"],
            timeout=float(cmd.spec.timeout or self.settings.default_timeout),
            mfa=mfa,
            lock=lock_key(
                cmd.spec.lock,
                cmd.spec.family,
                cmd.params,
                params,
                by_family=self.settings.lock_by_family,
            ),
        )

        def admitted() -> None:
            self.store.audit(
                "accepted", execution_id=ex_id, user_id=user.id, email=user.email, **audit
            )

        refusal = self.jobs.admit(job, self._run_job, admitted)
        if refusal is not None:
            self.store.update(
                ex_id, state="refused", reason=refusal.reason, finished_at=time.time()
            )
            self.store.audit(
                "refused",
                execution_id=ex_id,
                user_id=user.id,
                email=user.email,
                detail=refusal.reason,
                **audit,
            )
            log.info("refused", execution_id=ex_id, ref=cmd.ref, reason=refusal.reason)
            msg.responder.whisper(refusal.text)
            return ex_id
        msg.responder.react("accepted")
        if job.blocked_by is not None and job.lock is not None:
            msg.responder.say(
                f"{job.lock.describe()} is busy: {job.blocked_by.describe()}. "
                f"`{ex_id}` will start when it is free."
            )
        return ex_id

    def _run_job(self, job: Job) -> None:
        """On a job thread: MFA first (so a pending push never blocks other users), then run."""
        if job.mfa and not self._second_factor(job):
            return
        execution.run(self, job)

    second_factor: Callable[[Message, Command, str], bool] | None = None

    def _second_factor(self, job: Job) -> bool:
        """MFA runs on the job thread so a pending push never blocks other users."""
        msg, cmd, ex_id = job.message, job.command, job.execution_id
        if self.second_factor is None:
            reason = "a second factor is required but none is configured"
        elif self.second_factor(msg, cmd, ex_id):
            return True
        else:
            reason = "second factor not approved"
        if not job.claim():
            return False  # a drain or cancel recorded the outcome while the push was pending
        self.store.update(ex_id, state="refused", reason=reason, finished_at=time.time())
        self.store.audit(
            "refused",
            execution_id=ex_id,
            user_id=msg.user.id,
            email=msg.user.email,
            channel=msg.channel,
            ref=cmd.ref,
            detail=reason,
        )
        msg.responder.whisper(f"`{cmd.ref}` was not run: {reason}.")
        msg.responder.react("failed")
        return False


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "no parameters"


def local_user(email: str, source: str = "shell") -> User:
    """The console or CLI operator: identified by the email they were started with."""
    return User(id=f"local:{email}", email=email, name=email.split("@")[0], source=source)
