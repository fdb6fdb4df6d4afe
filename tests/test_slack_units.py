"""Slack front end, unit level: event filtering and dedupe, text splitting, the responder and
confirmations against the loopback fake Slack, settings and token checks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from marvin.config import ConfigError, load_config
from marvin.core.model import Reply
from marvin.core.text import split_text
from marvin.frontends.slack.confirm import CANCEL, CONFIRM, Confirmations
from marvin.frontends.slack.events import Claimer, Gate, classify, to_message
from marvin.frontends.slack.responder import SlackResponder
from marvin.frontends.slack.settings import SlackSettings, TokenError, check_tokens
from marvin.runtime.claims import Shared
from marvin.runtime.store import Store
from tests.fakes import slack as fakes
from tests.fakes.slack import FakeSlack

fake_slack = fakes.fake_slack  # re-exported so pytest finds the fixture here

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent
BOT = "U0MARVINBOT"


# -- filtering and dedupe ----------------------------------------------------------------------


def test_only_human_mentions_and_dms_are_commands(fake_slack: FakeSlack) -> None:
    f = fake_slack
    mention = f.app_mention("help")
    assert classify(mention, BOT) is None
    assert classify(f.im_message("help"), BOT) is None
    assert classify({**f.im_message("x"), "subtype": "thread_broadcast"}, BOT) is None
    ignored = {
        "channel message": f.channel_message("help"),
        "other bot": f.bot_message("help"),
        "other bot in a DM": f.bot_message("help", channel="D0X", channel_type="im"),
        "my own": f.bot_message("help", bot_id=f.bot_id),
        "my own by user": {**f.im_message("help"), "user": BOT},
        "bot posting as a user": {**f.im_message("help"), "bot_id": "B0OTHER"},
        "bot profile": {**f.app_mention("help"), "bot_profile": {"id": "B1"}},
        "edit": f.message_changed("C0GENERAL01", mention["ts"], "help"),
        # Slack re-sends an edited mention as app_mention with the old ts and "edited".
        "edited mention": {**f.app_mention("help"), "edited": {"user": "U1", "ts": "2.0"}},
        "deletion": f.message_deleted("C0GENERAL01", mention["ts"]),
        "join": {**f.im_message("joined"), "subtype": "channel_join"},
        "no user": {k: v for k, v in f.im_message("help").items() if k != "user"},
        "reaction": {"type": "reaction_added", "user": "U1", "reaction": "eyes"},
    }
    for name, event in ignored.items():
        assert classify(event, BOT) is not None, name


def test_dedupe_by_event_id_and_by_channel_ts(tmp_path: Path) -> None:
    """Through the Claimer on a real store: what runs, and what is a duplicate."""
    store = Store(tmp_path / "s.sqlite3")
    ran: list[str] = []
    claimer = Claimer(
        Shared(store.db, store.replica),
        900,
        lambda i: ran.append(f"{i.event_id} {i.event['ts']}"),
        lambda i: pytest.fail("the store is up"),
    )
    gate = Gate(BOT)
    event = {"type": "app_mention", "user": "U1", "text": "hi", "channel": "C1", "ts": "1.000001"}
    as_dm = {**event, "type": "message", "channel_type": "im"}
    other = {**event, "ts": "1.000002"}
    for payload in (
        {"event": event, "event_id": "Ev1"},
        {"event": event, "event_id": "Ev1"},  # a redelivery
        {"event": event, "event_id": "Ev2"},  # the same message under a new id
        {"event": as_dm, "event_id": "Ev3"},  # a DM mention arrives both ways
        {"event": other, "event_id": "Ev1"},  # the event id alone suffices
        {"event": {**other, "ts": "1.000003"}, "event_id": "Ev4"},
    ):
        inbound = gate.candidate(payload)
        assert inbound is not None
        claimer.submit(inbound)
    claimer.close()
    assert ran == ["Ev1 1.000001", "Ev4 1.000003"]


def test_message_carries_ids_not_names(fake_slack: FakeSlack) -> None:
    event = fake_slack.app_mention("help", user="U0ALICE", thread_ts="1.5", user_team="T0OTHER")
    inbound = Gate(BOT).candidate({"event": event, "event_id": "Ev9"})
    assert inbound is not None and not inbound.is_dm
    msg = to_message(inbound, responder=None)  # type: ignore[arg-type]
    assert (msg.user.id, msg.user.email, msg.user.name, msg.user.source) == (
        "U0ALICE",
        None,
        "",
        "slack",
    )
    assert msg.user.team_id == "T0OTHER" and msg.user.extra["team"] == fake_slack.team_id
    assert (msg.thread, msg.ts, msg.channel) == ("1.5", event["ts"], event["channel"])
    dm = Gate(BOT).candidate({"event": fake_slack.im_message("hi"), "event_id": "E"})
    assert dm is not None and dm.is_dm


# -- text splitting ----------------------------------------------------------------------------


def test_split_keeps_every_character_at_line_boundaries() -> None:
    text = "\n".join(f"line {i:04d} " + "x" * (i % 90) for i in range(600))
    pieces = split_text(text, 3500)
    assert len(pieces) > 1 and all(len(p) <= 3500 for p in pieces)
    assert "\n".join(pieces) == text
    assert all(p.split("\n")[0].startswith("line ") for p in pieces)  # never mid-line
    word = split_text("word " * 2000, 1000)
    assert all(len(p) <= 1000 for p in word) and "".join(word) == "word " * 2000


def test_split_keeps_code_blocks_closed() -> None:
    text = "before\n```\n" + "\n".join(f"{i}" * 30 for i in range(300)) + "\n```\nafter"
    pieces = split_text(text, 1000)
    assert len(pieces) > 2 and all(len(p) <= 1000 for p in pieces)
    assert all(p.count("```") % 2 == 0 for p in pieces)
    assert pieces[1].startswith("```\n")


# -- responder ---------------------------------------------------------------------------------


def _responder(fake: FakeSlack, *, dm: bool = False, **settings: object) -> SlackResponder:
    client = WebClient(token=fake.bot_token, base_url=fake.api_url)
    event = fake.im_message("x") if dm else fake.app_mention("x")
    fake.send_event(event)  # so the fake knows the message (reactions need it)
    return SlackResponder(
        client,
        channel=event["channel"],
        ts=event["ts"],
        user_id=event["user"],
        thread_ts=None if dm else event["ts"],
        is_dm=dm,
        settings=SlackSettings(**settings),  # type: ignore[arg-type]
    )


def test_replies_in_thread_reactions_and_blocks(fake_slack: FakeSlack) -> None:
    r = _responder(fake_slack)
    r.say("hello")
    r.react("accepted")
    r.react("accepted")  # already_reacted is not an error worth shouting about
    r.react("succeeded")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*help*"}}]
    r.say(Reply("help text", blocks))
    posts = fake_slack.calls_to("chat.postMessage")
    assert [p.args["thread_ts"] for p in posts] == [r.ts, r.ts]
    assert posts[1].args["blocks"] == blocks and posts[1].args["text"] == "help text"
    assert {n for (_c, ts, n) in fake_slack.reactions if ts == r.ts} == {
        "eyes",
        "white_check_mark",
    }


def test_long_output_split_or_attached_never_cut(fake_slack: FakeSlack) -> None:
    r = _responder(fake_slack, file_threshold_chars=20000)
    text = "\n".join(f"row {i:05d} " + "y" * 70 for i in range(120))  # ~9,600 chars
    r.say(text)
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 3 and all(len(p.args["text"]) <= 3500 for p in posts)
    assert "\n".join(p.args["text"] for p in posts) == text
    huge = "\n".join(f"row {i:05d} " + "z" * 70 for i in range(400)) + "\nDone (`ex-1`)"
    r.say(huge)
    (file,) = fake_slack.files.values()
    assert file.completed and file.content == huge.encode()
    done = fake_slack.wait_for("files.completeUploadExternal")
    assert done.args["thread_ts"] == r.ts and "ex-1" in done.args["initial_comment"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 3  # the file replaced messages


def test_whisper_is_ephemeral_in_channels_and_plain_in_dms(fake_slack: FakeSlack) -> None:
    r = _responder(fake_slack)
    r.whisper("not allowed")
    eph = fake_slack.wait_for("chat.postEphemeral")
    # No thread under the user's message yet: Slack would hide an ephemeral sent into it.
    assert eph.args["user"] == r.user_id and "thread_ts" not in eph.args
    assert not fake_slack.calls_to("chat.postMessage")
    r.say("started")  # now the thread exists, and later whispers go into it
    r.whisper("later")
    eph = fake_slack.wait_for("chat.postEphemeral", since=len(fake_slack.calls) - 1)
    assert eph.args["thread_ts"] == r.ts
    d = _responder(fake_slack, dm=True)
    mark = len(fake_slack.calls)
    d.whisper("not allowed")
    post = fake_slack.wait_for("chat.postMessage", since=mark)
    assert post.args["channel"] == d.channel and "thread_ts" not in post.args


def test_progress_updates_one_message(fake_slack: FakeSlack) -> None:
    r = _responder(fake_slack)
    for step in ("step 1", "step 2", "step 3"):
        r.progress(step)
    (post,) = fake_slack.calls_to("chat.postMessage")
    updates = fake_slack.calls_to("chat.update")
    assert [u.args["text"] for u in updates] == ["step 2", "step 3"]
    assert {u.args["ts"] for u in updates} == {post.response["ts"]}
    assert fake_slack.message(r.channel, post.response["ts"])["text"] == "step 3"


def test_api_failures_are_logged_not_raised(fake_slack: FakeSlack) -> None:
    r = _responder(fake_slack)
    fake_slack.fail_next("chat.postMessage", status=200, error="channel_not_found")
    r.say("lost")  # must not raise into the job thread
    failed, dm = fake_slack.calls_to("chat.postMessage")[-2:]
    assert not failed.ok and dm.ok and dm.args["channel"] == r.user_id  # told in a DM instead


# -- confirmations -----------------------------------------------------------------------------


class _Pool:
    def __init__(self) -> None:
        self.threads: list[str] = []

    def submit(self, job: Callable[[], None]) -> None:
        def run() -> None:
            self.threads.append(threading.current_thread().name)
            job()

        t = threading.Thread(target=run, name="marvin-intake-test")
        t.start()
        t.join(10)


def _press(fake: FakeSlack, c: Confirmations, action: str, user: str, ts: str, token: str) -> None:
    c.on_action(fake.block_actions(action, token, user=user, message_ts=ts))


def test_only_the_requester_confirms_once(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    pool, answers = _Pool(), []
    c = Confirmations(client, pool.submit, timeout=60)
    c.ask(
        channel="C0GENERAL01",
        thread_ts="1.000001",
        requester="U0ALICE",
        prompt="Run `x`?",
        on_result=lambda ok: answers.append((ok, threading.current_thread().name)),
    )
    post = fake_slack.wait_for("chat.postMessage")
    ts = post.response["ts"]
    assert post.args["thread_ts"] == "1.000001"
    buttons = post.args["blocks"][1]["elements"]
    assert [e["action_id"] for e in buttons] == [CONFIRM, CANCEL]
    token = buttons[0]["value"]
    _press(fake_slack, c, CONFIRM, "U0BOB", ts, token)
    eph = fake_slack.wait_for("chat.postEphemeral")
    assert eph.args["user"] == "U0BOB" and "Only <@U0ALICE>" in eph.args["text"]
    assert answers == []
    _press(fake_slack, c, CONFIRM, "U0ALICE", ts, token)
    assert answers == [(True, "marvin-intake-test")]  # on the pool, not the caller
    assert "<@U0ALICE> confirmed" in fake_slack.message("C0GENERAL01", ts)["text"]
    n = len(fake_slack.calls)
    _press(fake_slack, c, CANCEL, "U0ALICE", ts, token)
    late = fake_slack.wait_for("chat.postEphemeral", since=n)
    assert "already answered" in late.args["text"] and answers == [(True, "marvin-intake-test")]


def test_confirmation_expires(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    answers: list[bool] = []
    c = Confirmations(client, _Pool().submit, timeout=0.3)
    c.ask(
        channel="C0GENERAL01",
        thread_ts=None,
        requester="U0ALICE",
        prompt="Run `x`?",
        on_result=answers.append,
    )
    ts = fake_slack.wait_for("chat.postMessage").response["ts"]
    fake_slack.wait_for("chat.update", timeout=5)
    assert "Expired" in fake_slack.message("C0GENERAL01", ts)["text"] and len(c) == 0
    c.on_action(fake_slack.block_actions(CONFIRM, "unknown-or-expired", user="U0ALICE"))
    assert "expired" in fake_slack.wait_for("chat.postEphemeral").args["text"]
    assert answers == [False]  # expiry is answered "no" once, so it is audited and not run


def test_confirmation_post_failure_and_per_user_cap(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    answers: list[bool] = []
    c = Confirmations(client, _Pool().submit, timeout=60, per_user=2)
    ask = dict(
        channel="C0GENERAL01",
        thread_ts=None,
        requester="U0ALICE",
        prompt="Run `x`?",
        on_result=answers.append,
    )
    fake_slack.fail_next("chat.postMessage", status=200, error="invalid_blocks")
    c.ask(**ask)
    assert answers == [False] and len(c) == 0
    assert "couldn't post" in fake_slack.wait_for("chat.postEphemeral").args["text"]
    c.ask(**ask)
    c.ask(**ask)
    assert len(c) == 2 and answers == [False]
    mark = len(fake_slack.calls)
    c.ask(**ask)
    assert answers == [False, False] and len(c) == 2
    note = fake_slack.wait_for("chat.postEphemeral", since=mark)
    assert "already have 2 confirmations waiting" in note.args["text"]
    c.close()


# -- settings and tokens -----------------------------------------------------------------------


def _config(tmp_path: Path, slack: str) -> Path:
    path = tmp_path / "marvin.yaml"
    path.write_text(f"commands: {{paths: [.], lint: 'off'}}\nslack:\n{slack}")
    return path


def test_settings_defaults_and_errors(tmp_path: Path) -> None:
    ok = SlackSettings.from_config(
        load_config(_config(tmp_path, "  ping_interval: 1\n  reactions: {failed: ':boom:'}\n"))
    )
    assert ok.ping_interval == 1 and ok.reactions["failed"] == "boom"
    assert ok.reactions["accepted"] == "eyes" and ok.confirm_timeout == 300
    for bad, key in (
        ("  pingg: 1\n", "slack.pingg"),
        ("  ping_interval: 0\n", "slack.ping_interval"),
        ("  reactions: {done: eyes}\n", "slack.reactions.done"),
        ("  reactions: {failed: 'no way'}\n", "slack.reactions.failed"),
        ("  dedupe_seconds: 60\n", "slack.dedupe_seconds"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            SlackSettings.from_config(load_config(_config(tmp_path, bad)))


def test_token_checks_name_the_token_and_never_echo_it() -> None:
    bot, app = "xoxb-123-secret", "xapp-1-secret"
    assert check_tokens({"SLACK_BOT_TOKEN": bot, "SLACK_APP_TOKEN": app}) == (bot, app)
    cases = {
        "SLACK_APP_TOKEN is not set": {"SLACK_BOT_TOKEN": bot},
        "SLACK_BOT_TOKEN is not set": {"SLACK_APP_TOKEN": app},
        "SLACK_BOT_TOKEN must start with xoxb-": {
            "SLACK_BOT_TOKEN": "xoxp-9-secret",
            "SLACK_APP_TOKEN": app,
        },
        "SLACK_APP_TOKEN must start with xapp-": {"SLACK_BOT_TOKEN": bot, "SLACK_APP_TOKEN": bot},
    }
    for expected, env in cases.items():
        with pytest.raises(TokenError) as info:
            check_tokens(env)
        assert expected in str(info.value) and "secret" not in str(info.value)
        assert "docs/slack.md" in str(info.value)


def test_manifest_has_what_serve_needs() -> None:
    manifest = yaml.safe_load((ROOT / "config" / "slack-manifest.yaml").read_text())
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"]
    # Channel events keep rules scoped to channel names bound to ids (frontends/slack/channels).
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_mention",
        "message.im",
        "channel_rename",
        "channel_created",
        "group_rename",
    }
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert {
        "app_mentions:read",
        "chat:write",
        "im:history",
        "users:read",
        "users:read.email",
        "reactions:write",
        "files:write",
        "channels:read",
        "groups:read",
    } <= set(manifest["oauth_config"]["scopes"]["bot"])


def test_blocks_fall_back_to_text(fake_slack: FakeSlack) -> None:
    from marvin.core.model import Reply

    r = _responder(fake_slack)
    many = [{"type": "section", "text": {"type": "mrkdwn", "text": f"b{i}"}} for i in range(51)]
    r.say(Reply("all fifty-one", many))
    post = fake_slack.wait_for("chat.postMessage")
    assert post.args["text"] == "all fifty-one" and "blocks" not in post.args
    mark = len(fake_slack.calls)
    fake_slack.fail_next("chat.postMessage", status=200, error="invalid_blocks")
    r.say(Reply("plain survives", many[:2]))
    fake_slack.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("text") == "plain survives" and "blocks" not in c.args,
        since=mark,
    )
