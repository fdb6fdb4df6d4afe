"""Consul commands and ``undo`` end to end: ``marvin serve`` (a subprocess) on the loopback fake
Slack, and ``marvin run``, both against the loopback Consul fake, with the repository's own
commands and policy (config/rbac.yaml)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.consul import FakeConsul
from tests.fakes.ports import free_port
from tests.fakes.slack import CHANNEL, Call, FakeSlack
from tests.serving import ROOT, Serve, marvin_yaml
from tests.test_slack_serve import posts, text_has

pytestmark = pytest.mark.timeout(90)
ALICE, BOB = "U0ALICE", "U0BOB"  # alice: ops (so platform-admins); bob: developers
EX = re.compile(r"`(ex-[0-9a-f]{6})`")


def write_config(root: Path) -> Path:
    return marvin_yaml(
        root,
        directory="users:\n  alice@example.com: {groups: [ops]}\n"
        "  bob@example.com: {groups: [developers]}\ngroups:\n  platform-admins: {members: [ops]}\n",
        consul={"timeout": 2},
    )


def start(fake: FakeSlack, config: Path, consul: FakeConsul) -> Serve:
    serve = Serve(fake, config, env={"CONSUL_HTTP_ADDR": consul.address})
    try:
        fake.wait_connected(timeout=20, min_count=fake.connection_count + 1)
    except TimeoutError:
        serve.stop()
        raise AssertionError(serve.output()) from None
    return serve


def ask(fake: FakeSlack, text: str, user: str, done: str, timeout: float = 15) -> tuple[dict, Call]:
    """Mention Marvin with ``text``; wait for a reply in its thread containing ``done``."""
    n = len(fake.calls)
    event = fake.app_mention(text, user=user)
    fake.send_event(event)
    reply = fake.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == event["ts"] and done in str(c.args.get("text")),
        timeout=timeout,
        since=n,
    )
    return event, reply


def thread(fake: FakeSlack, event: dict) -> str:
    return "\n".join(str(c.args.get("text")) for c in posts(fake, 0, event["ts"]))


@pytest.fixture(scope="module")
def consul() -> Iterator[FakeConsul]:
    with FakeConsul.start() as fake:
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.start() as fake:
        for uid in (ALICE, BOB):
            fake.add_user(uid, email=f"{uid[2:].lower()}@example.com")
        yield fake


@pytest.fixture(scope="module")
def serve(
    slack: FakeSlack, consul: FakeConsul, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serve]:
    proc = start(slack, write_config(tmp_path_factory.mktemp("consul-serve")), consul)
    yield proc
    assert proc.stop() == 0, proc.output()[-3000:]


# -- marvin serve + Slack ----------------------------------------------------------------------


def test_slack_toggle_and_typo(slack: FakeSlack, consul: FakeConsul, serve: Serve) -> None:
    consul.put("demo01/features/new-checkout", "false")
    ask(slack, "enable feature new-checkout on demo01", BOB, "off → on")
    assert consul.get("demo01/features/new-checkout") == b"true"
    event, _ = ask(slack, "disable feature new-chekout on demo01", BOB, "look alike")
    assert "`new-checkout`" in thread(slack, event)
    assert consul.get("demo01/features/new-chekout") is None


def test_slack_cas_conflict(slack: FakeSlack, consul: FakeConsul, serve: Serve) -> None:
    consul.put("demo01/config/app/workers", "4")
    consul.interleave("demo01/config/app/workers", "6")
    event, _ = ask(slack, "set config app/workers to 8 in demo01", BOB, "changed by someone")
    said = thread(slack, event)
    assert "I read `4`" in said and "written `6`" in said
    assert consul.get("demo01/config/app/workers") == b"6"


def test_slack_secret_key(slack: FakeSlack, consul: FakeConsul, serve: Serve) -> None:
    n = len(slack.calls)
    denied = slack.app_mention("set config db_password to hunter2 in demo01", user=BOB)
    slack.send_event(denied)  # developers may not set secrets (rule config-secrets)
    slack.wait_for("chat.postEphemeral", text_has("not allowed"), timeout=15, since=n)
    event = slack.app_mention('set config db_password to "hunter2 now" in demo01', user=ALICE)
    slack.send_event(event)
    prompt = slack.wait_for(
        "chat.postMessage",
        lambda c: "blocks" in c.args and c.args.get("thread_ts") == event["ts"],
        timeout=15,
        since=n,
    )
    token = prompt.args["blocks"][1]["elements"][0]["value"]
    action = slack.block_actions(
        "marvin_confirm", token, user=ALICE, message_ts=prompt.response["ts"]
    )
    slack.send_interactive(action)
    slack.wait_for("chat.postMessage", text_has("is now set (11 bytes"), timeout=15, since=n)
    ask(slack, "get config db_password in demo01", BOB, "(secret, set, 11 bytes)")
    assert consul.get("demo01/config/db_password") == b"hunter2 now"
    everything = repr([c.args for c in slack.calls]) + serve.output()
    db = sqlite3.connect(serve.log.parent / "state.sqlite3")
    everything += repr(db.execute("SELECT * FROM audit").fetchall())
    everything += repr(db.execute("SELECT * FROM executions").fetchall())
    assert "hunter2" not in everything and "db_password" in everything


def test_slack_consul_down(slack: FakeSlack, consul: FakeConsul, serve: Serve) -> None:
    consul.stop()
    try:
        ask(slack, "show maintenance mode on demo01", BOB, "is not reachable")
    finally:
        consul.restart()


def test_slack_undo_of_a_set_then_refused(
    slack: FakeSlack, consul: FakeConsul, serve: Serve
) -> None:
    consul.put("demo01/config/app/timeout", "30")
    _, done = ask(slack, "set config app/timeout to 45 in demo01", BOB, "`30` → `45`")
    ex_id = EX.findall(done.args["text"])[-1]
    event, _ = ask(slack, f"undo {ex_id}", BOB, "`45` → `30`")
    assert f"Undoing `{ex_id}`" in thread(slack, event)
    assert consul.get("demo01/config/app/timeout") == b"30"
    _, again = ask(slack, "set config app/timeout to 50 in demo01", BOB, "`30` → `50`")
    consul.put("demo01/config/app/timeout", "55")  # someone changes it afterwards
    ex2 = EX.findall(again.args["text"])[-1]
    ask(slack, f"undo {ex2}", BOB, "it left `50`, and it is now `55`")
    assert consul.get("demo01/config/app/timeout") == b"55"


def test_expired_window_ends_after_a_restart_in_its_thread(tmp_path: Path) -> None:
    with FakeSlack.start() as slack, FakeConsul.start() as consul:
        slack.add_user(BOB, email="bob@example.com")
        config = write_config(tmp_path)
        first = start(slack, config, consul)
        try:
            event, _ = ask(
                slack,
                "enable maintenance mode on demo01 for 5 minutes because upgrade",
                BOB,
                "*on*",
            )
        finally:
            assert first.stop() == 0
        # Time passes while Marvin is down: the window's end is now in the past.
        with sqlite3.connect(tmp_path / "state.sqlite3") as db:
            db.execute("UPDATE due SET due_at = ?", (time.time() - 60,))
        second = start(slack, config, consul)
        try:
            ended = slack.wait_for("chat.postMessage", text_has("has ended"), timeout=15, since=0)
            assert ended.args["channel"] == CHANNEL and ended.args["thread_ts"] == event["ts"]
            assert b'"enabled": false' in consul.get("demo01/maintenance")
        finally:
            assert second.stop() == 0


# -- marvin run --------------------------------------------------------------------------------


def run(tmp_path: Path, consul_address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MARVIN_STATE": str(tmp_path / "cli.sqlite3"),
        "CONSUL_HTTP_ADDR": consul_address,
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "marvin", "run", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_cli_toggle_conflict_secret_and_down(tmp_path: Path, consul: FakeConsul) -> None:
    consul.put("ci/features/beta", "true")
    off = run(tmp_path, consul.address, "feature.disable", "flag=beta", "environment=ci")
    assert off.returncode == 0 and "on → off" in off.stdout, off.stderr
    consul.put("ci/config/pool", "1")
    consul.interleave("ci/config/pool", "2")
    clash = run(tmp_path, consul.address, "config.set", "key=pool", "value=3", "environment=ci")
    assert clash.returncode == 1 and "I read `1`" in clash.stdout
    secret = run(
        tmp_path,
        consul.address,
        "config.set",
        "key=api_token",
        "value=s3cr3t-value",
        "environment=ci",
        "--as",
        "alice@example.com",
        "--yes",
    )
    assert secret.returncode == 0 and "is now set (12 bytes" in secret.stdout, secret.stderr
    assert "s3cr3t-value" not in secret.stdout + secret.stderr
    assert consul.get("ci/config/api_token") == b"s3cr3t-value"
    down = run(tmp_path, f"127.0.0.1:{free_port()}", "config.get", "key=pool", "environment=ci")
    assert down.returncode == 1 and "is not reachable" in down.stdout


def test_cli_undo_and_an_expired_window(tmp_path: Path, consul: FakeConsul) -> None:
    consul.put("ci/config/timeout", "30")
    done = run(tmp_path, consul.address, "config.set", "key=timeout", "value=45", "environment=ci")
    ex_id = EX.findall(done.stdout)[-1]
    undone = run(tmp_path, consul.address, "marvin.undo", f"execution={ex_id}")
    assert undone.returncode == 0 and "`45` → `30`" in undone.stdout, undone.stdout
    assert consul.get("ci/config/timeout") == b"30"
    again = run(tmp_path, consul.address, "config.set", "key=timeout", "value=50", "environment=ci")
    consul.put("ci/config/timeout", "55")
    refused = run(
        tmp_path, consul.address, "marvin.undo", f"execution={EX.findall(again.stdout)[-1]}"
    )
    assert refused.returncode == 1 and "it is now `55`" in refused.stdout
    on = run(tmp_path, consul.address, "maintenance.enable", "environment=ci", "minutes=5")
    assert on.returncode == 0 and "is on since" in on.stdout  # Slack markup shown plainly
    with sqlite3.connect(tmp_path / "cli.sqlite3") as db:
        db.execute("UPDATE due SET due_at = ?", (time.time() - 1,))
    shown = run(tmp_path, consul.address, "maintenance.show", "environment=ci")
    assert "has ended" in shown.stderr and "is off" in shown.stdout, shown.stderr
