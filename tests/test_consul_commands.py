"""config, feature and maintenance commands and ``undo`` through Marvin's real pipeline (in
process), against the loopback Consul fake with the real py-consul client."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

import commands.config
import commands.feature
import commands.maintenance
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.logs import setup_logging
from marvin.runtime.due import run_due
from marvin.security import build_authorizer
from marvin.testing import Bot, Replies
from tests.fakes.consul import FakeConsul, fake_consul  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)
COMMANDS = (commands.config, commands.feature, commands.maintenance)


@pytest.fixture
def bot(marvin_bot, fake_consul: FakeConsul) -> Bot:  # noqa: F811
    return marvin_bot(*COMMANDS, user="alice@example.com")


def undos_of(bot: Bot, original: str) -> list[dict]:
    return [r for r in bot.app.store.recent(None, 100) if r["params"].get("undo_of") == original]


def undo(bot: Bot, ex_id: str, **kwargs) -> tuple[Replies, dict | None]:
    """Send ``undo <ex_id>``; returns the replies and the execution it started, once ended."""
    before = {r["id"] for r in undos_of(bot, ex_id)}
    replies = bot.send(f"undo {ex_id}", **kwargs)
    if replies.said or replies.whispered:
        return replies, None  # answered at once: nothing was started
    deadline = time.monotonic() + 10
    while True:
        new = [r for r in undos_of(bot, ex_id) if r["id"] not in before]
        if new and new[0]["state"] not in ("queued", "running"):
            row = new[0]
            break
        assert time.monotonic() < deadline, "no finished undo"
        time.sleep(0.02)
    deadline = time.monotonic() + 5
    while not replies.reactions[-1:] or replies.reactions[-1] == "accepted":
        assert time.monotonic() < deadline, replies
        time.sleep(0.02)
    return replies, row


def test_toggle_an_existing_flag_and_refuse_a_typo(bot: Bot, fake_consul: FakeConsul) -> None:  # noqa: F811
    fake_consul.put("demo01/features/new-checkout", "false")
    fake_consul.put("demo01/features/dark-mode", "true")
    on = bot.send("enable feature new-checkout on demo01")
    assert on.reactions == ["accepted", "succeeded"] and "off → on" in on.said[-1]
    assert fake_consul.get("demo01/features/new-checkout") == b"true"
    again = bot.send("enable feature new-checkout on demo01")
    assert "already enabled; nothing changed" in again.said[-1]
    typo = bot.send("disable feature new-chekout on demo01")
    assert typo.reactions[-1] == "failed" and "look alike: `new-checkout`" in typo.said[-1]
    assert fake_consul.get("demo01/features/new-chekout") is None  # never created
    listed = bot.send("list features on demo01").said[-1]
    assert "`dark-mode`: on" in listed and "`new-checkout`: on" in listed


def test_a_write_in_between_is_refused_with_both_values(bot: Bot, fake_consul: FakeConsul) -> None:  # noqa: F811
    fake_consul.put("demo01/config/app/timeout", "30")
    fake_consul.interleave("demo01/config/app/timeout", "40")  # another writer, after our read
    r = bot.send("set config app/timeout to 45 in demo01")
    assert r.reactions[-1] == "failed" and "changed by someone else" in r.said[-1]
    shown = r.said[-2]
    assert "I read `30`" in shown and "written `40`" in shown and "with `45`" in shown
    assert fake_consul.get("demo01/config/app/timeout") == b"40"


def test_secret_keys_never_reach_chat_audit_or_log(bot: Bot, fake_consul: FakeConsul) -> None:  # noqa: F811
    buf = io.StringIO()
    setup_logging(json=True, stream=buf)
    try:
        r = bot.send('set config db/password to "hunter2 xyz" in demo01')
        got = bot.send("get config db/password in demo01")
        listed = bot.send("list config in demo01")
        fake_consul.interleave("demo01/config/db/password", "swordfish")
        clash = bot.send("set config db/password to letmein in demo01")
    finally:
        structlog.reset_defaults()
    assert fake_consul.get("demo01/config/db/password") == b"swordfish"
    assert "is now set (11 bytes" in r.said[-1] and "can't be undone" in r.said[-1]
    assert "(secret, set, 11 bytes)" in got.said[-1] and "(secret, set" in listed.said[-1]
    assert clash.reactions[-1] == "failed"
    chat = "\n".join(x.text for x in (r, got, listed, clash))
    audit = repr(bot.app.store.audit_rows()) + repr(bot.app.store.recent(None, 20))
    for secret in ("hunter2", "swordfish", "letmein"):
        assert secret not in chat and secret not in audit and secret not in buf.getvalue()
    assert "db/password" in buf.getvalue()  # the log itself was captured
    nothing, _ = undo(bot, r.execution_id)
    assert "recorded nothing to undo" in nothing.text


def test_consul_down_says_so_and_writes_nothing(bot: Bot, fake_consul: FakeConsul) -> None:  # noqa: F811
    fake_consul.stop()
    got = bot.send("get config app/timeout in demo01")
    assert got.reactions[-1] == "failed" and "is not reachable" in got.said[-1]
    put = bot.send("enable maintenance mode on demo01 for 10 minutes")
    assert "not reachable; nothing was changed" in put.said[-1]
    fake_consul.restart()
    assert fake_consul.get("demo01/maintenance") is None
    shown = bot.send("show maintenance mode on demo01").said[-1]
    assert "is *off*" in shown


def test_undo_of_a_set_and_refusals(bot: Bot, fake_consul: FakeConsul) -> None:  # noqa: F811
    fake_consul.put("demo01/config/app/timeout", "30")
    first = bot.send("set config app/timeout to 45 in demo01")
    assert "`30` → `45`" in first.said[-1] and f"undo {first.execution_id}" in first.said[-1]
    replies, row = undo(bot, first.execution_id)
    assert row["state"] == "succeeded" and row["ref"] == "config.set"
    assert replies.said[0].startswith(f"Undoing `{first.execution_id}`")
    assert "`45` → `30`" in replies.said[-1]
    assert fake_consul.get("demo01/config/app/timeout") == b"30"
    trail = [(a["event"], a["detail"]) for a in bot.app.store.audit_rows(first.execution_id)]
    assert ("undone", f"by {row['id']}") in trail
    assert ("undo", f"of {first.execution_id}") in [
        (a["event"], a["detail"]) for a in bot.app.store.audit_rows(row["id"])
    ]
    twice, _ = undo(bot, first.execution_id)
    assert f"already undone by `{row['id']}`" in twice.text
    # Undo refused because the value changed since.
    second = bot.send("set config app/timeout to 50 in demo01")
    fake_consul.put("demo01/config/app/timeout", "55")
    refused, row2 = undo(bot, second.execution_id)
    assert row2["state"] == "failed" and "it left `50`, and it is now `55`" in refused.said[-1]
    assert fake_consul.get("demo01/config/app/timeout") == b"55"
    # ... and can be tried again once it is back: the failed undo did not use it up.
    fake_consul.put("demo01/config/app/timeout", "50")
    _, row3 = undo(bot, second.execution_id)
    assert row3["state"] == "succeeded" and fake_consul.get("demo01/config/app/timeout") == b"30"
    # Undo of a set that created the key deletes it; read-only commands have nothing to undo.
    created = bot.send("set config brand/new to 1 in demo01")
    _, row4 = undo(bot, created.execution_id)
    assert row4["state"] == "succeeded" and fake_consul.get("demo01/config/brand/new") is None
    read = bot.send("get config app/timeout in demo01")
    assert "has no undo" in undo(bot, read.execution_id)[0].text
    assert "I can't find `ex-000000`" in undo(bot, "ex-000000")[0].text


def test_undo_runs_under_the_original_commands_policy(
    marvin_bot: Callable[..., Bot],
    fake_consul: FakeConsul,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The production change is made by an unrestricted bot on the same state file...
    ops = marvin_bot(*COMMANDS, user="alice@example.com")
    fake_consul.put("prod/config/app/timeout", "30")
    change = ops.send("set config app/timeout to 45 in prod")
    assert change.reactions[-1] == "succeeded"
    # ...and undone through the real policy (config/rbac.yaml, config/directory.yaml).
    cfg = load_config(
        DEFAULT_CONFIG, env={**os.environ, "MARVIN_STATE": str(tmp_path / "marvin.sqlite3")}
    )
    policed = marvin_bot(*COMMANDS, user="bob@example.com", authorizer=build_authorizer(cfg))
    assert policed.send("get config app/timeout in prod").reactions[-1] == "succeeded"  # reads
    assert "not allowed" in policed.send("set config app/timeout to 1 in prod").text
    hidden, _ = undo(policed, change.execution_id)  # bob: developers may not write prod
    assert "I can't find" in hidden.text
    asked, _ = undo(policed, change.execution_id, user="alice@example.com", confirm=True)
    # production needs a Duo push, not configured here: refused before any confirmation
    assert not asked.prompts and "security.duo" in asked.text
    assert fake_consul.get("prod/config/app/timeout") == b"45"
    secret = policed.send("set config api_key to x in demo01")  # secrets: platform admins only
    assert "not allowed" in secret.text and fake_consul.get("demo01/config/api_key") is None


def test_maintenance_window_ends_when_due_and_undo_drops_it(
    bot: Bot,
    fake_consul: FakeConsul,  # noqa: F811
) -> None:
    on = bot.send("enable maintenance mode on demo01 for 30 minutes because db upgrade")
    assert "is *on*" in on.said[-1] and "(in 30 min)" in on.said[-1]
    assert b'"reason": "db upgrade"' in fake_consul.get("demo01/maintenance")
    notices: list[dict] = []
    assert run_due(bot.app.rt, notices.append) is not None and not notices  # not due yet
    db = bot.app.store.db  # time passes: the window's end is now
    db.execute(
        "UPDATE due SET due_at = ? WHERE execution_id = ?", (time.time() - 1, on.execution_id)
    )
    run_due(bot.app.rt, notices.append)
    assert len(notices) == 1 and notices[0]["channel"] == "C-test"
    assert "has ended" in notices[0]["notice"] and on.execution_id in notices[0]["notice"]
    assert b'"enabled": false' in fake_consul.get("demo01/maintenance")
    events = [a["event"] for a in bot.app.store.audit_rows(on.execution_id)]
    assert "due_done" in events
    # Undo of a window with a limit also drops its scheduled end.
    again = bot.send("enable maintenance mode on demo01 for 5 minutes")
    _, row = undo(bot, again.execution_id)
    assert row["state"] == "succeeded"
    assert b'"enabled": false' in fake_consul.get("demo01/maintenance")
    pending = db.one("SELECT count(*) AS n FROM due WHERE state = 'pending'")
    assert pending == {"n": 0}
    assert "already off" in bot.send("disable maintenance mode on demo01").said[-1]


def test_long_and_binary_values(bot: Bot, fake_consul: FakeConsul) -> None:  # noqa: F811
    fake_consul.put("demo01/config/blob", bytes(range(256)) * 4)
    fake_consul.put("demo01/config/doc", "x" * 30000)
    assert "(binary, 1,024 bytes, sha256 " in bot.send("get config blob in demo01").said[-1]
    doc = bot.send("get config doc in demo01").said[-1]
    assert "(30,000 bytes)" in doc and "x" * 30000 in doc  # the front end attaches it as a file
    listed = bot.send("list config in demo01").said[-1]
    assert "30,000 bytes of text" in listed and "x" * 100 not in listed
