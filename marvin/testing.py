"""Test harness for command authors.

In ``tests/conftest.py``: ``pytest_plugins = ["marvin.testing"]``. Then::

    def test_create(marvin_bot):
        bot = marvin_bot(commands.platform, user="alice@example.com")
        replies = bot.send("create platform environment named demo01")
        assert "Your requested workflow is complete." in replies.text
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from marvin.bootstrap import CLI, CONSOLE, build_app, build_table
from marvin.config import DEFAULT_CONFIG, Config, load_config
from marvin.core.authz import Authorizer, FrontEnd, LocalAuthorizer, Refused
from marvin.core.loader import handlers_in
from marvin.core.model import Message, Reply, State, User
from marvin.frontends.slack.blocks import blocks_for
from marvin.runtime.app import Marvin, local_user

__all__ = ["Replies", "Bot", "marvin_bot", "TEST_FRONT_END"]


@dataclass
class Replies:
    """Everything Marvin answered to one message, in order, with its kind."""

    said: list[str] = field(default_factory=list)
    whispered: list[str] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)
    reactions: list[State] = field(default_factory=list)
    blocks: list[list[dict]] = field(default_factory=list)
    execution_id: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    confirm_answer: bool | None = None
    prompts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.said + self.whispered)

    # Responder protocol
    def say(self, reply: str | Reply) -> None:
        with self._lock:
            if isinstance(reply, Reply):
                self.said.append(reply.text)
                blocks = blocks_for(reply)  # what Slack would be sent
                if blocks:
                    self.blocks.append(blocks)
            else:
                self.said.append(str(reply))

    def whisper(self, text: str) -> None:
        with self._lock:
            self.whispered.append(text)

    def progress_(self, text: str) -> None:
        with self._lock:
            self.progress.append(text)

    def react(self, state: State) -> None:
        with self._lock:
            self.reactions.append(state)

    def confirm(self, prompt: str, on_result: Callable[[bool], None]) -> None:
        self.prompts.append(prompt)
        on_result(bool(self.confirm_answer))


class _Responder:
    """Adapts Replies to the Responder protocol (``progress`` is a list on Replies)."""

    def __init__(self, replies: Replies) -> None:
        self.r = replies
        self.say, self.whisper, self.react = replies.say, replies.whisper, replies.react
        self.progress = replies.progress_
        self.confirm = replies.confirm


class Bot:
    def __init__(self, app: Marvin, user: User) -> None:
        self.app = app
        self.user = user

    def send(
        self,
        text: str,
        *,
        user: User | str | None = None,
        wait: bool = True,
        timeout: float = 30.0,
        confirm: bool | None = None,
    ) -> Replies:
        """Send ``text`` as the test user; with ``wait``, return once the execution ended."""
        who = (
            self.user
            if user is None
            else (local_user(user, "test") if isinstance(user, str) else user)
        )
        replies = Replies(confirm_answer=confirm)
        msg = Message(text=text, user=who, responder=_Responder(replies), channel="C-test")
        replies.execution_id = self.app.process(msg)
        if wait and replies.execution_id:
            self.app.wait(replies.execution_id, timeout)
        return replies


def _claimed(user: User) -> User:
    """The harness's resolver: a test names its user by email, so the claim is the identity.
    Registered only by the harness, never by ``marvin serve``, ``shell`` or ``run``."""
    if not user.email:
        raise Refused("I can't tell who you are (no email).", "test user without email")
    return user


TEST_FRONT_END = FrontEnd("test", "cli", _claimed)


class TestDirectory:
    """Groups for test users: ``{email: [groups]}``; unknown emails are in no group."""

    def __init__(self, groups: dict[str, Iterable[str]]) -> None:
        self.groups = {k.lower(): frozenset(v) for k, v in groups.items()}

    def groups_for(self, email: str, *, fresh: bool = False) -> frozenset[str]:
        return self.groups.get(email.lower(), frozenset())


def make_bot(
    handlers: Iterable[Any],
    *,
    state_dir: Path,
    user: str = "tester@example.com",
    groups: Iterable[str] = ("ops",),
    authorizer: Authorizer | None = None,
    config: Config | None = None,
    env: dict[str, str] | None = None,
    frontends: Iterable[FrontEnd] = (),
) -> Bot:
    """A Marvin with only ``handlers`` (and the built-ins). Without ``authorizer``, every
    identified user may run everything, and ``user`` is in ``groups``."""
    fns: list[Any] = []
    for item in handlers:
        fns.extend(handlers_in(item) if isinstance(item, ModuleType) else [item])
    cfg = config or load_config(
        DEFAULT_CONFIG, env={**(env or {}), "MARVIN_STATE": str(state_dir / "marvin.sqlite3")}
    )
    if authorizer is None:
        authorizer = LocalAuthorizer(TestDirectory({user: groups}))
    app = build_app(
        cfg,
        table=build_table(fns),
        authorizer=authorizer,
        frontends=[TEST_FRONT_END, CONSOLE, CLI, *frontends],
    )
    return Bot(app, local_user(user, "test"))


@pytest.fixture
def marvin_bot(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: ``marvin_bot(module_or_function, ..., user=email, authorizer=None)``."""
    bots: list[Bot] = []

    def factory(*handlers: Any, **kwargs: Any) -> Bot:
        bot = make_bot(handlers, state_dir=tmp_path, **kwargs)
        bots.append(bot)
        return bot

    yield factory
    for bot in bots:
        bot.app.shutdown(timeout=5)
