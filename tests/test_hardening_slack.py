"""Issue 9 through ``marvin serve`` on the fake Slack: reconnects, presses, envelopes, replies
that can't be delivered, interrupted executions, slow users.info. One Marvin for the module."""

from __future__ import annotations

import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.slack import CHANNEL, FakeSlack
from tests.fakes.slack_web import ApiError
from tests.serving import Serve
from tests.test_slack_serve import ALICE, BOB, CAROL, add_users, text_has, write_config

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.start() as f:
        add_users(f)
        yield f


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def marvin(fake: FakeSlack, root: Path) -> Iterator[Serve]:
    serve = Serve(fake, write_config(root))
    try:
        fake.wait_connected(timeout=20)
    except TimeoutError:
        serve.stop()
        raise AssertionError(serve.output()) from None
    yield serve
    assert serve.stop() == 0, serve.output()[-3000:]


def audit(root: Path, event: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(root / "state.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM audit WHERE event = ?", (event,))]
    finally:
        db.close()


def test_refresh_requested_does_not_stall_answers(fake: FakeSlack, marvin: Serve) -> None:
    for reason in ("refresh_requested", "warning"):
        count = fake.connection_count
        fake.send_disconnect(reason, close_after=8)  # Slack closes the old socket later
        fake.wait_connected(timeout=10, min_count=count + 1)
        n = len(fake.calls)
        started = time.monotonic()
        fake.send_event(fake.app_mention(f"fast {reason}", user=ALICE))
        fake.wait_for("chat.postMessage", text_has(f"fast done {reason}"), timeout=10, since=n)
        assert time.monotonic() - started < 1.0, f"{reason}: {time.monotonic() - started:.2f} s"


def send_raw_event(fake: FakeSlack, event: dict[str, Any]) -> str:
    """An events_api envelope as Slack frames it, without the fake's own bookkeeping (which
    needs a well-formed event)."""
    envelope_id = str(uuid.uuid4())
    payload = {"type": "event_callback", "team_id": fake.team_id, "api_app_id": fake.app_id,
               "event": event, "event_id": "Ev" + uuid.uuid4().hex[:10].upper()}  # fmt: skip
    body = {"envelope_id": envelope_id, "type": "events_api", "payload": payload,
            "accepts_response_payload": False, "retry_attempt": 0, "retry_reason": ""}  # fmt: skip
    return fake.send_envelope(body)


def test_malformed_envelopes_are_dropped_with_one_line(fake: FakeSlack, marvin: Serve) -> None:
    before = marvin.output().count("Traceback")
    good = fake.app_mention("fast ok", user=BOB)
    bad_events = [
        {**fake.app_mention("fast x", user=BOB), "text": {"not": "a string"}},
        {**fake.app_mention("fast x", user=BOB), "ts": ["1", "2"]},
        {**fake.app_mention("fast x", user=BOB), "thread_ts": {"a": 1}},
        {**fake.app_mention("fast x", user=BOB), "channel": 42},
        {**fake.im_message("fast x", user=BOB), "team": ["T"]},
    ]
    n = len(fake.calls)
    for event in bad_events:
        fake.wait_ack(send_raw_event(fake, event))
    press = fake.block_actions("marvin_confirm", "tok", user=BOB)
    for broken in (
        {**press, "actions": "marvin_confirm"},
        {**press, "user": "U0BOB"},
        {**press, "container": "C1"},
        {**press, "actions": [{"action_id": "marvin_confirm", "value": {"x": 1}}]},
        {**press, "message": "hi"},
    ):
        fake.wait_ack(fake.send_interactive(broken))
    fake.send_event(good)
    fake.wait_for("chat.postMessage", text_has("fast done ok"), timeout=10, since=n)
    time.sleep(0.3)
    out = marvin.output()
    assert out.count("Traceback") == before, out[-4000:]
    assert out.count("malformed envelope dropped") >= len(bad_events) + 5, out[-4000:]
    replies = [c for c in fake.calls[n:] if c.method.startswith("chat.")]
    assert [c.args.get("text", "") for c in replies if "fast done" in c.args.get("text", "")] == [
        next(c.args["text"] for c in replies if "fast done ok" in c.args.get("text", ""))
    ]


