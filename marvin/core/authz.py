"""The authorisation hook: who is asking, and may they run this?

The core calls one ``Authorizer``; the security layer (Slack identity, directory groups,
policy, Duo) provides the real one. ``LocalAuthorizer`` is the embedded default for the console
and CLI: it trusts the operator's ``--as`` email and reads groups from the static directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from marvin.core.model import User
from marvin.core.registry import Command

__all__ = ["Decision", "Refused", "Authorizer", "LocalAuthorizer", "with_groups"]


class Refused(Exception):
    """The requester may not go on; ``str(exc)`` is shown to them, ``log_reason`` is logged."""

    def __init__(self, message: str, log_reason: str | None = None) -> None:
        super().__init__(message)
        self.log_reason = log_reason or message


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    mfa: bool = False
    confirm: bool = False


class Authorizer(Protocol):
    def identify(self, user: User) -> User:
        """Return the user with email and groups filled in; raise Refused when unknown."""

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision:
        """May ``user`` run ``cmd`` with ``params`` from ``user.source``?"""

    def visible(self, user: User, cmd: Command) -> bool:
        """Whether ``help`` shows ``cmd`` to ``user``."""


def chat_refusal(cmd: Command) -> Decision:
    return Decision(
        False,
        f"`{cmd.ref}` can't be run from chat. An operator can run it from "
        f"the command line: `marvin run {cmd.ref} ...`",
    )


NOT_IN_DIRECTORY = (
    "You're not in the directory, so I can't run commands for you. "
    "Ask an administrator to add {email}."
)
DIRECTORY_DOWN = "I can't check your groups right now; please try again later."


def with_groups(user: User, directory: Any) -> User:
    """``user`` with their directory groups; every failure refuses (fails closed). An unknown
    email (the directory raises a ``LookupError``) is told apart from a directory that is down."""
    if not user.email:
        raise Refused("I can't tell who you are (no email).", "no email")
    try:
        groups = directory.groups_for(user.email)
    except LookupError:
        raise Refused(
            NOT_IN_DIRECTORY.format(email=user.email), f"not in directory: {user.email}"
        ) from None
    except Exception as exc:
        raise Refused(
            DIRECTORY_DOWN, f"directory error for {user.email}: {type(exc).__name__}: {exc}"
        ) from None
    return replace(user, groups=frozenset(groups))


class LocalAuthorizer:
    """Embedded default: groups from a directory, every command allowed that its own flags
    allow. The security layer (``PolicyAuthorizer``) adds Slack identity and policy."""

    def __init__(self, directory: Any = None) -> None:
        self.directory = directory

    def identify(self, user: User) -> User:
        if self.directory is None:
            if not user.email:
                raise Refused("I can't tell who you are (no email).", "no email")
            return user
        return with_groups(user, self.directory)

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision:
        if user.source == "slack" and not cmd.spec.chat:
            return chat_refusal(cmd)
        return Decision(True, confirm=cmd.spec.confirm, mfa=False)

    def visible(self, user: User, cmd: Command) -> bool:
        return user.source != "slack" or cmd.spec.chat
