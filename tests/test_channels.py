"""Channel-scoped rules (``channels:`` in rbac.yaml): ids, names bound by a front end, DMs as
a channel kind, the CLI unaffected, validation, and the Slack front end's binding of names
(conversations.list paging, renames) against the loopback fake Slack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from marvin import command
from marvin.bootstrap import build_table
from marvin.core.authz import ChannelBook
from marvin.core.model import User, Where
from marvin.frontends.slack.bot import web_client
from marvin.frontends.slack.channels import ChannelNames
from marvin.security.authorizer import PolicyAuthorizer
from marvin.security.policy import PolicyError, load_policy
from tests.fakes.slack import ApiError, FakeSlack

pytestmark = pytest.mark.timeout(30)


@command("test.ship", "ship {{ app }} to {{ environment }}", description="Ships",
         examples=["ship web to demo"])  # fmt: skip
def ship(ctx, app: str, environment: str) -> str:
    return "shipped"


TABLE = build_table([ship])
SHIP = TABLE["test.ship"]


class Everyone:
    def groups_for(self, email: str, *, fresh: bool = False) -> frozenset[str]:
        return frozenset({"ops"})


def authorizer(tmp_path: Path, channels: str) -> PolicyAuthorizer:
    path = tmp_path / "rbac.yaml"
    path.write_text(
        "rules:\n"
        "  - commands: [test.ship]\n"
        "    targets: {environment: [prod]}\n"
        "    groups: [ops]\n"
        f"    channels: {channels}\n"
        "  - commands: [test.ship]\n"
        "    groups: [ops]\n"
    )
    return PolicyAuthorizer(load_policy(path), Everyone())


def user(via: str = "chat", channel: str | None = "C0OPS1", dm: bool = False) -> User:
    return User("U1", "a@example.com", groups=frozenset({"ops"}), via=via,  # type: ignore[arg-type]
                where=Where(channel, dm))  # fmt: skip


def allowed(a: PolicyAuthorizer, who: User, environment: str = "prod") -> bool:
    return a.decide(who, SHIP, {"app": "web", "environment": environment}).allowed


def test_ids_allow_only_their_channels(tmp_path: Path) -> None:
    a = authorizer(tmp_path, "[C0OPS1]")
    assert allowed(a, user(channel="C0OPS1"))
    refused = a.decide(user(channel="C0OTHER"), SHIP, {"app": "web", "environment": "prod"})
    assert not refused.allowed and "<#C0OPS1>" in refused.reason
    assert "this channel" in refused.reason
    assert not allowed(a, user(channel="D0ME", dm=True))  # DMs only when the rule says dm
    assert allowed(a, user(channel="C0OTHER"), environment="demo")  # other rules: anywhere


def test_dm_is_a_channel_kind(tmp_path: Path) -> None:
    a = authorizer(tmp_path, "[dm]")
    assert allowed(a, user(channel="D0ME", dm=True))
    no = a.decide(user(channel="C0OPS1"), SHIP, {"app": "web", "environment": "prod"})
    assert not no.allowed and "a direct message with me" in no.reason


def test_names_match_only_once_bound_and_follow_renames(tmp_path: Path) -> None:
    a = authorizer(tmp_path, '["#Ops", C0FIXED]')
    book = a.channels()
    assert book.names == {"ops"}
    assert not allowed(a, user(channel="C0OPS1"))  # unbound: fail closed
    assert allowed(a, user(channel="C0FIXED"))
    book.bind("ops", "C0OPS1")
    assert allowed(a, user(channel="C0OPS1"))
    book.unbind("C0OPS1")  # renamed away
    book.bind("ops", "C0NEW")
    assert not allowed(a, user(channel="C0OPS1")) and allowed(a, user(channel="C0NEW"))
    book.bind("general", "C0GEN")  # not a name the policy mentions: ignored
    assert book.ids(["general"]) == frozenset()


def test_command_line_and_api_have_no_channel(tmp_path: Path) -> None:
    a = authorizer(tmp_path, "[C0OPS1]")
    assert allowed(a, user(via="cli", channel=None))
    assert allowed(a, user(via="api", channel=None))
    assert not allowed(a, user(via="chat", channel=None))  # chat without a channel: refused


@pytest.mark.parametrize("bad", ["[ops]", "['#']", "[c0lower]", "[]", "'#ops extra'"])
def test_bad_channel_entries_are_start_up_errors(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PolicyError, match="channels"):
        authorizer(tmp_path, bad)


def test_slack_binds_names_from_conversations_list_and_events() -> None:
    pages: list[dict[str, Any]] = []

    def listing(args: dict[str, Any]) -> dict[str, Any]:
        pages.append(args)
        if args.get("cursor") not in (None, "", "next"):
            raise ApiError("invalid_cursor")
        if not args.get("cursor"):
            chans = [{"id": "C0GEN", "name": "general"}, {"id": "C0OPS1", "name": "ops"}]
            return {"channels": chans, "response_metadata": {"next_cursor": "next"}}
        chans = [{"id": "C0SEC", "name": "security"}]
        return {"channels": chans, "response_metadata": {"next_cursor": ""}}

    with FakeSlack.start() as fake:
        fake.register_method("conversations.list", listing)
        book = ChannelBook(["#ops", "#security", "#nowhere"])
        names = ChannelNames(web_client(fake.bot_token, fake.api_url), book)
        assert names.load() == 2
        assert len(pages) == 2 and pages[1]["cursor"] == "next"
        assert book.ids(["ops", "security", "nowhere"]) == {"C0OPS1", "C0SEC"}
        names.on_event({"type": "channel_rename", "channel": {"id": "C0OPS1", "name": "old"}})
        names.on_event({"type": "channel_created", "channel": {"id": "C0NEW", "name": "ops"}})
        assert book.ids(["ops"]) == {"C0NEW"}
        fake.fail_next("conversations.list", status=200, error="missing_scope")
        assert (
            ChannelNames(web_client(fake.bot_token, fake.api_url), ChannelBook(["#x"])).load() == 0
        )
