"""The audit trail: ``history`` and ``status`` (own vs auditors), secret redaction, and one
structured log line per audit row."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from marvin import Param, command
from marvin.config import load_config
from marvin.runtime.execution import Context
from marvin.security import build_authorizer
from marvin.testing import Bot

pytestmark = pytest.mark.timeout(30)

ALICE, BOB = "alice@example.com", "bob@example.com"  # alice is an auditor, bob is not


@command("test.echo", "echo {{ words }}", description="Echo", examples=["echo hi"])
def echo(ctx: Context, words: str) -> str:
    return f"echo: {words}"


@command("test.fail", "fail", description="Fails", examples=["fail"])
def fail(ctx: Context) -> str:
    raise RuntimeError("boom")


@command("test.secret", "store {{ name }} as {{ value }}", description="Stores a secret",
         examples=["store token as abc"], params={"value": Param(secret=True)})  # fmt: skip
def store_secret(ctx: Context, name: str, value: str) -> str:
    return f"stored {name}"


@pytest.fixture
def bot(tmp_path: Path, marvin_bot: Callable[..., Bot]) -> Bot:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "rbac.yaml").write_text("rules:\n  - {commands: ['test.*'], everyone: true}\n")
    (folder / "directory.yaml").write_text(
        f"users:\n  {ALICE}: {{groups: [ops]}}\n  {BOB}: {{groups: [developers]}}\n"
        "groups:\n  auditors: {members: [ops]}\n"
    )
    (folder / "marvin.yaml").write_text(
        f"state:\n  sqlite: {tmp_path / 'state.sqlite3'}\n"
        "security:\n  auditors_group: auditors\n  directory: {backend: static}\n"
    )
    config = load_config(folder / "marvin.yaml", env={})
    return marvin_bot(echo, fail, store_secret, authorizer=build_authorizer(config), config=config)


def ids(text: str) -> list[str]:
    return re.findall(r"`(ex-[0-9a-f]{6})`", text)


def test_history_shows_your_own_newest_first(bot: Bot) -> None:
    mine = [bot.send(f"echo {n}", user=BOB).execution_id for n in range(3)]
    failed = bot.send("fail", user=BOB).execution_id
    other = bot.send("echo alice", user=ALICE).execution_id
    text = bot.send("history", user=BOB).text
    assert ids(text) == [failed, *reversed(mine)]
    assert other not in text and "failed" in text and "succeeded" in text
    assert "(words=2)" in text
    assert ids(bot.send("history 2", user=BOB).text) == [failed, mine[2]]


def test_history_all_is_for_auditors(bot: Bot) -> None:
    b = bot.send("echo bob", user=BOB).execution_id
    a = bot.send("echo alice", user=ALICE).execution_id
    refused = bot.send("history 20 all", user=BOB).text
    assert refused.startswith("Only auditors") and ids(refused) == [b]
    for text in (
        bot.send("history 20 all", user=ALICE).text,
        bot.send("history all", user=ALICE).text,
    ):
        assert ids(text) == [a, b] and BOB in text and ALICE in text
    rows = bot.app.store.audit_rows()
    assert any(
        r["event"] == "refused" and r["email"] == BOB and r["ref"] == "marvin.history" for r in rows
    )
    assert [r["detail"] for r in rows if r["event"] == "audit_read"] == [
        "history 20 all",
        "history 10 all",
    ]


def test_status_of_your_own_and_for_auditors(bot: Bot) -> None:
    ex_id = bot.send("echo hello", user=BOB).execution_id
    assert ex_id
    mine = bot.send(f"status {ex_id}", user=BOB).text
    assert f"`{ex_id}` test.echo (words=hello): *succeeded*" in mine
    assert "Requested by bob@example.com" in mine and "accepted by" in mine
    assert "succeeded by bob@example.com" in mine
    nosy = bot.send(f"status {ex_id.upper()}", user="carol@example.com").text
    assert "not in the directory" in nosy  # carol isn't even identified
    auditor = bot.send(f"status {ex_id}", user=ALICE).text
    assert "*succeeded*" in auditor
    unknown = bot.send("status ex-000000", user=BOB).text
    assert "can't find `ex-000000`" in unknown


def test_status_hides_other_peoples_executions(bot: Bot) -> None:
    ex_id = bot.send("echo alice", user=ALICE).execution_id
    text = bot.send(f"status {ex_id}", user=BOB).text
    assert f"can't find `{ex_id}`" in text and "alice" not in text
    row = bot.app.store.audit_rows(ex_id)[-1]
    assert (row["event"], row["email"]) == ("refused", BOB)


def test_secrets_are_redacted_everywhere(bot: Bot, tmp_path: Path) -> None:
    with capture_logs() as logs:
        ex_id = bot.send("store token as hunter2", user=BOB).execution_id
    assert ex_id
    assert bot.app.store.get(ex_id)["params"] == {"name": "token", "value": "***"}
    for row in bot.app.store.audit_rows(ex_id):
        assert "hunter2" not in str(row)
    assert "hunter2" not in bot.send("history", user=BOB).text
    assert "hunter2" not in bot.send(f"status {ex_id}", user=BOB).text
    assert "hunter2" not in str(logs)
    bot.app.store.close()
    assert b"hunter2" not in b"".join(p.read_bytes() for p in tmp_path.glob("state.sqlite3*"))


def test_one_structured_log_line_per_audit_row(bot: Bot) -> None:
    before = len(bot.app.store.audit_rows())
    with capture_logs() as logs:
        bot.send("echo hi", user=BOB)
        bot.send("echo hi", user="nobody@example.com")  # refused: not in the directory
    rows = bot.app.store.audit_rows()[before:]
    lines = [e for e in logs if e["event"] == "audit"]
    assert [(e["audit_event"], e["email"]) for e in lines] == [
        (r["event"], r["email"]) for r in rows
    ]
    assert [r["event"] for r in rows] == ["accepted", "succeeded", "refused"]
    assert rows[-1]["user_id"] == "local:nobody@example.com"
    assert "not in directory" in rows[-1]["detail"]
