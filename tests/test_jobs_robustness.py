"""Failures around a handler never leave a lock held, a cap slot taken or a state unfinished."""

from __future__ import annotations

import functools
import gc
import weakref

import pytest

from marvin import ENVIRONMENT, command
from marvin.runtime.pool import Timer


@command(
    "env.lockit",
    "lockit {{ environment }}",
    description="d",
    examples=["lockit demo01"],
    params={"environment": ENVIRONMENT},
    lock="environment",
)
def lockit(ctx, environment: str) -> str:
    return f"locked {environment}"


@pytest.mark.timeout(30)
def test_store_failure_at_admission_releases_the_lock(marvin_bot, monkeypatch) -> None:
    bot = marvin_bot(lockit)
    real = bot.app.store.audit

    def broken(event, **kw):
        if event == "accepted":
            raise OSError("disk full")
        return real(event, **kw)

    monkeypatch.setattr(bot.app.store, "audit", broken)
    with pytest.raises(OSError):  # in serve, the intake thread logs it and tells the user
        bot.send("lockit demo01")
    assert bot.app.jobs.live() == []
    monkeypatch.setattr(bot.app.store, "audit", real)
    second = bot.send("lockit demo01")
    assert second.reactions[-1] == "succeeded", second.text


@pytest.mark.timeout(30)
def test_failure_outside_the_handler_still_records_an_outcome(marvin_bot, monkeypatch) -> None:
    bot = marvin_bot(lockit)
    real = bot.app.store.update

    def broken(ex_id, **fields):
        if fields.get("state") == "running":
            raise OSError("database is locked")
        return real(ex_id, **fields)

    monkeypatch.setattr(bot.app.store, "update", broken)
    r = bot.send("lockit demo01")
    assert r.reactions[-1] == "failed" and "internal error: OSError" in r.said[-1]
    assert bot.app.store.get(r.execution_id)["state"] == "failed"
    assert bot.app.jobs.live() == []


def test_cancelled_timer_lets_go_of_its_job() -> None:
    class Job:
        pass

    job = Job()
    ref = weakref.ref(job)
    timer = Timer(functools.partial(id, job))
    del job
    timer.cancel()
    gc.collect()
    assert ref() is None
