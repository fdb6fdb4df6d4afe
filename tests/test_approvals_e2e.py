"""Two-person approval and channel scoping end to end: ``marvin serve`` (a subprocess on Bolt
Socket Mode) against the loopback fake Slack, pressing the buttons as people would; then the
same requests from the CLI (``marvin run`` held, ``marvin approve --as`` another person)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.slack import ApiError, Call, FakeSlack
from tests.serving import ROOT, Serve, marvin_yaml

pytestmark = pytest.mark.timeout(90)

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
OPS, GENERAL, NEWOPS = "C0OPS00001", "C0GENERAL01", "C0NEWOPS01"

COMMANDS = """
from marvin import command


@command("test.ship", "ship {{ app }} to {{ environment }}", description="Ships",
         examples=["ship web to demo"])
def ship(ctx, app, environment):
    return f"shipped {app} to {environment}"
"""

RBAC = """
rules:
  - name: prod-two
    commands: [test.ship]
    targets: {environment: [prod-two]}
    groups: [developers, admins]
    approve: {groups: [admins], count: 2}
  - name: prod-quick
    commands: [test.ship]
    targets: {environment: [prod-quick]}
    groups: [developers, admins]
    approve: {groups: [admins], timeout: 2}
  - name: production
    commands: [test.ship]
    targets: {environment: ["prod*"]}
    groups: [developers, admins]
    approve: {groups: [admins]}
    channels: ["#ops"]
  - commands: [test.ship]
    everyone: true
"""


def write_config(root: Path) -> Path:
    (root / "commands").mkdir(parents=True, exist_ok=True)
    (root / "commands" / "shipping.py").write_text(COMMANDS)
    (root / "rbac.yaml").write_text(RBAC)
    return marvin_yaml(
        root,
        directory="users:\n"
        "  alice@example.com: {groups: [developers]}\n"
        "  bob@example.com: {groups: [admins]}\n"
        "  carol@example.com: {groups: [admins]}\n"
        "  dave@example.com: {groups: [developers]}\n",
        commands={"paths": ["commands"], "lint": "off"},
        jobs={"workers": 4},
        security={"policy": "rbac.yaml", "slack": {"cache_ttl": 600}},
    )


CHANNELS = [
    {"id": OPS, "name": "ops", "is_channel": True},
    {"id": GENERAL, "name": "general", "is_channel": True},
    {"id": NEWOPS, "name": "new-ops", "is_channel": True},
]


def conversations_list(args: dict[str, Any]) -> dict[str, Any]:
    """Slack's paging: two pages, a cursor between them."""
    if args.get("types") != "public_channel,private_channel":
        raise ApiError("invalid_types")
    page = CHANNELS[:2] if not args.get("cursor") else CHANNELS[2:]
    cursor = "" if args.get("cursor") else "page2"
    return {"channels": page, "response_metadata": {"next_cursor": cursor}}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("approvals"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.start() as f:
        for uid in (ALICE, BOB, CAROL, DAVE):
            f.add_user(uid, email=f"{uid[2:].lower()}@example.com")
        f.register_method("conversations.list", conversations_list)
        yield f


@pytest.fixture(scope="module")
def marvin(fake: FakeSlack, config: Path) -> Iterator[Serve]:
    serve = Serve(fake, config)
    try:
        fake.wait_connected(timeout=20)
    except TimeoutError:
        serve.stop()
        raise AssertionError(serve.output()) from None
    yield serve
    assert serve.stop() == 0, serve.output()[-3000:]
    assert fake.errors == []


# -- helpers -----------------------------------------------------------------------------------


def ask(fake: FakeSlack, text: str, user: str = ALICE, channel: str = OPS) -> tuple[dict, Call]:
    """Mention Marvin; returns the event and the approval request it posted in the thread."""
    n = len(fake.calls)
    event = fake.app_mention(text, user=user, channel=channel)
    fake.send_event(event)
    request = fake.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == event["ts"] and "marvin_approve" in str(c.args),
        timeout=10,
        since=n,
    )
    return event, request


def button(request: Call, action: str) -> str:
    blocks = request.args["blocks"]
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    actions = [b for b in blocks if b["type"] == "actions"][0]["elements"]
    return [b["value"] for b in actions if b["action_id"] == action][0]


def press(fake: FakeSlack, request: Call, user: str, action: str = "marvin_approve") -> int:
    n = len(fake.calls)
    ex_id = button(request, action)
    channel, ts = request.response["channel"], request.response["ts"]
    fake.send_interactive(
        fake.block_actions(action, ex_id, user=user, channel=channel, message_ts=ts)
    )
    return n


def ephemeral_to(fake: FakeSlack, user: str, since: int) -> str:
    call = fake.wait_for("chat.postEphemeral", lambda c: c.args["user"] == user, 10, since=since)
    return str(call.args["text"])


