"""Jobs across process lifetimes: ``kill -9`` then restart, and SIGTERM draining.

Each test runs ``python -m marvin --config <tmp> shell`` with a command folder in tmp_path and
its own SQLite file, keeps stdin open, and reads the store directly to see what happened.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marvin.bootstrap import build_app
from marvin.config import load_config

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = """
from marvin import Integer, command


@command("test.nap", "nap for {{ seconds }}", description="Sleep cooperatively",
         examples=["nap for 1"], params={"seconds": Integer()})
def nap(ctx, seconds: int):
    ctx.progress("napping")
    ctx.sleep(seconds)
    return f"napped {seconds}"
"""


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    (tmp_path / "cmds").mkdir()
    (tmp_path / "cmds" / "nap.py").write_text(COMMANDS)
    (tmp_path / "directory.yaml").write_text("users:\n  alice@example.com: {groups: [ops]}\n")
    (tmp_path / "rbac.yaml").write_text(
        "rules:\n  - {name: tests, commands: ['test.*'], everyone: true}\n"
    )
    (tmp_path / "marvin.yaml").write_text(
        "commands: {paths: [cmds], lint: 'off'}\n"
        f"vocabulary: {ROOT / 'config' / 'vocabulary.yaml'}\n"
        "state: {sqlite: state.sqlite}\n"
        "jobs: {grace_seconds: 1.5}\n"
        "shell: {user: alice@example.com}\n"
        "logging: {level: warning}\n"
    )
    return tmp_path / "marvin.yaml"


def shell(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "marvin", "--config", str(config), "shell"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def rows(config: Path) -> list[tuple[str, str]]:
    db = config.parent / "state.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT id, state FROM executions ORDER BY created_at").fetchall()
        except sqlite3.OperationalError:  # the schema is still being created
            return []


def start_nap(config: Path, seconds: int) -> tuple[subprocess.Popen[str], str]:
    """Start a shell and a nap, and return once the handler itself is running: its progress
    line is on stdout (the store says "running" a little earlier, before the handler starts)."""
    proc = shell(config)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"nap for {seconds}\n")
    proc.stdin.flush()
    seen = []
    while "napping" not in (line := proc.stdout.readline()):
        assert line, "the shell ended before the job started:\n" + "".join(seen)
        seen.append(line)
    return proc, rows(config)[-1][0]


def test_kill_9_then_restart_reports_interrupted(setup: Path) -> None:
    proc, ex_id = start_nap(setup, 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert rows(setup) == [(ex_id, "running")]  # nobody recorded an outcome

    app = build_app(load_config(setup))
    try:
        told: list[dict] = []
        recovered = app.recover(told.append)
        assert [r["id"] for r in recovered] == [ex_id]
        assert [r["id"] for r in told] == [ex_id]
        assert "interrupted part-way" in told[0]["notice"]
        assert app.store.get(ex_id)["state"] == "interrupted"
        events = [r["event"] for r in app.store.audit_rows(ex_id)]
        assert events == ["accepted", "interrupted"]
    finally:
        app.shutdown(timeout=1)


def test_restarted_shell_prints_the_interrupted_notice(setup: Path) -> None:
    proc, ex_id = start_nap(setup, 30)
    proc.kill()
    proc.wait(10)
    again = shell(setup)
    out, _ = again.communicate("jobs\n", timeout=30)
    assert again.returncode == 0
    assert f"`{ex_id}` (test.nap, asked by alice@example.com) was running" in out
    assert "Nothing is running or queued." in out
    assert rows(setup) == [(ex_id, "interrupted")]


def test_sigterm_lets_a_short_job_finish_and_exits_0(setup: Path) -> None:
    proc, ex_id = start_nap(setup, 1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert time.monotonic() - t0 < 1.5 + 5.0  # within the grace period (plus exit, under load)
    assert f"napped 1 (`{ex_id}`)" in out
    assert rows(setup) == [(ex_id, "succeeded")]


def test_sigterm_interrupts_a_job_longer_than_the_grace(setup: Path) -> None:
    proc, ex_id = start_nap(setup, 30)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0
    assert 1.5 <= elapsed < 15  # the grace, then exit (generous: CI machines are loaded)
    assert "interrupted part-way" in out
    assert rows(setup) == [(ex_id, "interrupted")]
