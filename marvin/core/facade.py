"""``Operations``: what front ends and built-ins may ask of the application, and nothing more.

The runtime's ``Marvin`` implements it. Front ends hand it messages and run its lifecycle;
built-ins (``ctx.ops``) read the table, the live jobs and the audit trail through it. Nothing
outside the runtime reaches the store, the job manager or the authorizer directly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from marvin.core.apikeys import KeyRing
from marvin.core.authz import ChannelBook, Decision
from marvin.core.model import JobView, Message, Responder, User
from marvin.core.registry import Command, CommandTable

__all__ = [
    "Operations",
    "Cancel",
    "Outcome",
    "OutcomeKind",
    "REFUSALS",
    "Vote",
    "ResponderFor",
    "SharedState",
]

Cancel = Callable[[], None]
# The responder for a request's own thread, from where it was asked (``origin``: channel,
# thread, ts, dm, user_id), so an approved execution answers there.
ResponderFor = Callable[[Mapping[str, Any]], Responder]


@dataclass(frozen=True)
class Vote:
    """What an approver's answer got: ``accepted`` False is a refusal for the voter alone;
    ``closed`` means the request is decided (a front end may retire its buttons)."""

    accepted: bool
    text: str
    closed: bool = False


# What became of one request, for front ends that answer synchronously (the HTTP API):
#   accepted   an execution was created and admitted (it may wait for its lock, or a Duo push)
#   awaiting_approval  held for two-person approval (the id is the execution's)
#   inline     a built-in answered at once (help, whoami...); nothing was queued
#   confirming the front end was asked to confirm and will answer later (Slack buttons)
#   empty, unknown, ambiguous, invalid   the text or parameters (the same message as chat)
#   identity   who is asking could not be established (front end, directory)
#   policy     the policy refused (the rule's reason)
#   declined   a confirmation was asked and not given
#   locked, limit, busy, shutdown   admission refused (lock held, per-user cap, queue full,
#              stopping); the execution was recorded "refused"
#   finished, forbidden   (cancel) the execution has ended; not the asker's to cancel
OutcomeKind = Literal[
    "accepted",
    "awaiting_approval",
    "inline",
    "confirming",
    "empty",
    "unknown",
    "ambiguous",
    "invalid",
    "identity",
    "policy",
    "declined",
    "locked",
    "limit",
    "busy",
    "shutdown",
    "finished",
    "forbidden",
]
REFUSALS: frozenset[str] = frozenset(
    {"empty", "unknown", "ambiguous", "invalid", "identity", "policy", "declined"}
    | {"locked", "limit", "busy", "shutdown", "forbidden"}
)


@dataclass(frozen=True)
class Outcome:
    """The typed answer to one request; ``message`` is what chat would have been told."""

    kind: OutcomeKind
    message: str = ""
    execution_id: str | None = None
    ref: str | None = None

    @property
    def refused(self) -> bool:
        return self.kind in REFUSALS


T = TypeVar("T")


class SharedState(Protocol):
    """What front ends keep in the store, so every process and replica agrees on it
    (``marvin.runtime.claims``): first claims of events, and open confirmations."""

    def claim(self, keys: Iterable[str], ttl: float) -> bool:
        """Claim ``keys`` for ``ttl`` s; True only for the first claim (not a redelivery)."""

    def claim_many(self, batch: Sequence[Iterable[str]], ttl: float) -> list[bool]:
        """``claim`` for each key set of ``batch``, written together."""

    def ask(
        self,
        token: str,
        *,
        requester: str,
        prompt: str,
        request: Mapping[str, Any] | None,
        channel: str | None,
        thread_ts: str | None,
        expires_at: float,
    ) -> None: ...

    def posted(self, token: str, channel: str, ts: str) -> None: ...

    def waiting(self, requester: str) -> int:
        """Open questions of ``requester`` on every replica."""

    def answer(self, token: str, presser: str) -> tuple[str, dict[str, Any] | None]:
        """("answered", row) for the one press that counts; else why not, and the row."""

    def close(self, token: str, state: str = "expired") -> bool: ...


class Operations(Protocol):
    table: CommandTable
    keys: KeyRing  # API keys (the HTTP API's identities; ``marvin keys``)
    shared: SharedState

    # -- requests (front ends) ----------------------------------------------------------------
    def handle(self, msg: Message) -> None:
        """Accept a message and return at once; the work happens on Marvin's pools."""

    def submit(self, msg: Message) -> Outcome:
        """``process`` with its typed outcome (accepted, or refused and why)."""

    def submit_command(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], *, confirmed: bool = False
    ) -> Outcome:
        """``dispatch`` with its typed outcome."""

    def process(self, msg: Message) -> str | None:
        """Handle a message on the calling thread up to the job pool; the execution id."""

    def dispatch(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], *, confirmed: bool = False
    ) -> str | None:
        """Authorise and start ``cmd`` with bound ``params`` (the CLI, ``undo``)."""

    def resume(self, request: Mapping[str, Any], ok: bool, responder: Responder) -> str | None:
        """A confirmation answered in another process than the one that asked: rebuild the
        request (``Confirmation.request``) and go on as ``dispatch`` would after the answer."""

    def wait(self, execution_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until an execution ends; its record."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> Cancel:
        """Run ``fn`` on Marvin's timer after ``delay`` seconds; returns a canceller."""

    def background(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on Marvin's intake pool (never a front end's event thread)."""

    def vote(
        self, execution_id: str, voter: Message, approve: bool, responder_for: ResponderFor
    ) -> Vote:
        """An approver's Approve/Reject of a request awaiting approval; identity is checked
        fresh. The last approval starts the execution (answering via ``responder_for``)."""

    def channels(self) -> ChannelBook:
        """The channel names the policy mentions; a front end binds them to ids."""

    def plan(self, msg: Message, cmd: Command, params: Mapping[str, Any]) -> str | None:
        """Show what ``cmd`` would change, changing nothing; the plan's execution id."""

    def plan_text(self, msg: Message, text: str) -> str | None:
        """``plan <command text>``: match ``text`` as a message would be, then plan it."""

    def apply(self, msg: Message, plan_id: str) -> str | None:
        """Run exactly what a plan showed, if the state it was planned against holds."""

    # -- who and what (built-ins) ---------------------------------------------------------------
    def identify(self, user: User, *, fresh: bool = False) -> User:
        """Resolve through the user's front end, then add directory groups (or raise Refused)."""

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision: ...

    def visible(self, user: User, cmd: Command) -> bool: ...

    def describe(self, user: User) -> list[str]: ...

    def is_auditor(self, user: User) -> bool: ...

    def remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``'s value, computed once per ``key`` for a while (bounded): the table and
        policy don't change while Marvin runs, so the key must hold whatever else it depends
        on (the user's groups and via, for ``help``)."""

    # -- executions (built-ins) -----------------------------------------------------------------
    def live(self) -> list[JobView]: ...

    def cancel(self, execution_id: str, by: User) -> str: ...

    def request_cancel(self, execution_id: str, by: User) -> Outcome:
        """``cancel`` with its typed outcome: accepted, unknown, finished or forbidden."""

    def metrics_text(self) -> bytes:
        """The application's metrics in Prometheus' text format."""

    def history(self, user_id: str | None, limit: int) -> list[dict[str, Any]]: ...

    def execution(self, execution_id: str) -> dict[str, Any] | None: ...

    def audit_trail(self, execution_id: str) -> list[dict[str, Any]]: ...

    def audit(
        self,
        event: str,
        msg: Message,
        ref: str | None,
        *,
        detail: str | None = None,
        execution_id: str | None = None,
    ) -> None:
        """Record an audit row for something a built-in did (or refused) for ``msg``."""

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
        """Record an audit row for something ``user`` tried outside a message (a refused
        button press, an undeliverable reply); the email is filled when the user's front end
        can tell it."""

    # -- lifecycle (front ends) -----------------------------------------------------------------
    def recover(self, notify: Callable[[dict[str, Any]], None] | None = None) -> list[dict]: ...

    def start(self, notify: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """``recover``, then run actions due later on Marvin's own thread."""

    def run_due(self, notify: Callable[[dict[str, Any]], None] | None = None) -> None: ...

    def drain(self, grace: float | None = None) -> list[str]: ...

    def shutdown(self, timeout: float | None = None) -> None: ...