def said(fake: FakeSlack, thread: str, word: str, since: int, timeout: float = 10) -> Call:
    return fake.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == thread and word in str(c.args.get("text")),
        timeout,
        since=since,
    )


def audit(config: Path, ex_id: str | None = None) -> list[dict[str, Any]]:
    with sqlite3.connect(config.parent / "state.sqlite3") as db:
        db.row_factory = sqlite3.Row
        sql, args = "SELECT * FROM audit", ()
        if ex_id:
            sql, args = sql + " WHERE execution_id = ?", (ex_id,)
        return [dict(r) for r in db.execute(sql + " ORDER BY seq", args)]


def state_of(config: Path, ex_id: str) -> str:
    with sqlite3.connect(config.parent / "state.sqlite3") as db:
        return str(db.execute("SELECT state FROM executions WHERE id = ?", (ex_id,)).fetchone()[0])


# -- approvals -----------------------------------------------------------------------------------


def test_another_admin_approves_and_it_runs(fake: FakeSlack, marvin: Serve, config: Path) -> None:
    event, request = ask(fake, "ship web to prod-one")
    ex_id = button(request, "marvin_approve")
    assert "needs approval by one member of admins" in request.args["text"]
    n = len(fake.calls)
    fake.send_event(fake.app_mention("jobs", user=CAROL, channel=OPS))
    jobs = fake.wait_for("chat.postMessage", lambda c: ex_id in str(c.args["text"]), 10, since=n)
    assert "awaiting approval" in jobs.args["text"] and "from admins" in jobs.args["text"]
    assert state_of(config, ex_id) == "awaiting_approval"

    n = press(fake, request, BOB)
    done = said(fake, event["ts"], "shipped web to prod-one", n)
    assert ex_id in done.args["text"]
    # Bob's identity was looked up afresh when he pressed, not taken from a cache.
    assert [c for c in fake.calls[n:] if c.method == "users.info" and c.args["user"] == BOB]
    update = fake.wait_for(
        "chat.update", lambda c: c.args["ts"] == request.response["ts"], 10, since=n
    )
    assert "bob@example.com approved" in update.args["text"]
    trail = [r["event"] for r in audit(config, ex_id)]
    assert trail[:3] == ["approval_requested", "approval_granted", "approval_complete"]
    assert trail[-1] == "succeeded" and state_of(config, ex_id) == "succeeded"
    granted = [r for r in audit(config, ex_id) if r["event"] == "approval_granted"][0]
    assert granted["email"] == "bob@example.com" and "alice@example.com" in granted["detail"]


def test_self_approval_and_non_members_refused_then_rejected(
    fake: FakeSlack, marvin: Serve, config: Path
) -> None:
    event, request = ask(fake, "ship api to prod-one")
    ex_id = button(request, "marvin_approve")
    n = press(fake, request, ALICE)
    assert "someone else" in ephemeral_to(fake, ALICE, n)
    n = press(fake, request, DAVE)
    assert "Only members of admins" in ephemeral_to(fake, DAVE, n)
    n = press(fake, request, CAROL, "marvin_reject")
    said(fake, event["ts"], "rejected by carol@example.com", n)
    n = press(fake, request, BOB)
    assert "no longer open" in ephemeral_to(fake, BOB, n)
    time.sleep(0.3)
    assert not [c for c in fake.calls if "shipped api to prod-one" in str(c.args.get("text"))]
    trail = [r["event"] for r in audit(config, ex_id)]
    assert trail == [
        "approval_requested",
        "approval_self_refused",
        "approval_refused",
        "approval_rejected",
        "refused",
    ]
    assert state_of(config, ex_id) == "refused"


def test_two_approvers_for_count_two(fake: FakeSlack, marvin: Serve, config: Path) -> None:
    event, request = ask(fake, "ship web to prod-two")
    assert "2 different members of admins" in request.args["text"]
    n = press(fake, request, BOB)
    said(fake, event["ts"], "1 of 2", n)
    n = press(fake, request, BOB)
    assert "already answered" in ephemeral_to(fake, BOB, n)
    assert state_of(config, button(request, "marvin_approve")) == "awaiting_approval"
    n = press(fake, request, CAROL)
    said(fake, event["ts"], "shipped web to prod-two", n)


def test_expiry_is_told_and_audited(fake: FakeSlack, marvin: Serve, config: Path) -> None:
    event, request = ask(fake, "ship web to prod-quick")
    ex_id = button(request, "marvin_approve")
    notice = said(fake, event["ts"], "expired", len(fake.calls) - 1, timeout=12)
    assert ex_id in notice.args["text"] and "did not run" in notice.args["text"]
    n = press(fake, request, BOB)
    assert "no longer open: it was expired" in ephemeral_to(fake, BOB, n)
    expired = [r for r in audit(config, ex_id) if r["event"] == "approval_expired"]
    assert expired and "requested by alice@example.com" in expired[0]["detail"]
    assert state_of(config, ex_id) == "refused"


