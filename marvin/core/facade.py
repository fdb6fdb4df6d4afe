"""``Operations``: what front ends and built-ins may ask of the application, and nothing more.

The runtime's ``Marvin`` implements it. Front ends hand it messages and run its lifecycle;
built-ins (``ctx.ops``) read the table, the live jobs and the audit trail through it. Nothing
outside the runtime reaches the store, the job manager or the authorizer directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from marvin.core.authz import Decision
from marvin.core.model import JobView, Message, Responder, User
from marvin.core.registry import Command, CommandTable

__all__ = ["Operations", "Cancel", "SharedState"]

Cancel = Callable[[], None]


class SharedState(Protocol):
    """What front ends keep in the store, so every process and replica agrees on it
    (``marvin.runtime.claims``): first claims of events, and open confirmations."""

    def claim(self, keys: Iterable[str], ttl: float) -> bool:
        """Claim ``keys`` for ``ttl`` s; True only for the first claim (not a redelivery)."""

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
    shared: SharedState

    # -- requests (front ends) ----------------------------------------------------------------
    def handle(self, msg: Message) -> None:
        """Accept a message and return at once; the work happens on Marvin's pools."""

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

    # -- who and what (built-ins) ---------------------------------------------------------------
    def identify(self, user: User, *, fresh: bool = False) -> User:
        """Resolve through the user's front end, then add directory groups (or raise Refused)."""

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision: ...

    def visible(self, user: User, cmd: Command) -> bool: ...

    def describe(self, user: User) -> list[str]: ...

    def is_auditor(self, user: User) -> bool: ...

    # -- executions (built-ins) -----------------------------------------------------------------
    def live(self) -> list[JobView]: ...

    def cancel(self, execution_id: str, by: User) -> str: ...

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

    # -- lifecycle (front ends) -----------------------------------------------------------------
    def recover(self, notify: Callable[[dict[str, Any]], None] | None = None) -> list[dict]: ...

    def start(self, notify: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
        """``recover``, then run actions due later on Marvin's own thread."""

    def run_due(self, notify: Callable[[dict[str, Any]], None] | None = None) -> None: ...

    def drain(self, grace: float | None = None) -> list[str]: ...

    def shutdown(self, timeout: float | None = None) -> None: ...
