"""``Operations``: what front ends and built-ins may ask of the application, and nothing more.

The runtime's ``Marvin`` implements it. Front ends hand it messages and run its lifecycle;
built-ins (``ctx.ops``) read the table, the live jobs and the audit trail through it. Nothing
outside the runtime reaches the store, the job manager or the authorizer directly.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol, TypeVar

from marvin.core.authz import Decision
from marvin.core.model import JobView, Message, User
from marvin.core.registry import Command, CommandTable

__all__ = ["Operations", "Cancel"]

Cancel = Callable[[], None]
T = TypeVar("T")


class Operations(Protocol):
    table: CommandTable

    # -- requests (front ends) ----------------------------------------------------------------
    def handle(self, msg: Message) -> None:
        """Accept a message and return at once; the work happens on Marvin's pools."""

    def process(self, msg: Message) -> str | None:
        """Handle a message on the calling thread up to the job pool; the execution id."""

    def dispatch(
        self, msg: Message, cmd: Command, params: Mapping[str, Any], *, confirmed: bool = False
    ) -> str | None:
        """Authorise and start ``cmd`` with bound ``params`` (the CLI, ``undo``)."""

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

    def remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``'s value, computed once per ``key`` for a while (bounded): the table and
        policy don't change while Marvin runs, so the key must hold whatever else it depends
        on (the user's groups and via, for ``help``)."""

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
