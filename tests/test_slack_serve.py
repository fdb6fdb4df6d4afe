"""``marvin serve`` end to end: a real subprocess on Bolt Socket Mode against the loopback
fake Slack (tests/fakes/slack.py). One Marvin serves most tests (module scope, a user per
test where it matters); tests that kill the fake or the process start their own."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.ports import free_port
from tests.fakes.slack import CHANNEL, Call, FakeSlack
from tests.serving import Serve, marvin_yaml

pytestmark = pytest.mark.timeout(60)

ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"

COMMANDS = """
from marvin import Integer, command


@command("test.fast", "fast( {{ word }})?", description="A quick test command",
         examples=["fast", "fast hello"], ack="Starting fast")
def fast(ctx, word=None):
    return f"fast done {word or ''}".strip()


@command("test.slow", "slow {{ seconds }}", description="Sleeps", examples=["slow 3"],
         params={"seconds": Integer(min=0, max=60)}, ack="Sleeping {{ seconds }} s")
def slow(ctx, seconds):
    ctx.sleep(seconds)
    return "slow done"


@command("test.long", "long output {{ lines }}", description="Many lines",
         examples=["long output 100"], params={"lines": Integer(min=1, max=100000)})
def long_output(ctx, lines):
    return "\\n".join(f"line {i:05d} " + "x" * 60 for i in range(lines))


@command("test.danger", "danger", description="Asks first", examples=["danger"], confirm=True)
def danger(ctx):
    return "danger done"
"""


def write_config(root: Path) -> Path:
    """marvin.yaml's shape, with state, commands and security in ``root``."""
    (root / "commands").mkdir(parents=True, exist_ok=True)
    (root / "commands" / "testcmds.py").write_text(COMMANDS)
    (root / "rbac.yaml").write_text("rules:\n  - commands: ['test.*']\n    everyone: true\n")
    return marvin_yaml(
        root,
        directory="users:\n  alice@example.com: {groups: [ops]}\n"
        "  bob@example.com: {groups: [developers]}\n  carol@example.com: {groups: [developers]}\n",
        commands={"paths": ["commands"], "lint": "off"},
        security={"policy": "rbac.yaml"},
    )


def add_users(fake: FakeSlack) -> None:
    for uid in (ALICE, BOB, CAROL):
        fake.add_user(uid, email=f"{uid[2:].lower()}@example.com")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.start() as f:
        add_users(f)
        yield f