def test_parameters_changed_after_approval_never_run(
    fake: FakeSlack, marvin: Serve, config: Path
) -> None:
    event, request = ask(fake, "ship web to prod-two")
    ex_id = button(request, "marvin_approve")
    n = press(fake, request, BOB)
    said(fake, event["ts"], "1 of 2", n)
    with sqlite3.connect(config.parent / "state.sqlite3") as db:  # tampering with the request
        db.execute(
            "UPDATE approvals SET params = ? WHERE execution_id = ?",
            (json.dumps({"app": "db", "environment": "prod-two"}), ex_id),
        )
    n = press(fake, request, CAROL)
    said(fake, event["ts"], "not run", n)
    time.sleep(0.3)
    assert not [c for c in fake.calls[n:] if "shipped" in str(c.args.get("text"))]
    assert "approval_binding_mismatch" in [r["event"] for r in audit(config, ex_id)]
    assert state_of(config, ex_id) == "refused"


# -- channel scoping ---------------------------------------------------------------------------


def test_production_in_another_channel_is_refused_and_audited(
    fake: FakeSlack, marvin: Serve, config: Path
) -> None:
    n = len(fake.calls)
    fake.send_event(fake.app_mention("ship web to prod-one", user=BOB, channel=GENERAL))
    text = ephemeral_to(fake, BOB, n)
    assert "can't be run from this channel" in text and "#ops" in text
    fake.send_event(fake.im_message("ship web to prod-one", user=BOB))
    dm = fake.wait_for(
        "chat.postMessage", lambda c: "direct message" in c.args["text"], 10, since=n
    )
    assert "#ops" in dm.args["text"]
    refused = [r for r in audit(config) if r["event"] == "refused" and r["ref"] == "test.ship"]
    assert {r["channel"] for r in refused[-2:]} == {GENERAL, "D" + BOB[1:]}
    assert all(r["email"] == "bob@example.com" for r in refused[-2:])
    # Other environments are not scoped: the same text about demo runs anywhere.
    fake.send_event(fake.app_mention("ship web to demo", user=BOB, channel=GENERAL))
    fake.wait_for(
        "chat.postMessage", lambda c: "shipped web to demo" in c.args["text"], 10, since=n
    )


def test_renamed_channels_follow_their_names(fake: FakeSlack, marvin: Serve) -> None:
    for cid, name in ((OPS, "ops-archive"), (NEWOPS, "ops")):
        event = {"type": "channel_rename", "channel": {"id": cid, "name": name, "created": 1}}
        fake.send_event({**event, "event_ts": fake.store.next_ts()})
    deadline = time.monotonic() + 10
    while True:  # the rename reaches Marvin asynchronously; ask until #ops is the new channel
        n = len(fake.calls)
        fake.send_event(fake.app_mention("ship web to prod-one", user=ALICE, channel=OPS))
        text = ephemeral_to(fake, ALICE, n)
        if "can't be run from this channel" in text:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    _event, request = ask(fake, "ship web to prod-one", channel=NEWOPS)
    assert request.args["channel"] == NEWOPS


# -- the command line ------------------------------------------------------------------------------


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SLACK_BOT_TOKEN", None)
    env.pop("SLACK_APP_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "marvin", "--config", str(config), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_request_and_approval_by_another_identity(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    held = cli(
        config, "run", "test.ship", "app=web", "environment=prod-one", "--as", "alice@example.com"
    )
    assert held.returncode == 3, held.stderr
    ex_id = held.stdout.split("approve ")[1].split("`")[0].strip()
    assert ex_id.startswith("ex-")
    jobs = subprocess.run(
        [
            sys.executable,
            "-m",
            "marvin",
            "--config",
            str(config),
            "shell",
            "--as",
            "dave@example.com",
        ],
        input="jobs\n",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ex_id in jobs.stdout and "from admins" in jobs.stdout
    mine = cli(config, "approve", ex_id, "--as", "alice@example.com")
    assert mine.returncode == 1 and "someone else" in mine.stderr
    dev = cli(config, "approve", ex_id, "--as", "dave@example.com")
    assert dev.returncode == 1 and "Only members of admins" in dev.stderr
    ok = cli(config, "approve", ex_id, "--as", "bob@example.com")
    assert ok.returncode == 0, ok.stderr
    assert "shipped web to prod-one" in ok.stdout
    assert state_of(config, ex_id) == "succeeded"
    # The CLI has no channel: channel scoping is for chat, and the requester's via is kept.
    trail = audit(config, ex_id)
    assert trail[0]["event"] == "approval_requested" and trail[0]["channel"] is None


def test_cli_plan_of_a_command_without_a_planner(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = cli(config, "run", "test.ship", "app=web", "environment=demo", "--plan")
    assert out.returncode == 1 and "has no planner" in out.stderr
    assert [r["event"] for r in audit(config)] == ["plan_unavailable"]  # audited, nothing ran
