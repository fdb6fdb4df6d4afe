"""The Marvin application: text in, at most one command out, run on Marvin's own pool.

Pipeline for each message (on the intake pool, never the front end's thread):
normalise -> match -> identify (the front end's resolver, then directory groups) -> authorise
-> confirm -> execution record -> admission (per-user cap, lock, queue bound) -> job pool ->
second factor -> handler. Every attempt leaves an audit row (``marvin.runtime.audit``).
``Marvin`` implements ``marvin.core.facade.Operations`` for front ends and built-ins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import structlog

from marvin.core.authz import (
    Authorizer,
    ChannelBook,
    Decision,
    FrontEnd,
    FrontEnds,
    LocalAuthorizer,
    Refused,
    SecondFactor,
)
from marvin.core.cache import TTLCache
from marvin.core.facade import Cancel, Outcome, OutcomeKind, ResponderFor, Vote
from marvin.core.matcher import Ambiguous, Invalid, Matched, Matcher, Unknown
from marvin.core.model import Confirmation, JobView, Message, Private, Responder, User, Where
from marvin.core.normalize import normalize
from marvin.core.registry import Command, CommandTable
from marvin.runtime import admission, approvals, control, due, execution, plans, reads
from marvin.runtime.admission import NO_MFA_LOG, Admission
from marvin.runtime.apikeys import StoredKeys
from marvin.runtime.audit import Attempt
from marvin.runtime.claims import Shared
from marvin.runtime.jobs import BUSY, RESTARTING, Job, JobManager, JobPool, JobSettings, PoolFull
from marvin.runtime.lanes import Lanes
from marvin.runtime.lifecycle import Lifecycle, Notify
from marvin.runtime.parts import Runtime, connect
from marvin.runtime.replicas import StateSettings
from marvin.runtime.resume import message_of, request_of
from marvin.runtime.store import Store

__all__ = ["Marvin", "Runtime"]

log = structlog.get_logger("marvin")
T = TypeVar("T")

NO_SECOND_FACTOR = (
    "`{ref}` needs a second factor (a Duo push), and none is configured here "
    "(`security.duo` in marvin.yaml), so it was not run."
)


class Marvin:
    second_factor: SecondFactor | None = None  # None: commands that need MFA are refused

    def __init__(
        self,
        table: CommandTable,
        *,
        store: Store,
        authorizer: Authorizer | None = None,
        frontends: Iterable[FrontEnd] = (),
        services: Any = None,
        workers: int = 32,
        queue_size: int = 256,
        intake_workers: int = 8,
        settings: JobSettings | None = None,
        state: StateSettings | None = None,
    ) -> None:
        self.table = table
        self.matcher = Matcher(table)
        self.authorizer: Authorizer = authorizer or LocalAuthorizer()
        self.frontends = FrontEnds(frontends)
        self.settings = settings or JobSettings(workers=workers, queue=queue_size)
        # Shared state (the store): this process as a replica with a lease, locks, the
        # running-job table; the pulse thread keeps the lease and polls for cancel requests.
        self.state = state or StateSettings()
        self.rt, replicas, self.metrics = connect(store, services, self.settings, self.state)
        self.keys = StoredKeys(store)  # the HTTP API's identities (``marvin keys``)
        self.shared = Shared(store.db, store.replica)  # event claims, open confirmations
        self.rt.jobs.on_cancel_request = self._cancel_asked
        self.admission = Admission(self.rt, self.settings, self._run_job)
        self.intake = JobPool(intake_workers, 4 * self.settings.queue, name="marvin-intake")
        # One user's messages take at most half the intake workers (a slow users.info for them
        # must not hold up everyone else); the rest of theirs wait in their own lane.
        self.lanes: Lanes[Message] = Lanes(
            self.intake,
            self._guarded,
            per_user=max(1, intake_workers // 2),
            max_waiting=self.settings.queue,
        )
        self.notifier = JobPool(1, 256, name="marvin-notify")
        self._memo: TTLCache[Any] = TTLCache(600, 4096)  # remember(): e.g. each user's help
        # The pulse starts here; start(), drain() and shutdown() are the lifecycle's.
        self.life = Lifecycle(
            self.rt,
            replicas,
            self.state,
            self.shared,
            self.intake,
            self.notifier,
            sweep_approvals=lambda: approvals.sweep(self),
        )

    # The runtime's parts, for bootstrap, tests and benchmarks (front ends and built-ins use
    # the Operations methods below instead).
    @property
    def store(self) -> Store:
        return self.rt.store

    @property
    def jobs(self) -> JobManager:
        return self.rt.jobs

    @property
    def pool(self) -> JobPool:
        return self.rt.jobs.pool

    # -- requests -----------------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Accept a chat message; returns at once, the work happens on Marvin's pools."""
        try:
            self.lanes.submit(msg.user.id, msg)
        except PoolFull:
            self._tell(msg, BUSY)
        except RuntimeError:  # shut down
            self._tell(msg, RESTARTING)

    def process(self, msg: Message) -> str | None:
        """Handle a message on the calling thread up to the job pool; returns the execution id."""
        return self.submit(msg).execution_id

    # ``submit`` and ``submit_command`` are ``process`` and ``dispatch`` with a typed outcome
    # (accepted, or refused and why), for front ends that answer at once (the HTTP API). The
    # requester is told through the responder either way.
    def submit(self, msg: Message) -> Outcome:
        started = time.perf_counter()
        outcome = self._process(msg)
        self._observe(msg, outcome, started)
        return outcome

    def submit_command(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], *, confirmed: bool = False
    ) -> Outcome:
        started = time.perf_counter()
        outcome = self._dispatch(msg, cmd, params, confirmed=confirmed)
        self._observe(msg, outcome, started)
        return outcome

    def _process(self, msg: Message) -> Outcome:
        text = normalize(msg.text)
        if not text:
            msg.responder.whisper("Say `help` to see what I can do.")
            return Outcome("empty", "Say `help` to see what I can do.")
        result = self.matcher.match(text)
        if isinstance(result, Matched):
            return self._dispatch(msg, result.command, result.params)
        assert isinstance(result, (Unknown, Ambiguous, Invalid))
        ref = result.command.ref if isinstance(result, Invalid) else None
        try:  # usage lines and suggestions are for people Marvin would answer at all
            msg = replace(msg, user=self.identify(msg.user))
        except Refused as exc:
            return self._refuse(msg, _known(Attempt.of(msg, ref), exc), str(exc), exc.log_reason)
        event = "unknown" if isinstance(result, Unknown) else "invalid"
        self.rt.recorder.record(event, Attempt.of(msg, ref), detail=result.message()[:300])
        msg.responder.whisper(result.message())
        kind: OutcomeKind = (
            "ambiguous"
            if isinstance(result, Ambiguous)
            else ("unknown" if isinstance(result, Unknown) else "invalid")
        )
        return Outcome(kind, result.message(), ref=ref)

    def dispatch(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], *, confirmed: bool = False
    ) -> str | None:
        """Authorise and start ``cmd``; returns the execution id, or None if refused. After a
        confirmation (minutes may have passed) identity and groups are read fresh."""
        return self.submit_command(msg, cmd, params, confirmed=confirmed).execution_id

    def _dispatch(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], *, confirmed: bool = False
    ) -> Outcome:
        shown = cmd.shown(params)
        attempt = Attempt.of(msg, cmd.ref, shown)
        claimed = msg.user
        try:
            # ``where`` (channel, DM) comes from the message, for channel-scoped rules.
            where = Where(msg.channel, msg.is_dm)
            user = self.identify(claimed, fresh=confirmed)
            msg = replace(msg, user=replace(user, where=where))
            attempt = Attempt.of(msg, cmd.ref, shown)
            decision = self.authorizer.decide(msg.user, cmd, params)
            if decision.allowed and (decision.mfa or decision.confirm) and not confirmed:
                # A sensitive command is decided on identity and groups read past every cache
                # (a removal shows at once); a directory or users.info that is down refuses.
                user = self.identify(claimed, fresh=True)
                msg = replace(msg, user=replace(user, where=where))
                attempt = Attempt.of(msg, cmd.ref, shown)
                decision = self.authorizer.decide(msg.user, cmd, params)
        except Refused as exc:
            return self._refuse(msg, _known(attempt, exc), str(exc), exc.log_reason)
        if not decision.allowed:
            return self._refuse(msg, attempt, decision.reason, decision.reason, "policy")
        if decision.mfa and self.second_factor is None:
            # Refuse before any confirmation question: no answer could make it runnable.
            text = NO_SECOND_FACTOR.format(ref=cmd.ref)
            return self._refuse(msg, attempt, text, NO_MFA_LOG, "policy")
        if cmd.spec.inline:
            self._inline(msg, cmd, params)
            return Outcome("inline", ref=cmd.ref)
        if decision.confirm and not confirmed:
            self.rt.recorder.record("confirm_requested", attempt)
            started: list[Outcome] = []  # filled at once when the front end asks in-line
            msg.responder.confirm(
                f"Run `{cmd.ref}` with {_describe(shown)}?",
                Confirmation(
                    lambda ok: started.append(self._confirmed(ok, msg, cmd, params, attempt)),
                    request_of(msg, cmd, params),
                ),
            )
            return started[0] if started else Outcome("confirming", ref=cmd.ref)
        if decision.approve is not None:  # two-person approval (marvin/runtime/approvals.py)
            applying = plans.applying(cmd)  # approvers see the plan being applied
            held = approvals.request(
                self,
                msg,
                cmd,
                params,
                decision,
                attempt,
                plan=applying.summary if applying else None,
                plan_id=applying.plan_id if applying else None,
            )
            return Outcome("awaiting_approval", execution_id=held, ref=cmd.ref)
        return self.admission.start(msg, cmd, params, decision, attempt)

    def start_approved(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], execution_id: str
    ) -> str | None:
        """After the last approval: the requester's groups (fresh) and the policy again, then
        admission under the execution id the request got. The checks run at its start."""
        attempt = Attempt.of(msg, cmd.ref, cmd.shown(params))
        try:
            user = msg.user
            if user.source in self.frontends:  # a front end this process runs: re-verify
                user = self.frontends.resolve(user, fresh=True)
            user = self.authorizer.identify(user, fresh=True)
            msg = replace(msg, user=replace(user, where=msg.user.where))
            decision = self.authorizer.decide(msg.user, cmd, params)
        except Refused as exc:
            decision = Decision(False, str(exc))
        if not decision.allowed:
            now = time.time()
            self.rt.recorder.outcome(execution_id, "refused", attempt, decision.reason, at=now)
            msg.responder.whisper(f"`{execution_id}` was approved but not run: {decision.reason}")
            return None
        return self.admission.start(
            msg, cmd, params, decision, attempt, execution_id=execution_id
        ).execution_id

    def vote(
        self,
        execution_id: str,
        voter: Message,
        approve: bool,
        responder_for: ResponderFor,
    ) -> Vote:
        """An approver's answer to an approval request (see marvin/runtime/approvals.py)."""
        return approvals.vote(self, execution_id, voter, approve, responder_for)

    def plan(self, msg: Message, cmd: Command, params: Mapping[str, Any]) -> str | None:
        """What ``cmd`` would change, changing nothing (marvin/runtime/plans.py)."""
        return plans.plan_request(self, msg, cmd, params)

    def plan_text(self, msg: Message, text: str) -> str | None:
        return plans.plan_text(self, msg, text)

    def apply(self, msg: Message, plan_id: str) -> str | None:
        """Run exactly what plan ``plan_id`` showed, if the state it was planned against holds."""
        return plans.apply_request(self, msg, plan_id)

    # For the request pipeline's helpers (approvals, plans): refuse and admit as dispatch does.
    def refuse(self, msg: Message, attempt: Attempt, text: str, reason: str) -> None:
        self._refuse(msg, attempt, text, reason)

    def admit(
        self,
        msg: Message,
        cmd: Command,
        params: Mapping[str, Any],
        decision: Decision,
        attempt: Attempt,
    ) -> str | None:
        return self.admission.start(msg, cmd, params, decision, attempt).execution_id

    def record_execution(
        self,
        msg: Message,
        cmd: Command,
        attempt: Attempt,
        *,
        state: str = "queued",
        pid: int | None = None,
    ) -> str:
        """The execution's durable record (its id), as every path that creates one writes it."""
        return self.admission.record(msg, cmd, attempt, state=state, pid=pid)

    def notice(self, row: dict[str, Any]) -> None:
        """Tell a request's thread something (``row["notice"]``) through the front end's
        notifier given to ``start``; nowhere when none was given (``marvin run``)."""
        self.life.notice(row)

    def resume(self, request: Mapping[str, Any], ok: bool, responder: Responder) -> str | None:
        """A confirmation asked by another process (replica) and answered here."""
        cmd = self.table.get(str(request.get("ref")))
        msg = message_of(request, responder)
        if cmd is None:  # the table changed since the question (a restart with new code)
            responder.whisper(f"`{request.get('ref')}` no longer exists here; nothing was run.")
            return None
        params = dict(request.get("params") or {})
        return self._confirmed(ok, msg, cmd, params, Attempt.of(msg, cmd.ref, cmd.shown(params)))

    def identify(self, user: User, *, fresh: bool = False) -> User:
        """The front end's resolver (an unregistered front end is refused), then groups."""
        return self.authorizer.identify(self.frontends.resolve(user, fresh=fresh), fresh=fresh)

    def wait(self, execution_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until an execution ends (for the CLI and tests); returns its record."""
        job = self.rt.jobs.get(execution_id)
        if job is not None:
            job.done.wait(timeout)
        return self.rt.store.get(execution_id)

    def call_later(self, delay: float, fn: Callable[[], None]) -> Cancel:
        return self.rt.jobs.scheduler.call_later(delay, fn).cancel

    def background(self, fn: Callable[[], None]) -> None:
        self.intake.submit(fn)

    # -- reads for the built-ins ----------------------------------------------------------------

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision:
        return self.authorizer.decide(user, cmd, params)

    def visible(self, user: User, cmd: Command) -> bool:
        return self.authorizer.visible(user, cmd)

    def describe(self, user: User) -> list[str]:
        return self.authorizer.describe(user)

    def is_auditor(self, user: User) -> bool:
        return self.authorizer.is_auditor(user)

    def channels(self) -> ChannelBook:
        return self.authorizer.channels()

    def remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        return self._memo.get(key, compute)  # type: ignore[return-value]

    def live(self) -> list[JobView]:
        """Every process's queued and running jobs (the store's running-job table), and the
        requests awaiting approval (and from whom)."""
        return reads.live(self.rt, approvals.views(self))

    def history(self, user_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Executions and refused requests (which never became one), newest first."""
        return reads.history(self.rt, user_id, limit)

    def execution(self, execution_id: str) -> dict[str, Any] | None:
        return self.rt.store.get(execution_id)

    def audit_trail(self, execution_id: str) -> list[dict[str, Any]]:
        return self.rt.store.audit_rows(execution_id)

    def audit(
        self,
        event: str,
        msg: Message,
        ref: str | None,
        *,
        detail: str | None = None,
        execution_id: str | None = None,
    ) -> None:
        self.rt.recorder.record(
            event, Attempt.of(msg, ref), detail=detail, execution_id=execution_id
        )

    def audit_user(
        self,
        event: str,
        user: User,
        *,
        channel: str | None = None,
        ref: str | None = None,
        detail: str | None = None,
        execution_id: str | None = None,
    ) -> None:
        user = reads.resolved(self.frontends, user)  # the row is written regardless
        self.rt.recorder.record(
            event, Attempt(user, ref, channel), detail=detail, execution_id=execution_id
        )

    # -- control ----------------------------------------------------------------------------------

    def cancel(self, execution_id: str, by: User) -> str:
        """Cancel for the requester or a member of ``jobs.cancel_groups`` (see control)."""
        return control.cancel(self.rt, execution_id, by)

    def request_cancel(self, execution_id: str, by: User) -> Outcome:
        return control.cancel_outcome(self.rt, execution_id, by)

    def metrics_text(self) -> bytes:
        return self.metrics.text()

    def drain(self, grace: float | None = None) -> list[str]:
        """Graceful stop; returns the ids recorded interrupted (see control). The replica
        then leaves the store: its lease ends, what it still holds is free to take."""
        return self.life.drain(grace)

    def _cancel_asked(self, job: Job, by: str) -> None:
        """Another process asked to cancel our ``job`` (allowed there already)."""
        control.withdraw(self.rt, job, by)

    def _sweep(self) -> None:
        """The pulse's periodic sweep (see lifecycle); tests call it to skip the wait."""
        self.life.sweep()

    def recover(self, notify: Notify | None = None) -> list[dict]:
        """Mark executions of a dead process interrupted and tell requesters (control)."""
        return control.recover(self.rt, notify)

    def start(self, notify: Notify | None = None) -> list[dict]:
        """For long-running front ends: ``recover``, then run actions due later (a maintenance
        window's end) on their own thread, telling requesters through ``notify``."""
        return self.life.start(notify)

    def run_due(self, notify: Notify | None = None) -> None:
        """Once, now: what fell due while no Marvin ran (``marvin run``)."""
        due.run_due(self.rt, notify)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop: what is still queued or running after ``timeout`` is recorded interrupted."""
        self.life.shutdown(timeout)

    # -- internals ----------------------------------------------------------------------------

    def _tell(self, msg: Message, text: str) -> None:
        """Answer an overloaded moment from the notifier thread: the caller is a front end's
        event thread, which a Slack call (with its rate-limit retries) must never hold."""
        try:
            self.notifier.submit(lambda: msg.responder.whisper(text))
        except (PoolFull, RuntimeError):
            log.warning("dropped a busy notice", user=msg.user.id)

    def _guarded(self, msg: Message) -> None:
        try:
            self.process(msg)
        except Exception:
            log.exception("message handling failed", user=msg.user.id)
            msg.responder.whisper("Something went wrong on my side; it has been logged.")

    def _refuse(
        self, msg: Message, attempt: Attempt, text: str, reason: str, kind: OutcomeKind = "identity"
    ) -> Outcome:
        log.info("refused", user=msg.user.id, ref=attempt.ref, reason=reason)
        self.rt.recorder.record("refused", attempt, detail=reason)
        msg.responder.whisper(text)
        return Outcome(kind, text, ref=attempt.ref)

    def _observe(self, msg: Message, outcome: Outcome, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.request(msg.user.source, outcome.kind, outcome.refused, elapsed)

    def _confirmed(
        self,
        ok: bool,
        msg: Message,
        cmd: Command,
        params: Mapping[str, Any],
        attempt: Attempt,
    ) -> Outcome:
        self.rt.recorder.record("confirmed" if ok else "cancelled", attempt)
        if ok:
            # Minutes may have passed: identity, groups and policy are checked again.
            return self.submit_command(msg, cmd, params, confirmed=True)
        msg.responder.whisper(f"Cancelled; `{cmd.ref}` was not run.")
        return Outcome("declined", f"Cancelled; `{cmd.ref}` was not run.", ref=cmd.ref)

    def _inline(self, msg: Message, cmd: Command, params: Mapping[str, Any]) -> None:
        ctx = execution.Context(
            execution_id="-",
            command=cmd,
            params=params,
            message=msg,
            services=self.rt.services,
            ops=self,  # built-ins read the table, the jobs and the audit trail
        )
        value = cmd.handler(ctx, **params)
        if isinstance(value, Private):  # for the asker alone
            msg.responder.whisper(str(value))
        elif value is not None:
            msg.responder.say(value)

    def _run_job(self, job: Job) -> None:
        """On a job thread: MFA first (so a pending push never blocks other users), then run."""
        if job.mfa and not admission.second_factor(self.rt, self.second_factor, job):
            return
        execution.run(self.rt, job)


def _known(attempt: Attempt, exc: Refused) -> Attempt:
    """The attempt with the email the refusing step knew (the audit row's email column)."""
    if attempt.email or not exc.email:
        return attempt
    return replace(attempt, user=replace(attempt.user, email=exc.email))


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "no parameters"


def local_user(email: str, source: str = "shell") -> User:
    """The console or CLI operator: identified by the email they were started with."""
    return User(id=f"local:{email}", email=email, name=email.split("@")[0], source=source)
