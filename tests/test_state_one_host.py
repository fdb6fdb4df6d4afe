"""One host, one SQLite file: ``marvin serve``, ``marvin run`` and the store between them.

A lock held by serve refuses ``marvin run`` (or queues it, with ``lock_wait``); ``jobs`` from
the command line lists serve's jobs; ``cancel`` from the command line stops serve's job; a
Slack redelivery after serve restarted does not run the command again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(90)

ALICE = "U0ALICE"

COMMANDS = """
from marvin import Integer, command


@command("one.hold", "hold {{ environment }}", description="Holds the lock",
         examples=["hold demo01"], lock="environment", ack="holding")
def hold(ctx, environment):
    ctx.sleep(60)
    return "hold done"


@command("one.queue", "queue behind {{ environment }}", description="Waits for the lock",
         examples=["queue behind demo01"], lock="environment", lock_wait=True)
def queue(ctx, environment):
    return "queued done"


@command("one.count", "count {{ n }}", description="Counts", examples=["count 1"],
         params={"n": Integer(min=0, max=1000)})
def count(ctx, n):
    return f"counted {n}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "onecmds.py").write_text(COMMANDS)
    (tmp_path / "rbac.yaml").write_text("rules:\n  - commands: ['one.*']\n    everyone: true\n")
    (tmp_path / "directory.yaml").write_text("users:\n  alice@example.com: {groups: [ops]}\n")
    cfg = tmp_path / "marvin.yaml"
    cfg.write_text(
        textwrap.dedent(
            f"""\
            commands: {{paths: [commands], lint: "off"}}
            vocabulary: {ROOT / "config" / "vocabulary.yaml"}
            state: {{sqlite: state.sqlite3, heartbeat_seconds: 0.3, poll_seconds: 0.2}}
            jobs: {{grace_seconds: 1}}
            shell: {{user: alice@example.com}}
            security:
              policy: rbac.yaml
              directory: {{backend: static, path: directory.yaml}}
            slack: {{ping_interval: 1}}
            logging: {{level: warning}}
            """
        )
    )
    return cfg


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.start() as f:
        f.add_user(ALICE, email="alice@example.com")
        yield f


def serve(fake: FakeSlack, config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / f"serve-{time.monotonic_ns()}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "marvin", "--config", str(config), "serve"],
        cwd=ROOT,
        env={**os.environ, **fake.env(), "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def cli(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "marvin", "--config", str(config), "run", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sql(config: Path, query: str, *args: object) -> list[tuple]:
    with sqlite3.connect(config.parent / "state.sqlite3") as conn:
        return conn.execute(query, args).fetchall()


def wait_rows(config: Path, query: str, *args: object, timeout: float = 15) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = sql(config, query, *args)
        except sqlite3.OperationalError:  # the schema is still being created
            rows = []
        if rows:
            return rows
        assert time.monotonic() < deadline, f"nothing for {query} {args}"
        time.sleep(0.05)


def test_a_lock_held_by_serve_refuses_or_queues_the_cli_and_cli_cancel_stops_it(
    fake: FakeSlack, config: Path
) -> None:
    server = serve(fake, config)
    try:
        fake.wait_connected(timeout=20)
        event = fake.app_mention("hold demo01", user=ALICE)
        fake.send_event(event)
        (holder,) = wait_rows(
            config, "SELECT id FROM executions WHERE thread = ? AND state = 'running'", event["ts"]
        )[0]

        refused = cli(config, "one.hold", "environment=demo01")
        out, _ = refused.communicate(timeout=30)
        assert refused.returncode == 1 and "is busy" in out and holder in out, out

        queued = cli(config, "one.queue", "environment=demo01")
        waiting = wait_rows(config, "SELECT execution_id FROM running WHERE state = 'waiting'")
        listed = cli(config, "marvin.jobs")
        jobs, _ = listed.communicate(timeout=30)
        assert holder in jobs and "running for" in jobs, jobs  # serve's job, seen from the CLI
        assert waiting[0][0] in jobs and f"held by `{holder}`" in jobs, jobs
        assert queued.poll() is None  # still in line

        t0 = time.monotonic()
        cancel = cli(config, "marvin.cancel", f"execution={holder}")
        said, _ = cancel.communicate(timeout=30)
        assert "Asked" in said and holder in said, said
        out, _ = queued.communicate(timeout=30)
        assert queued.returncode == 0 and "queued done" in out, out
        assert time.monotonic() - t0 < 10
        assert sql(config, "SELECT state FROM executions WHERE id = ?", holder) == [("cancelled",)]
        fake.wait_for("chat.postMessage", lambda c: f"Cancelled `{holder}`" in c.args["text"])
    finally:
        stop(server)


def test_a_redelivery_after_a_restart_does_not_run_again(fake: FakeSlack, config: Path) -> None:
    first = serve(fake, config)
    try:
        fake.wait_connected(timeout=20)
        event = fake.app_mention("count 1", user=ALICE)
        env = fake.send_event(event, event_id="Ev0BEFORE")
        fake.wait_for("chat.postMessage", lambda c: "counted 1" in c.args["text"], timeout=15)
    finally:
        stop(first)
    count = fake.connection_count
    second = serve(fake, config)
    try:
        fake.wait_connected(timeout=20, min_count=count + 1)
        n = len(fake.calls)
        fake.wait_ack(fake.retry(env))  # Slack's retry reaches the new process
        fake.send_event(event, event_id="Ev0OTHER")  # and the same message, re-sent
        fake.send_event(fake.app_mention("count 2", user=ALICE))
        fake.wait_for("chat.postMessage", lambda c: "counted 2" in c.args["text"], since=n)
        time.sleep(0.5)
        again = [c for c in fake.calls[n:] if "counted 1" in str(c.args.get("text"))]
        assert again == []
        assert sql(config, "SELECT count(*) FROM executions WHERE ref = 'one.count'") == [(2,)]
    finally:
        stop(second)
