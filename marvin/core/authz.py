"""The authorization contract: who is asking, through which kind of channel, and may they?

Identity belongs to the front ends (as Starlette's authentication backends do): each registers a
``FrontEnd`` with its own resolver (Slack: ``users.info``; console and CLI: the local operator;
the HTTP API: a key's owner) and the channel kind it is (``chat``, ``cli``, ``api``).
``FrontEnds.resolve`` runs the resolver of the front end a request came through and stamps the
kind; a request from a front end nobody registered is refused. Authorization is separate: an
``Authorizer`` adds directory groups and decides by policy, reading ``user.via``, never a front
end's name. ``LocalAuthorizer`` is the embedded default (every command its own flags allow).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from marvin.core.model import VIAS, Message, User, Via
from marvin.core.registry import Command

__all__ = [
    "Approval",
    "ChannelBook",
    "Decision",
    "Refused",
    "Authorizer",
    "LocalAuthorizer",
    "FrontEnd",
    "FrontEnds",
    "SecondFactor",
    "SecondFactorResult",
    "local_operator",
    "with_groups",
    "via_refusal",
    "command_vias",
]


class Refused(Exception):
    """The requester may not go on; ``str(exc)`` is shown to them, ``log_reason`` is logged.
    ``email``: whose account it was, when the refusing step knew it (for the audit row)."""

    def __init__(
        self, message: str, log_reason: str | None = None, *, email: str | None = None
    ) -> None:
        super().__init__(message)
        self.log_reason = log_reason or message
        self.email = email


@dataclass(frozen=True)
class Approval:
    """Two-person approval (``approve:`` in a policy rule): ``count`` distinct members of
    ``groups``, none of them the requester, must approve within ``timeout`` seconds."""

    groups: frozenset[str]
    count: int = 1
    timeout: float = 1800.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    mfa: bool = False
    confirm: bool = False
    checks: tuple[str, ...] = ()  # the deciding rule's out-of-band checks
    approve: Approval | None = None  # the deciding rule's approval requirement


class ChannelBook:
    """Channel names a policy mentions (``channels: ["#ops"]``) and the ids they stand for.
    The policy decides on ids only; a front end that knows names (Slack: conversations.list
    and channel_rename events) binds them here at start-up and on rename. A name nobody has
    bound matches no channel (fail closed)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = frozenset(n.lstrip("#").lower() for n in names)
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def bind(self, name: str, channel_id: str) -> None:
        name = name.lstrip("#").lower()
        if name in self.names:
            with self._lock:
                self._ids[name] = channel_id

    def unbind(self, channel_id: str) -> None:
        with self._lock:
            self._ids = {n: i for n, i in self._ids.items() if i != channel_id}

    def ids(self, names: Iterable[str]) -> frozenset[str]:
        with self._lock:
            return frozenset(self._ids[n] for n in names if n in self._ids)


IdentityResolver = Callable[[User], User]


@dataclass(frozen=True)
class FrontEnd:
    """A way in. ``resolve`` turns the user as the front end saw it into a verified one (or
    raises ``Refused``); whatever email the incoming ``User`` claims is the resolver's to
    check or replace. ``fresh``, when given, resolves without any cache (for checks that must
    see a removal at once)."""

    name: str
    via: Via
    resolve: IdentityResolver
    fresh: IdentityResolver | None = None

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise ValueError(f"front end {self.name!r}: via must be one of {', '.join(VIAS)}")


UNKNOWN_FRONT_END = "I don't know the way this request reached me, so I won't act on it."


class FrontEnds:
    """The registered front ends; frozen once built."""

    def __init__(self, frontends: Iterable[FrontEnd]) -> None:
        by_name: dict[str, FrontEnd] = {}
        for fe in frontends:
            if fe.name in by_name:
                raise ValueError(f"front end {fe.name!r} is registered twice")
            by_name[fe.name] = fe
        self._by_name = by_name

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def resolve(self, user: User, *, fresh: bool = False) -> User:
        fe = self._by_name.get(user.source)
        if fe is None:  # fail closed: nobody vouches for this user
            raise Refused(UNKNOWN_FRONT_END, f"unknown front end {user.source!r}")
        resolver = (fe.fresh or fe.resolve) if fresh else fe.resolve
        resolved = resolver(user)
        return replace(resolved, source=fe.name, via=fe.via, groups=frozenset())


def local_operator(user: User) -> User:
    """The console and CLI operator: whoever can start Marvin on this host names themselves
    with ``--as`` or ``shell.user``; the id ``local:<email>`` carries that choice."""
    email = user.id.removeprefix("local:") if user.id.startswith("local:") else ""
    if "@" not in email:
        raise Refused("I can't tell who you are (no email).", f"not a local operator id: {user.id}")
    return replace(user, email=email)


