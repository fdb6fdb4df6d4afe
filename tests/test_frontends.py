"""Identity per front end: a front end vouches for its users with its own resolver and says
which channel kind it is; the security chain trusts nothing else. A fake extra front end
("matrix") shows that its users get no trust they were not given, and that ``via`` and
``chat: false`` hold for it as for Slack."""

from __future__ import annotations

from pathlib import Path

import pytest

from marvin import command
from marvin.bootstrap import build_app, build_table
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.core.authz import FrontEnd, Refused
from marvin.core.model import User
from marvin.core.registry import TableError
from marvin.runtime.execution import Context
from marvin.security.authorizer import PolicyAuthorizer
from marvin.security.directory import StaticDirectory
from marvin.security.policy import PolicyError, load_policy
from marvin.testing import Bot, Replies

pytestmark = pytest.mark.timeout(30)


@command("ops.peek", "peek at {{ host }}", description="read-only", examples=["peek at web1"])
def peek(ctx: Context, host: str) -> str:
    return f"peeked at {host}"


@command("ops.wipe", "wipe {{ host }}", description="CLI only by policy", examples=["wipe web1"])
def wipe(ctx: Context, host: str) -> str:
    return f"wiped {host}"


@command(
    "ops.reset",
    "reset {{ host }}",
    description="CLI only by its own flag",
    examples=["reset web1"],
    chat=False,
)
def reset(ctx: Context, host: str) -> str:
    return f"reset {host}"


@command(
    "ops.report",
    "report on {{ host }}",
    description="chat and api only",
    examples=["report on web1"],
    via=["chat", "api"],
)
def report(ctx: Context, host: str) -> str:
    return f"report for {host}"


RULES = """
rules:
  - {commands: [ops.wipe], groups: [ops], chat: false}
  - {commands: [ops.peek, ops.reset, ops.report], groups: [ops]}
"""
DIRECTORY = "users:\n  admin@example.com: {groups: [ops]}\n  eve@example.com: {groups: []}\n"

# The fake front end's own directory of its user ids: the only thing it vouches for.
MATRIX_USERS = {"@eve:matrix.example": "eve@example.com"}


def matrix_resolver(user: User) -> User:
    email = MATRIX_USERS.get(user.id)
    if email is None:
        raise Refused("I don't know you on Matrix.", f"unknown matrix user {user.id}")
    return User(user.id, email, name=user.name, source=user.source)


MATRIX = FrontEnd("matrix", "chat", matrix_resolver)


@pytest.fixture
def app(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "rbac.yaml").write_text(RULES)
    (tmp_path / "directory.yaml").write_text(DIRECTORY)
    authz = PolicyAuthorizer(
        load_policy(tmp_path / "rbac.yaml"), StaticDirectory(tmp_path / "directory.yaml")
    )
    cfg = load_config(DEFAULT_CONFIG, env={"MARVIN_STATE": str(tmp_path / "m.sqlite3")})
    table = build_table([peek, wipe, reset, report])
    marvin = build_app(cfg, table=table, authorizer=authz, frontends=[MATRIX])
    yield marvin
    marvin.shutdown(timeout=5)


def send(app, text: str, user: User) -> Replies:  # type: ignore[no-untyped-def]
    return Bot(app, user).send(text, timeout=10)


def last_audit(app) -> dict:  # type: ignore[no-untyped-def]
    return app.store.audit_rows()[-1]


def test_a_claimed_email_buys_nothing(app) -> None:  # type: ignore[no-untyped-def]
    # Eve's Matrix account claims the admin's email: the resolver replaces the claim.
    eve = User("@eve:matrix.example", "admin@example.com", source="matrix")
    r = send(app, "peek at web1", eve)
    assert r.whispered and "ops" in r.whispered[0] and not r.said
    row = last_audit(app)
    assert row["event"] == "refused" and row["email"] == "eve@example.com"
    # An id the front end does not vouch for is refused, whatever it claims.
    stranger = User("@mallory:matrix.example", "admin@example.com", source="matrix")
    r = send(app, "peek at web1", stranger)
    assert r.whispered == ["I don't know you on Matrix."]


def test_an_unregistered_front_end_fails_closed(app) -> None:  # type: ignore[no-untyped-def]
    for source in ("irc", "slack", "shell", "cli", "test"):  # none registered in this app
        r = send(app, "peek at web1", User("local:admin@example.com", "admin@example.com",
                                          source=source))  # fmt: skip
        assert r.whispered and "don't know the way this request reached me" in r.whispered[0]
        assert not r.said
        row = last_audit(app)
        assert row["event"] == "refused" and f"unknown front end {source!r}" in row["detail"]


def test_via_holds_for_the_new_front_end(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(MATRIX_USERS, "@admin:matrix.example", "admin@example.com")
    admin = User("@admin:matrix.example", None, source="matrix")
    assert send(app, "peek at web1", admin).said[0].startswith("peeked at web1")
    assert send(app, "report on web1", admin).said[0].startswith("report for web1")
    for text, ref in (("wipe web1", "ops.wipe"), ("reset web1", "ops.reset")):
        r = send(app, text, admin)
        assert not r.said and f"`{ref}` can't be run from chat" in r.whispered[0]
        assert f"marvin run {ref}" in r.whispered[0]
    # Whoami says which way the request came, from the chain, not the front end's claim.
    who = send(app, "whoami", admin).said[0]
    assert "via matrix, a chat channel" in who


def test_a_cli_front_end_is_not_an_api(tmp_path: Path) -> None:
    (tmp_path / "rbac.yaml").write_text(RULES)
    (tmp_path / "directory.yaml").write_text(DIRECTORY)
    authz = PolicyAuthorizer(
        load_policy(tmp_path / "rbac.yaml"), StaticDirectory(tmp_path / "directory.yaml")
    )
    authz.check_table(build_table([peek, wipe, reset, report]))
    table = {c.ref: c for c in build_table([peek, wipe, reset, report])}
    admin = User("k", "admin@example.com", groups=frozenset({"ops"}))
    for via, ref, allowed in (
        ("cli", "ops.wipe", True),
        ("api", "ops.wipe", False),  # chat: false is via: [cli], not "anything but chat"
        ("api", "ops.reset", False),
        ("api", "ops.report", True),
        ("cli", "ops.report", False),
        (None, "ops.peek", False),  # not resolved through a front end
    ):
        decision = authz.decide(User(**{**admin.__dict__, "via": via}), table[ref], {"host": "h"})
        assert decision.allowed is allowed, (via, ref)


def test_via_in_policy_and_commands_is_validated(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="via must name some of chat, cli, api"):
        command("x.y", "x y", description="d", examples=["x y"], via=["sms"])
    (tmp_path / "rbac.yaml").write_text("rules:\n  - {commands: [ops.peek], everyone: true, "
                                        "via: [cli], chat: false}\n")  # fmt: skip
    with pytest.raises(PolicyError, match="either via or chat"):
        load_policy(tmp_path / "rbac.yaml")
    (tmp_path / "rbac.yaml").write_text(
        "rules:\n  - {commands: [ops.peek], everyone: true, via: [fax]}\n"
    )
    with pytest.raises(PolicyError, match="'fax' is not a channel kind"):
        load_policy(tmp_path / "rbac.yaml")
    with pytest.raises(ValueError, match="via must be one of"):
        FrontEnd("pager", "sms", matrix_resolver)  # type: ignore[arg-type]
