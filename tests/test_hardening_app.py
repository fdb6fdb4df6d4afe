"""Issue 9 at the application level (marvin_bot): cancel and history answers, text the store
can't encode, the structlog ``stack`` key."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
import structlog

from marvin import command
from marvin.core.authz import LocalAuthorizer
from marvin.logs import setup_logging
from marvin.runtime.execution import Context
from marvin.testing import Bot

pytestmark = pytest.mark.timeout(60)

ALICE, BOB, OLGA = "alice@example.com", "bob@example.com", "olga@example.com"


@command("test.quick", "quick {{ word }}", description="Quick", examples=["quick hello"])
def quick(ctx: Context, word: str) -> str:
    ctx.log.info("stack creation started", stack=word)
    return f"quick {word}"


@command("test.nobody", "forbidden thing", description="No rule", examples=["forbidden thing"])
def forbidden(ctx: Context) -> str:
    return "never"


class Directory:
    def groups_for(self, email: str, *, fresh: bool = False) -> frozenset[str]:
        return frozenset({OLGA: {"ops"}}.get(email, {"developers"}))


class NoForbidden(LocalAuthorizer):
    def decide(self, user, cmd, params):  # type: ignore[no-untyped-def]
        from marvin.core.authz import Decision

        if cmd.ref == "test.nobody":
            return Decision(False, "No rule in rbac.yaml allows `test.nobody`.")
        return super().decide(user, cmd, params)


@pytest.fixture
def bot(marvin_bot: Callable[..., Bot]) -> Bot:
    return marvin_bot(quick, forbidden, user=ALICE, authorizer=NoForbidden(Directory()))


def test_cancel_of_someone_elses_finished_job_reveals_nothing(bot: Bot) -> None:
    done = bot.send("quick secretproject")
    assert bot.app.store.get(done.execution_id)["state"] == "succeeded"
    other = bot.send(f"cancel {done.execution_id}", user=BOB)
    unknown = bot.send("cancel ex-000000", user=BOB)
    assert other.whispered and not other.said  # told to the asker alone
    assert other.text.replace(done.execution_id, "ID") == unknown.text.replace("ex-000000", "ID")
    assert "quick" not in other.text and "succeeded" not in other.text
    rows = [r for r in bot.app.store.audit_rows() if r["event"] == "cancel_refused"]
    assert [(r["email"], r["execution_id"]) for r in rows] == [(BOB, done.execution_id)]
    mine = bot.send(f"cancel {done.execution_id}")  # the requester still gets the real answer
    assert "is not running: it succeeded" in mine.text
    ops = bot.send(f"cancel {done.execution_id}", user=OLGA)  # and so do jobs.cancel_groups
    assert "is not running" in ops.text


def test_history_zero_lists_nothing_and_refusals_show(bot: Bot) -> None:
    bot.send("quick one")
    refused = bot.send("forbidden thing")
    assert "No rule" in refused.text and refused.execution_id is None
    zero = bot.send("history 0")
    assert "1 to 100" in zero.text and "quick" not in zero.text
    listed = bot.send("history").text
    assert "test.nobody (not run)" in listed and "refused" in listed
    assert "test.quick" in listed
    assert "test.nobody" not in bot.send("history", user=BOB).text  # only one's own


def test_a_lone_surrogate_is_still_recorded(bot: Bot) -> None:
    before = len(bot.app.store.audit_rows())
    r = bot.send("x\udfffy")
    assert "don't know that command" in r.text
    r2 = bot.send("quick a\udfffb")
    rows = bot.app.store.audit_rows()[before:]
    assert [row["event"] for row in rows][:1] == ["unknown"] and "udfff" in rows[0]["detail"]
    assert len(rows) >= 2, rows
    assert r2.execution_id is None or bot.app.store.get(r2.execution_id)


@pytest.fixture
def console_log() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    setup_logging(json=False, stream=buf)
    yield buf
    structlog.reset_defaults()


def test_a_stack_field_is_logged_not_taken_for_a_stack_trace(
    bot: Bot, console_log: io.StringIO
) -> None:
    bot.send("quick demo01")
    line = next(x for x in console_log.getvalue().splitlines() if "stack creation started" in x)
    assert "stack_name=demo01" in line