@dataclass(frozen=True)
class SecondFactorResult:
    approved: bool  # only for an explicit approval (e.g. a Duo push accepted)
    detail: str  # what happened, for the audit row


class SecondFactor(Protocol):
    def __call__(
        self, msg: Message, cmd: Command, execution_id: str, cancelled: threading.Event
    ) -> SecondFactorResult:
        """Ask; every outcome but an explicit approval refuses. Must not raise."""


class Authorizer(Protocol):
    def check_table(self, table: Iterable[Command], *, strict: bool = True) -> None:
        """Validate the policy against the command table (start-up errors when ``strict``)."""

    def identify(self, user: User, *, fresh: bool = False) -> User:
        """The resolved user with directory groups; raise Refused when unknown. ``fresh``
        bypasses caches (confirmations, MFA and other sensitive paths)."""

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision:
        """May ``user`` run ``cmd`` with ``params`` through ``user.via``?"""

    def visible(self, user: User, cmd: Command) -> bool:
        """Whether ``help`` shows ``cmd`` to ``user``."""

    def describe(self, user: User) -> list[str]:
        """Lines for ``whoami``: what needs a second factor or confirmation, and so on."""

    def is_auditor(self, user: User) -> bool:
        """May ``user`` read everyone's history and status?"""

    def channels(self) -> ChannelBook:
        """The channel names the policy mentions, for a front end to bind to ids."""


def command_vias(cmd: Command) -> frozenset[str]:
    return frozenset(cmd.spec.via)


def via_refusal(cmd: Command, via: str | None, allowed: Iterable[str]) -> Decision:
    allowed = sorted(set(allowed))
    if via is None:
        return Decision(False, "I can't tell how this request reached me, so I won't run it.")
    if "cli" in allowed:
        hint = f"An operator can run it from the command line: `marvin run {cmd.ref} ...`"
    else:
        hint = "It can be run from: " + ", ".join(allowed) + "."
    where = "chat" if via == "chat" else f"the {via}"
    return Decision(False, f"`{cmd.ref}` can't be run from {where}. {hint}")


NOT_IN_DIRECTORY = (
    "You're not in the directory, so I can't run commands for you. "
    "Ask an administrator to add {email}."
)
DIRECTORY_DOWN = "I can't check your groups right now; please try again later."


def with_groups(user: User, directory: Any, *, fresh: bool = False) -> User:
    """``user`` with their directory groups; every failure refuses (fails closed). An unknown
    email (the directory raises a ``LookupError``) is told apart from a directory that is down."""
    if not user.email:
        raise Refused("I can't tell who you are (no email).", "no email")
    try:
        groups = (
            directory.groups_for(user.email, fresh=True)
            if fresh
            else directory.groups_for(user.email)
        )
    except LookupError:
        raise Refused(
            NOT_IN_DIRECTORY.format(email=user.email),
            f"not in directory: {user.email}",
            email=user.email,
        ) from None
    except Exception as exc:
        raise Refused(
            DIRECTORY_DOWN,
            f"directory error for {user.email}: {type(exc).__name__}: {exc}",
            email=user.email,
        ) from None
    return replace(user, groups=frozenset(groups))


class LocalAuthorizer:
    """Embedded default: groups from a directory, every command allowed that its own flags
    allow. The security layer (``PolicyAuthorizer``) adds policy."""

    def __init__(self, directory: Any = None) -> None:
        self.directory = directory

    def check_table(self, table: Iterable[Command], *, strict: bool = True) -> None:
        return None  # no policy to check

    def identify(self, user: User, *, fresh: bool = False) -> User:
        if self.directory is None:
            if not user.email:
                raise Refused("I can't tell who you are (no email).", "no email")
            return user
        return with_groups(user, self.directory, fresh=fresh)

    def decide(self, user: User, cmd: Command, params: Mapping[str, Any]) -> Decision:
        if user.via not in command_vias(cmd):
            return via_refusal(cmd, user.via, command_vias(cmd))
        return Decision(True, confirm=cmd.spec.confirm, mfa=False)

    def visible(self, user: User, cmd: Command) -> bool:
        return user.via in command_vias(cmd)

    def describe(self, user: User) -> list[str]:
        return []

    def is_auditor(self, user: User) -> bool:
        return False

    def channels(self) -> ChannelBook:
        return _NO_CHANNELS


_NO_CHANNELS = ChannelBook()