@pytest.fixture(scope="module")
def marvin(fake: FakeSlack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    port = free_port()
    serve = Serve(fake, write_config(tmp_path_factory.mktemp("serve")), "--health-port", str(port))
    serve.health_port = port  # type: ignore[attr-defined]
    try:
        fake.wait_connected(timeout=20)
    except TimeoutError:
        serve.stop()
        raise AssertionError(serve.output()) from None
    yield serve
    assert serve.stop() == 0, serve.output()[-3000:]
    assert fake.errors == []


def posts(fake: FakeSlack, since: int, thread: str | None = None) -> list[Call]:
    return [
        c
        for c in fake.calls[since:]
        if c.method == "chat.postMessage" and (thread is None or c.args.get("thread_ts") == thread)
    ]


def text_has(word: str) -> Callable[[Call], bool]:
    return lambda c: word in str(c.args.get("text", ""))


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except urllib.error.URLError:
        return 0  # not listening (yet)


def wait_health(port: int, status: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (got := health(port)) != status:
        assert time.monotonic() < deadline, f"/healthz answered {got}, expected {status}"
        time.sleep(0.05)


# -- talking ---------------------------------------------------------------------------------


def test_mention_gets_threaded_replies_and_reactions(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    event = fake.app_mention("help", user=ALICE)
    fake.wait_ack(fake.send_event(event))
    reply = fake.wait_for("chat.postMessage", timeout=10, since=n)
    assert reply.ok and reply.args["thread_ts"] == event["ts"]
    assert reply.args["blocks"][0]["type"] == "section" and "fast" in reply.args["text"]

    cmd = fake.app_mention("fast hello", user=ALICE)
    fake.send_event(cmd)
    done = fake.wait_for("chat.postMessage", text_has("fast done hello"), timeout=10, since=n)
    assert done.args["thread_ts"] == cmd["ts"] and "`ex-" in done.args["text"]
    said = [c.args["text"] for c in posts(fake, n, cmd["ts"])]
    assert said[0] == "Starting fast"  # the command's ack comes first
    deadline = time.monotonic() + 5
    want = {"eyes", "white_check_mark"}
    while {r for (_c, ts, r) in fake.reactions if ts == cmd["ts"]} != want:
        assert time.monotonic() < deadline, fake.reactions
        time.sleep(0.02)


def test_dm_gets_a_reply_in_the_conversation(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    event = fake.im_message("fast dm", user=BOB)
    fake.send_event(event)
    done = fake.wait_for("chat.postMessage", text_has("fast done dm"), timeout=10, since=n)
    assert done.args["channel"] == event["channel"] and "thread_ts" not in done.args


def test_unknown_command_is_whispered_in_channels(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    event = fake.app_mention("frobnicate the thing", user=CAROL)
    fake.send_event(event)
    eph = fake.wait_for(
        "chat.postEphemeral", lambda c: c.args["user"] == CAROL, timeout=10, since=n
    )
    # No thread exists under the mention yet, and Slack hides ephemerals sent into one.
    assert eph.args["channel"] == event["channel"] and "thread_ts" not in eph.args
    assert "I don't know that command" in eph.args["text"]


def test_long_output_is_split_in_the_thread(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    event = fake.app_mention("long output 120", user=BOB)  # ~8,600 characters
    fake.send_event(event)
    fake.wait_for("chat.postMessage", text_has("`ex-"), timeout=10, since=n)
    pieces = [c.args["text"] for c in posts(fake, n, event["ts"])]
    assert len(pieces) == 3 and all(len(p) <= 3500 for p in pieces)
    joined = "\n".join(pieces)
    assert all(f"line {i:05d} " in joined for i in range(120))


def test_confirmation_buttons_only_for_the_requester(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    event = fake.app_mention("danger", user=ALICE)
    fake.send_event(event)
    ask = fake.wait_for(
        "chat.postMessage",
        lambda c: "blocks" in c.args and c.args.get("thread_ts") == event["ts"],
        timeout=10,
        since=n,
    )
    token = ask.args["blocks"][1]["elements"][0]["value"]
    ts = ask.response["ts"]
    fake.send_interactive(fake.block_actions("marvin_confirm", token, user=BOB, message_ts=ts))
    eph = fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == BOB, timeout=10, since=n)
    assert f"<@{ALICE}>" in eph.args["text"]
    fake.send_interactive(fake.block_actions("marvin_confirm", token, user=ALICE, message_ts=ts))
    fake.wait_for("chat.postMessage", text_has("danger done"), timeout=10, since=n)
    assert f"<@{ALICE}> confirmed" in fake.message(CHANNEL, ts)["text"]


# -- never twice, never for bots ---------------------------------------------------------------


def test_redelivered_and_resent_events_run_once(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    event = fake.app_mention("fast once", user=CAROL)
    first = fake.send_event(event, event_id="Ev0ONCE")
    fake.send_event(event, event_id="Ev0ONCE", retry_attempt=1, retry_reason="timeout")
    fake.send_event(event, event_id="Ev0ONCE", retry_attempt=2, retry_reason="timeout")
    fake.send_event(event, event_id="Ev0TWICE")  # the same message under another event id
    dm = fake.im_message("fast once more", user=CAROL)
    fake.send_event(dm)
    fake.send_event({**dm, "type": "app_mention"})  # a message that arrived both ways
    fake.wait_for("chat.postMessage", text_has("fast done once more"), timeout=10, since=n)
    fake.wait_for("chat.postMessage", text_has("fast done once ("), timeout=10, since=n)
    time.sleep(0.5)  # a duplicate would have answered by now
    done = [c for c in posts(fake, n) if "fast done" in c.args["text"]]
    assert len(done) == 2, [c.args["text"] for c in done]
    assert fake.wait_ack(first).acked_at is not None
    assert all(e.acked_at for e in fake.envelopes), "every envelope is acknowledged"
    assert "duplicate event dropped" in marvin.output()


def test_bots_edits_and_deletions_never_trigger(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    said = fake.app_mention("fast original", user=BOB)
    fake.send_event(fake.bot_message(f"<@{fake.bot_user_id}> fast from a bot"))
    fake.send_event(fake.bot_message("fast", channel="D0OTHER", channel_type="im"))
    fake.send_event(fake.bot_message(f"<@{fake.bot_user_id}> fast", bot_id=fake.bot_id))
    fake.send_event(fake.message_changed(CHANNEL, said["ts"], f"<@{fake.bot_user_id}> fast x"))
    fake.send_event(fake.message_deleted(CHANNEL, said["ts"]))
    fake.send_event(fake.channel_message("fast in a channel, no mention", user=BOB))
    marker = fake.im_message("fast marker", user=BOB)
    fake.send_event(marker)
    fake.wait_for("chat.postMessage", text_has("fast done marker"), timeout=10, since=n)
    time.sleep(0.5)
    texts = [c.args.get("text", "") for c in fake.calls[n:] if c.method.startswith("chat.")]
    assert [t for t in texts if "fast done" in t] == [
        t for t in texts if "fast done marker" in t
    ], texts
    assert not [c for c in fake.calls[n:] if c.method == "chat.postEphemeral"]


# -- staying up --------------------------------------------------------------------------------


def test_reconnects_after_drop_refresh_and_link_disabled(fake: FakeSlack, marvin: Serve) -> None:
    for i, disrupt in enumerate(
        (
            fake.drop_connections,
            lambda: fake.send_disconnect("refresh_requested", close_after=0.1),
            lambda: fake.send_disconnect("warning", close_after=0.5),
            lambda: fake.send_disconnect("link_disabled", close_after=0.1),
        )
    ):
        count = fake.connection_count
        disrupt()
        fake.wait_connected(timeout=15, min_count=count + 1)
        n = len(fake.calls)
        fake.send_event(fake.app_mention(f"fast after{i}", user=ALICE))
        fake.wait_for("chat.postMessage", text_has(f"fast done after{i}"), timeout=10, since=n)
    assert "link_disabled" in marvin.output()
    wait_health(marvin.health_port, 200)  # type: ignore[attr-defined]


def test_rate_limited_reply_is_retried(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    fake.send_event(fake.im_message("fast limited", user=CAROL))
    done = fake.wait_for("chat.postMessage", text_has("fast done limited"), timeout=15, since=n)
    assert done.ok
    statuses = [c.status for c in fake.calls[n:] if c.method == "chat.postMessage"]
    assert statuses[0] == 429 and statuses[-1] == 200


def test_slow_command_does_not_delay_anyone_else(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    slow = fake.app_mention("slow 4", user=ALICE)
    fake.wait_ack(fake.send_event(slow))
    fake.wait_for("chat.postMessage", text_has("Sleeping 4 s"), timeout=10, since=n)
    started = time.monotonic()
    help_event = fake.app_mention("help", user=BOB)
    ack = fake.wait_ack(fake.send_event(help_event))
    assert ack.acked_at is not None and ack.sent_at is not None
    assert ack.acked_at - ack.sent_at < 0.5
    fake.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == help_event["ts"], since=n
    )
    assert time.monotonic() - started < 1.5  # not after the 4 s command
    assert not [c for c in posts(fake, n, slow["ts"]) if "slow done" in c.args["text"]]


# -- start, stop, health, recovery -------------------------------------------------------------


def test_health_then_sigterm_and_recovery(tmp_path: Path) -> None:
    config, port = write_config(tmp_path), free_port()
    fake = FakeSlack.start()
    started: list[Serve] = []
    try:
        add_users(fake)
        started.append(Serve(fake, config, "--health-port", str(port)))
        fake.wait_connected(timeout=20)
        wait_health(port, 200)
        n = len(fake.calls)
        slow = fake.app_mention("slow 30", user=ALICE)
        fake.send_event(slow)
        fake.wait_for("chat.postMessage", text_has("Sleeping 30 s"), timeout=10, since=n)
        started[0].stop(signal.SIGKILL)  # a crash: the execution stays "running" in the state

        second = Serve(fake, config, "--health-port", str(port))
        started.append(second)
        fake.wait_connected(timeout=20, min_count=2)
        notice = fake.wait_for(
            "chat.postMessage",
            lambda c: c.args.get("thread_ts") == slow["ts"] and "restart" in c.args["text"],
            timeout=10,
            since=n,
        )
        assert "`ex-" in notice.args["text"] and "Check" in notice.args["text"]
        wait_health(port, 200)
        fake.stop()
        wait_health(port, 503)  # Slack went away: the socket is down
        assert second.stop(signal.SIGTERM) == 0, second.output()[-3000:]
        assert "SIGTERM" in second.output()
    finally:
        fake.stop()
        for serve in started:  # never leave a bot running after a failed assertion
            if serve.proc.poll() is None:
                serve.proc.kill()
                serve.proc.wait(10)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLACK_APP_TOKEN": ""}, "SLACK_APP_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": "xoxp-1-user"}, "SLACK_BOT_TOKEN must start with xoxb-"),
        ({"SLACK_BOT_TOKEN": "xoxb-1-wrong"}, "Slack rejected SLACK_BOT_TOKEN (invalid_auth)"),
        ({"SLACK_APP_TOKEN": "xapp-1-wrong"}, "Slack rejected SLACK_APP_TOKEN (invalid_auth)"),
    ],
)
def test_bad_tokens_exit_2_with_one_clear_line(
    fake: FakeSlack, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    serve = Serve(fake, write_config(tmp_path), env=env)
    try:
        assert serve.proc.wait(30) == 2
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait(10)
    out = serve.output()
    lines = [line for line in out.splitlines() if line.startswith("marvin: ")]
    assert len(lines) == 1 and expected in lines[0], out
    assert "wrong" not in lines[0] and "docs/slack.md" in lines[0]
