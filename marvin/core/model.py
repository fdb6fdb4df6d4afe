"""The small shared vocabulary of the core: who asks, what they said, how Marvin answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "Private",
    "Refusal",
    "ExpectedFailure",
    "Cancelled",
    "User",
    "Where",
    "Message",
    "Reply",
    "Action",
    "Responder",
    "State",
    "Via",
    "VIAS",
    "JobView",
    "Confirmation",
]

State = Literal["accepted", "succeeded", "failed", "cancelled", "interrupted"]


class Private(str):
    """An answer meant for the asker alone (a refusal): a built-in returns it, and the front
    end whispers it (ephemeral in Slack) instead of saying it in the thread."""


class ExpectedFailure(Exception):
    """A failure the code anticipated (``ActionError``: "stack already exists"): the requester
    is told why, and the log gets one line without a traceback."""


class Cancelled(Exception):
    """Raised inside a handler by ``ctx.check()`` or ``ctx.sleep()`` once cancellation is asked."""


class Refusal(Exception):
    """Raised by a handler (or an action) that found the request does not fit what it acts on
    (a group tagged for another environment, say) before changing anything: the execution is
    recorded ``refused`` with this reason, not ``failed``."""


# The kind of channel a request came through. Policy (``via: [cli]``) and commands
# (``@command(via=...)``) name these, never a front end.
Via = Literal["chat", "cli", "api"]
VIAS: tuple[Via, ...] = ("chat", "cli", "api")


@dataclass(frozen=True)
class Where:
    """Where a request was made: the channel id (None on the console and CLI) and whether it
    is a direct message. The chain stamps it on the user from the message, so the policy can
    scope rules to channels (``channels:`` in rbac.yaml) without knowing any front end."""

    channel: str | None = None
    dm: bool = False


@dataclass(frozen=True)
class User:
    """Who is asking. ``id`` is the stable key (a Slack user ID, or ``local:<email>`` for the
    console and CLI); ``name`` is for display only and is never used to decide anything.

    A front end builds the user as it saw it (``source`` names the front end; any ``email``
    is a claim). Only the security chain fills ``via`` and ``groups``, after the front end's own
    identity resolver has replaced the claim with what it verified."""

    id: str
    email: str | None
    name: str = ""
    source: str = "shell"  # the front end's registered name
    team_id: str | None = None
    groups: frozenset[str] = frozenset()
    via: Via | None = None  # set by the chain from the registered front end, never by a claim
    where: Where | None = field(default=None, compare=False)  # set by the chain per request
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Action:
    """A choice offered with a reply (Slack: a button whose action id is ``marvin_<name>``
    and whose value is ``value``). Front ends without buttons show the text, which says how
    to answer in words (``approve ex-…``)."""

    label: str
    name: str
    value: str
    style: str | None = None  # "primary" | "danger"


@dataclass(frozen=True)
class Reply:
    """Text for every front end. ``sections`` (chunks of the text) and ``note`` (a footer)
    let a front end lay it out (Slack: section and context blocks); a command may also pass
    its own Slack ``blocks``."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    execution_id: str | None = None  # a front end may show it (Slack: a context line)
    sections: tuple[str, ...] | None = None
    note: str | None = None
    actions: tuple[Action, ...] = ()  # buttons under the reply (approval requests)


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

    def confirm(self, prompt: str, on_result: Callable[[bool], None]) -> None:
        """Ask the requester to confirm; ``on_result(answer)`` is called once, now or later
        (Slack buttons). A front end that cannot ask answers False at once."""


@dataclass(frozen=True)
class Message:
    text: str
    user: User
    responder: Responder
    channel: str | None = None
    thread: str | None = None  # where replies go (Slack thread ts)
    ts: str | None = None
    is_dm: bool = True


@dataclass(frozen=True)
class Confirmation:
    """The ``on_result`` that ``Responder.confirm`` receives: call it with the answer.
    ``request`` (JSON: ref, bound parameters, who, where) lets a front end whose answer may
    reach another process (Slack buttons, with replicas) keep the question in the store and
    resume it there through ``Operations.resume``."""

    answer: Callable[[bool], None]
    request: Mapping[str, Any]

    def __call__(self, ok: bool) -> None:
        self.answer(ok)


@dataclass(frozen=True)
class JobView:
    """A queued or running execution as the built-ins show it (no runtime internals)."""

    execution_id: str
    ref: str
    shown: Mapping[str, Any]  # parameters, secrets redacted
    requester: str
    state: str  # queued | waiting | running | abandoned | awaiting_approval
    created: float
    started: float | None
    lock: str | None  # how people name the lock it holds or waits for
    lock_holder: str | None  # the execution holding it, when this one waits
    stopping: bool
    progress: str | None