def test_one_users_slow_users_info_does_not_delay_others(fake: FakeSlack, marvin: Serve) -> None:
    fake.add_user("U0SLOW", email="slow@example.com")
    _token, original = fake.web.methods["users.info"]

    def handler(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("user") == "U0SLOW":
            time.sleep(3)
        return original(args)

    fake.register_method("users.info", handler)
    try:
        n = len(fake.calls)
        for i in range(12):  # more than the 8 intake workers
            fake.send_event(fake.app_mention(f"whoami {i}", user="U0SLOW"))
        time.sleep(0.3)  # their lookups are under way
        started = time.monotonic()
        event = fake.app_mention("whoami", user=CAROL)
        fake.send_event(event)
        fake.wait_for(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == event["ts"], 10, since=n
        )
        assert time.monotonic() - started < 1.0, time.monotonic() - started
    finally:
        fake.register_method("users.info", original)


def test_refused_button_presses_are_audited_with_who_pressed(
    fake: FakeSlack, marvin: Serve, root: Path
) -> None:
    n = len(fake.calls)
    event = fake.app_mention("danger", user=ALICE)
    fake.send_event(event)
    ask = fake.wait_for(
        "chat.postMessage", lambda c: "blocks" in c.args and c.args.get("thread_ts") == event["ts"],
        timeout=10, since=n,
    )  # fmt: skip
    token, ts = ask.args["blocks"][1]["elements"][0]["value"], ask.response["ts"]

    def press(user: str, value: str = token) -> None:
        k = len(fake.calls)
        fake.send_interactive(fake.block_actions("marvin_confirm", value, user=user, message_ts=ts))
        fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == user, 10, since=k)

    press(BOB)  # someone else's question
    fake.send_interactive(fake.block_actions("marvin_cancel", token, user=ALICE, message_ts=ts))
    fake.wait_for("chat.postEphemeral", text_has("was not run"), timeout=10, since=n)
    press(ALICE)  # a replayed press
    press(CAROL, "f" * 32)  # a forged value
    deadline = time.monotonic() + 5
    while len(rows := audit(root, "press_refused")) < 3:
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    got = {(r["user_id"], r["email"], r["detail"].split(": ", 1)[1].split(" (")[0]) for r in rows}
    assert got == {
        (BOB, "bob@example.com", "not the requester"),
        (ALICE, "alice@example.com", "already answered"),
        (CAROL, "carol@example.com", "unknown confirmation"),
    }
    assert all(r["channel"] == CHANNEL for r in rows)
    assert next(r for r in rows if r["user_id"] == BOB)["ref"] == "test.danger"


def test_a_huge_unknown_message_gets_one_short_answer(fake: FakeSlack, marvin: Serve) -> None:
    n = len(fake.calls)
    fake.send_event(fake.app_mention("frobnicate " + "lorem ipsum " * 8500, user=BOB))
    first = fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == BOB, 10, since=n)
    time.sleep(0.5)
    answers = [c for c in fake.calls[n:] if c.method == "chat.postEphemeral"]
    assert answers == [first] and len(first.args["text"]) < 300
    assert "characters)" in first.args["text"]


