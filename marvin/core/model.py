"""The small shared vocabulary of the core: who asks, what they said, how Marvin answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["User", "Message", "Reply", "Responder", "State"]

State = Literal["accepted", "succeeded", "failed"]


@dataclass(frozen=True)
class User:
    """Who is asking. ``id`` is the stable key (a Slack user ID, or ``local:<email>`` for the
    console and CLI); ``name`` is for display only and is never used to decide anything."""

    id: str
    email: str | None
    name: str = ""
    source: str = "shell"  # slack | shell | cli | test
    team_id: str | None = None
    groups: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Reply:
    """Text for every front end, plus optional Block Kit blocks for Slack."""

    text: str
    blocks: list[dict[str, Any]] | None = None


class Responder(Protocol):
    """How a front end answers one message. Implementations must be thread-safe: replies come
    from job threads."""

    def say(self, reply: str | Reply) -> None:
        """A visible answer (a thread reply in a channel, a line on the console)."""

    def whisper(self, text: str) -> None:
        """An error or refusal for the requester only (ephemeral in channels)."""

    def progress(self, text: str) -> None:
        """Update the one progress message of this request."""

    def react(self, state: State) -> None:
        """Show the request's state (reactions in Slack)."""


@dataclass(frozen=True)
class Message:
    text: str
    user: User
    responder: Responder
    channel: str | None = None
    thread: str | None = None  # where replies go (Slack thread ts)
    ts: str | None = None
    is_dm: bool = True
