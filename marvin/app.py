"""The Marvin application: text in, at most one command out, run on Marvin's own pool.

Pipeline for each message (on the intake pool, never the front end's thread):
normalise -> match -> identify + authorise (hook) -> confirm (hook) -> execution record ->
job pool -> handler. Every attempt leaves an audit row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from marvin import execution
from marvin.authz import Authorizer, LocalAuthorizer, Refused
from marvin.jobs import JobPool, PoolFull
from marvin.matcher import Ambiguous, Invalid, Matched, Matcher, Unknown
from marvin.model import Message, User
from marvin.normalize import normalize
from marvin.registry import Command, CommandTable
from marvin.store import Store, redact

__all__ = ["Marvin"]

log = structlog.get_logger("marvin")
BUSY = "I'm busy right now; please try again in a minute."


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
    ) -> None:
        self.table = table
        self.matcher = Matcher(table)
        self.store = store
        self.authorizer: Authorizer = authorizer or LocalAuthorizer()
        self.services = services
        self.pool = JobPool(workers, queue_size, name="marvin-job")
        self.intake = JobPool(intake_workers, 4 * queue_size, name="marvin-intake")
        self._done: dict[str, threading.Event] = {}
        self._done_lock = threading.Lock()

    # -- entry points -------------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Accept a chat message; returns at once, the work happens on Marvin's pools."""
        try:
            self.intake.submit(lambda: self._guarded(msg))
        except PoolFull:
            msg.responder.whisper(BUSY)

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
                lambda ok: started.append(
                    self._confirmed(ok, msg, cmd, params, decision.mfa, audit)
                ),
            )
            return started[0] if started else None
        return self._start(msg, cmd, params, decision.mfa, audit)

    def wait(self, ex_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until an execution ends (for the CLI and tests); returns its record."""
        with self._done_lock:
            event = self._done.get(ex_id)
        if event is not None:
            event.wait(timeout)
        return self.store.get(ex_id)

    def shutdown(self, timeout: float | None = None) -> None:
        self.intake.shutdown(wait=True, timeout=timeout)
        self.pool.shutdown(wait=True, timeout=timeout)

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
        mfa: bool,
        audit: dict[str, Any],
    ) -> str | None:
        event = "confirmed" if ok else "cancelled"
        self.store.audit(event, user_id=msg.user.id, email=msg.user.email, **audit)
        if ok:
            return self._start(msg, cmd, params, mfa, audit)
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
        )
        self.store.audit("accepted", execution_id=ex_id, user_id=user.id, email=user.email, **audit)
        done = threading.Event()
        with self._done_lock:
            self._done[ex_id] = done

        def job() -> None:
            try:
                if mfa and not self._second_factor(msg, cmd, ex_id):
                    return
                execution.run(self, cmd, params, msg, ex_id)
            finally:
                done.set()
                with self._done_lock:
                    self._done.pop(ex_id, None)

        try:
            self.pool.submit(job)
        except (PoolFull, RuntimeError):
            self.store.update(ex_id, state="refused", reason="busy", finished_at=time.time())
            self.store.audit("refused", execution_id=ex_id, user_id=user.id, detail="busy")
            done.set()
            msg.responder.whisper(BUSY)
            return ex_id
        msg.responder.react("accepted")
        return ex_id

    second_factor: Callable[[Message, Command, str], bool] | None = None

    def _second_factor(self, msg: Message, cmd: Command, ex_id: str) -> bool:
        """MFA runs on the job thread so a pending push never blocks other users."""
        if self.second_factor is None:
            reason = "a second factor is required but none is configured"
        elif self.second_factor(msg, cmd, ex_id):
            return True
        else:
            reason = "second factor not approved"
        self.store.update(ex_id, state="refused", reason=reason, finished_at=time.time())
        self.store.audit(
            "refused", execution_id=ex_id, user_id=msg.user.id, ref=cmd.ref, detail=reason
        )
        msg.responder.whisper(f"`{cmd.ref}` was not run: {reason}.")
        msg.responder.react("failed")
        return False


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "no parameters"


def local_user(email: str, source: str = "shell") -> User:
    """The console or CLI operator: identified by the email they were started with."""
    return User(id=f"local:{email}", email=email, name=email.split("@")[0], source=source)