def test_a_reply_slack_will_not_take_goes_to_a_dm_and_is_audited(
    fake: FakeSlack, marvin: Serve, root: Path
) -> None:
    _token, original = fake.web.methods["chat.postMessage"]

    def handler(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel") == "C0GONE":
            raise ApiError("not_in_channel")
        return original(args)

    fake.register_method("chat.postMessage", handler)
    try:
        n = len(fake.calls)
        fake.send_event(fake.app_mention("fast gone", user=ALICE, channel="C0GONE"))
        dm = fake.wait_for(
            "chat.postMessage",
            lambda c: c.args.get("channel") == ALICE and "fast done gone" in c.args["text"],
            timeout=10,
            since=n,
        )
        assert "not_in_channel" in dm.args["text"] and dm.ok
    finally:
        fake.register_method("chat.postMessage", original)
    n = len(fake.calls)
    fake.fail_next("chat.postMessage", 500, times=4)  # the first post and its 3 retries
    fake.send_event(fake.app_mention("long output 1", user=BOB))
    fake.wait_for(
        "chat.postMessage", lambda c: c.args.get("channel") == BOB and c.ok, timeout=20, since=n
    )
    deadline = time.monotonic() + 5
    while len(rows := audit(root, "undelivered")) < 3:
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    result = [r for r in rows if r["user_id"] == ALICE and "fast done gone" in r["detail"]]
    assert result and result[0]["execution_id"] and result[0]["email"] == "alice@example.com"
    assert result[0]["detail"].startswith("not_in_channel")
    assert any(r["user_id"] == BOB and r["detail"].startswith("internal_error") for r in rows)


def latest(root: Path) -> dict[str, Any]:
    db = sqlite3.connect(root / "state.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return dict(db.execute("SELECT * FROM executions ORDER BY created_at DESC").fetchone())
    finally:
        db.close()


def reactions_on(fake: FakeSlack, ts: str) -> set[str]:
    return {name for (_c, t, name) in fake.reactions if t == ts}


def wait_reactions(fake: FakeSlack, ts: str, want: set[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while reactions_on(fake, ts) != want:
        assert time.monotonic() < deadline, reactions_on(fake, ts)
        time.sleep(0.05)


def test_a_cancelled_job_gets_its_own_reaction_and_others_a_private_refusal(
    fake: FakeSlack, marvin: Serve, root: Path
) -> None:
    n = len(fake.calls)
    slow = fake.app_mention("slow 30", user=ALICE)
    fake.send_event(slow)
    fake.wait_for("chat.postMessage", text_has("Sleeping 30 s"), timeout=10, since=n)
    ex_id = latest(root)["id"]
    refused = fake.app_mention(f"cancel {ex_id}", user=BOB)  # bob: developers, not ops
    fake.send_event(refused)
    eph = fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == BOB, 10, since=n)
    assert "only they" in eph.args["text"]
    assert not [c for c in fake.calls[n:] if c.method == "chat.postMessage" and
                c.args.get("thread_ts") == refused["ts"]]  # fmt: skip
    fake.send_event(fake.app_mention(f"cancel {ex_id}", user=ALICE))
    wait_reactions(fake, slow["ts"], {"eyes", "no_entry_sign"})


def test_a_restart_marks_interrupted_messages_and_keeps_the_real_run_time(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with FakeSlack.start() as fake:
        add_users(fake)
        first = Serve(fake, config)
        second = None
        try:
            fake.wait_connected(timeout=20)
            n = len(fake.calls)
            slow = fake.app_mention("slow 30", user=ALICE)
            fake.send_event(slow)
            fake.wait_for("chat.postMessage", text_has("Sleeping 30 s"), timeout=10, since=n)
            first.stop(signal.SIGKILL)
            time.sleep(2)  # Marvin is down for a while before the restart
            second = Serve(fake, config)
            fake.wait_connected(timeout=20, min_count=2)
            wait_reactions(fake, slow["ts"], {"warning"})
            row = latest(tmp_path)
            assert row["state"] == "interrupted"
            assert row["finished_at"] - row["started_at"] < 1.5, row  # not the restart time
            assert "last seen" in row["reason"]
        finally:
            for serve in (first, second):
                if serve is not None and serve.proc.poll() is None:
                    serve.proc.kill()
                    serve.proc.wait(10)


def test_a_press_after_expiry_is_audited(fake: FakeSlack) -> None:
    from slack_sdk import WebClient

    from marvin.frontends.slack.confirm import CONFIRM, Confirmations

    pressed: list[tuple[str, str, str | None, str]] = []
    client = WebClient(token=fake.bot_token, base_url=fake.api_url, timeout=5)
    confirmations = Confirmations(
        client, lambda job: job(), timeout=0.2, audit=lambda *row: pressed.append(row)
    )
    answers: list[bool] = []
    n = len(fake.calls)
    confirmations.ask(channel=CHANNEL, thread_ts=None, requester=ALICE, prompt="Run `x.y`?",
                      on_result=answers.append)  # fmt: skip
    ask = fake.wait_for("chat.postMessage", lambda c: "blocks" in c.args, timeout=5, since=n)
    token = ask.args["blocks"][1]["elements"][0]["value"]
    deadline = time.monotonic() + 5
    while answers != [False]:  # expired: recorded as not confirmed
        assert time.monotonic() < deadline
        time.sleep(0.02)
    confirmations.press(
        fake.block_actions(CONFIRM, token, user=ALICE, message_ts=ask.response["ts"])
    )
    assert pressed == [(ALICE, CHANNEL, None, "confirmation press refused: expired")]
