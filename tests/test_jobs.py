"""Jobs in one process: responsiveness, cancel, timeouts, locks, caps, progress, drain."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from marvin import ENVIRONMENT, Integer, command
from marvin.bootstrap import build_app, build_table
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.core.authz import LocalAuthorizer
from marvin.core.model import Message, Reply, User
from marvin.runtime.execution import Context
from marvin.testing import TEST_FRONT_END

pytestmark = pytest.mark.timeout(60)

ALICE, BOB, OLGA, CAROL = (
    "alice@example.com",
    "bob@example.com",
    "olga@example.com",
    "carol@example.com",
)
RELEASE = threading.Event()  # lets the non-cooperative handler go


@command("test.wait", "wait for {{ seconds }}", description="Sleep cooperatively",
         examples=["wait for 30"], params={"seconds": Integer()})  # fmt: skip
def wait_for(ctx: Context, seconds: int) -> str:
    ctx.progress("started")
    ctx.sleep(seconds)
    return f"waited {seconds}"


@command("test.slow", "slow", description="Times out", examples=["slow"], timeout=0.3)
def slow(ctx: Context) -> str:
    ctx.sleep(30)
    return "never"


@command("test.stubborn", "stubborn", description="Ignores cancellation", examples=["stubborn"],
         timeout=0.2)  # fmt: skip
def stubborn(ctx: Context) -> str:
    RELEASE.wait(20)  # not ctx.sleep: this handler never looks at its cancel event
    return "finally"


@command("test.steps", "steps", description="Reports progress", examples=["steps"])
def steps(ctx: Context) -> str:
    for n in (1, 2, 3):
        ctx.progress(f"{n} of 3")
    ctx.sleep(0.8)  # the held-back "3 of 3" must arrive while we sleep, from the timer
    ctx.progress("done soon")
    return "stepped"


@command("platform.create", "create platform environment named {{ environment }}",
         description="Create", examples=["create platform environment named demo01"],
         params={"environment": ENVIRONMENT}, lock="environment")  # fmt: skip
def platform_create(ctx: Context, environment: str) -> str:
    ctx.progress(f"creating {environment}")
    ctx.sleep(30)
    return "created"


@command("platform.destroy", "destroy platform environment named {{ environment }}",
         description="Destroy", examples=["destroy platform environment named demo01"],
         params={"environment": ENVIRONMENT}, lock="environment", lock_wait=True)  # fmt: skip
def platform_destroy(ctx: Context, environment: str) -> str:
    return f"destroyed {environment}"


@command("api.create", "create api environment named {{ environment }}",
         description="Create", examples=["create api environment named demo01"],
         params={"environment": ENVIRONMENT}, lock="environment")  # fmt: skip
def api_create(ctx: Context, environment: str) -> str:
    return f"api {environment} created"


HANDLERS = [wait_for, slow, stubborn, steps, platform_create, platform_destroy, api_create]


class Directory:
    def groups_for(self, email: str) -> frozenset[str]:
        return frozenset({OLGA: {"ops"}, BOB: {"developers"}}.get(email, set()))


@pytest.fixture
def bot_with(marvin_bot, tmp_path):  # type: ignore[no-untyped-def]
    def make(**jobs: Any):  # type: ignore[no-untyped-def]
        cfg = load_config(DEFAULT_CONFIG, env={"MARVIN_STATE": str(tmp_path / "state.sqlite")})
        cfg.data["jobs"] = {**cfg.data["jobs"], "cancel_groups": ["ops"], **jobs}
        return marvin_bot(
            *HANDLERS, user=ALICE, config=cfg, authorizer=LocalAuthorizer(Directory())
        )

    yield make
    RELEASE.set()


def until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def running(bot, ex_id: str) -> None:  # type: ignore[no-untyped-def]
    until(lambda: bot.app.store.get(ex_id)["state"] == "running")


class Inbox:
    """A responder for ``app.handle``: records answers and when the first one came."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.first = threading.Event()

    def _add(self, text: str | Reply) -> None:
        self.texts.append(text.text if isinstance(text, Reply) else text)
        self.first.set()

    say = whisper = _add

    def progress(self, text: str) -> None:
        pass

    def react(self, state: str) -> None:
        pass


def test_long_jobs_do_not_delay_help(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with(workers=2, queue=4, per_user=10)
    ids = [bot.send("wait for 30", wait=False).execution_id for _ in range(4)]
    running(bot, ids[0])
    running(bot, ids[1])
    assert bot.app.store.get(ids[3])["state"] == "queued"  # the pool is full, two are waiting
    user = User(id="U-bob", email=BOB, source="test")
    for _ in range(5):
        inbox = Inbox()
        t0 = time.monotonic()
        bot.app.handle(Message(text="help", user=user, responder=inbox))
        assert inbox.first.wait(2)
        assert time.monotonic() - t0 < 0.5
        assert "test.wait" in inbox.texts[0]
    for ex_id in ids:
        bot.send(f"cancel {ex_id}")


def test_cancel_wakes_a_sleeping_handler_at_once(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with()
    job = bot.send("wait for 30", wait=False)
    running(bot, job.execution_id)
    t0 = time.monotonic()
    answer = bot.send(f"cancel {job.execution_id}")
    record = bot.app.wait(job.execution_id, 5)
    assert time.monotonic() - t0 < 0.5
    assert record["state"] == "cancelled"
    assert "Asked" in answer.text
    assert f"Cancelled `{job.execution_id}`" in job.text
    assert "waited" not in job.text
    events = [r["event"] for r in bot.app.store.audit_rows(job.execution_id)]
    assert events == ["accepted", "cancel_requested", "cancelled"]


def test_cancel_a_queued_job_removes_it(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with(workers=1)
    first = bot.send("wait for 30", wait=False)
    second = bot.send("wait for 30", wait=False)
    running(bot, first.execution_id)
    answer = bot.send(f"cancel {second.execution_id}")
    assert "had not started" in answer.text
    assert bot.app.store.get(second.execution_id)["state"] == "cancelled"
    assert "before it started" in second.text
    assert second.progress == []  # its handler never ran
    bot.send(f"cancel {first.execution_id}")
    assert bot.app.wait(first.execution_id, 5)["state"] == "cancelled"
    assert bot.app.jobs.live() == []


def test_cancel_permissions_and_unknown_ids(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with()
    job = bot.send("wait for 30", wait=False)
    ex_id = job.execution_id
    running(bot, ex_id)
    refused = bot.send(f"cancel {ex_id}", user=BOB)
    assert f"was started by {ALICE}; only they or members of ops can cancel it" in refused.text
    assert bot.app.store.get(ex_id)["state"] == "running"
    assert "I can't find `ex-000000`" in bot.send("cancel ex-000000").text
    assert "execution" in bot.send("cancel everything").text  # not an id: says what is expected
    bot.send(f"cancel {ex_id.upper()}", user=OLGA)  # ops may cancel anyone's
    assert bot.app.wait(ex_id, 5)["state"] == "cancelled"
    assert f"as asked by {OLGA}" in job.text
    assert "is not running: it cancelled" in bot.send(f"cancel {ex_id}").text


def test_timeout_cancels_and_reports(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with()
    t0 = time.monotonic()
    replies = bot.send("slow", timeout=5)
    record = bot.app.store.get(replies.execution_id)
    assert record["state"] == "timed_out"
    assert 0.3 <= time.monotonic() - t0 < 1.5
    assert "`test.slow` timed out after 0.3 s" in replies.text


def test_default_timeout_from_config(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with(default_timeout=0.2)
    replies = bot.send("wait for 30", timeout=5)
    assert bot.app.store.get(replies.execution_id)["state"] == "timed_out"
    assert "timed out after 0.2 s" in replies.text


def test_handler_ignoring_timeout_is_abandoned(bot_with) -> None:  # type: ignore[no-untyped-def]
    RELEASE.clear()
    bot = bot_with(workers=1, cancel_grace=0.2)
    stuck = bot.send("stubborn", timeout=5)
    assert bot.app.store.get(stuck.execution_id)["state"] == "timed_out"
    assert "did not stop when asked" in stuck.text
    assert "abandoned" in bot.send("jobs").text
    assert "can't be stopped from here" in bot.send(f"cancel {stuck.execution_id}").text
    # Its worker slot was handed on: with one worker, another command still runs.
    assert "waited 0" in bot.send("wait for 0", timeout=5).text
    RELEASE.set()
    until(lambda: bot.app.jobs.live() == [])
    assert bot.app.store.get(stuck.execution_id)["state"] == "timed_out"  # not overwritten


def test_lock_refuses_second_mutation_and_names_the_holder(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with()
    first = bot.send("create platform environment named demo01", wait=False)
    running(bot, first.execution_id)
    second = bot.send("create platform environment named demo01", user=BOB)
    assert bot.app.store.get(second.execution_id)["state"] == "refused"
    assert (
        f"platform environment demo01 is busy: `{first.execution_id}` platform.create by {ALICE}"
        in second.text
    )
    other = bot.send("create api environment named demo01", user=BOB, timeout=5)
    assert "api demo01 created" in other.text  # another family's stack: another lock
    elsewhere = bot.send("create platform environment named demo02", user=BOB, wait=False)
    running(bot, elsewhere.execution_id)
    for ex_id in (first.execution_id, elsewhere.execution_id):
        bot.send(f"cancel {ex_id}", user=OLGA)


def test_lock_wait_queues_behind_the_holder(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with()
    first = bot.send("create platform environment named demo01", wait=False)
    running(bot, first.execution_id)
    second = bot.send("destroy platform environment named demo01", user=BOB, wait=False)
    assert "will start when it is free" in second.text
    assert bot.app.store.get(second.execution_id)["state"] == "queued"
    assert "waiting" in bot.send("jobs").text
    bot.send(f"cancel {first.execution_id}")
    assert bot.app.wait(second.execution_id, 5)["state"] == "succeeded"
    assert "destroyed demo01" in second.text


def test_shared_locks_across_families(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with(locks="shared")
    first = bot.send("create platform environment named demo01", wait=False)
    running(bot, first.execution_id)
    other = bot.send("create api environment named demo01", user=BOB)
    assert "environment demo01 is busy" in other.text
    bot.send(f"cancel {first.execution_id}")


def test_per_user_cap(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with(per_user=2)
    ids = [bot.send("wait for 30", wait=False).execution_id for _ in range(2)]
    third = bot.send("wait for 30")
    assert "You already have 2 commands running or queued" in third.text
    assert bot.app.store.get(third.execution_id)["state"] == "refused"
    assert "waited 0" in bot.send("wait for 0", user=BOB, timeout=5).text  # others unaffected
    bot.send(f"cancel {ids[0]}")
    bot.app.wait(ids[0], 5)
    assert "waited 0" in bot.send("wait for 0", timeout=5).text  # a slot came free
    bot.send(f"cancel {ids[1]}")


def test_queue_full_says_busy(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with(workers=1, queue=1)
    a = bot.send("wait for 30", wait=False)
    running(bot, a.execution_id)
    b = bot.send("wait for 30", user=BOB, wait=False)
    c = bot.send("wait for 30", user=CAROL)
    assert "busy right now; please try again in a minute" in c.text
    assert bot.app.store.get(c.execution_id)["state"] == "refused"
    assert bot.app.store.get(b.execution_id)["state"] == "queued"
    for ex_id in (b.execution_id, a.execution_id):
        bot.send(f"cancel {ex_id}", user=OLGA)


def test_jobs_lists_requester_age_and_progress(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with()
    assert "Nothing is running" in bot.send("jobs").text
    job = bot.send("create platform environment named demo01", wait=False)
    running(bot, job.execution_id)
    until(lambda: bot.app.store.get(job.execution_id)["progress"] == "creating demo01")
    listing = bot.send("jobs", user=BOB).text
    assert f"`{job.execution_id}` platform.create (environment=demo01) — {ALICE}" in listing
    assert "running for 0 s — creating demo01" in listing
    bot.send(f"cancel {job.execution_id}")


def test_progress_is_throttled_and_the_last_one_arrives(bot_with, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(Context, "PROGRESS_INTERVAL", 0.3)
    bot = bot_with()
    replies = bot.send("steps", wait=False)
    # "2 of 3" is folded away; "3 of 3" comes from the timer while the handler still sleeps.
    until(lambda: replies.progress == ["1 of 3", "3 of 3"], timeout=2)
    assert bot.app.store.get(replies.execution_id)["state"] == "running"
    assert bot.app.store.get(replies.execution_id)["progress"] == "3 of 3"
    bot.app.wait(replies.execution_id, 5)
    assert replies.progress == ["1 of 3", "3 of 3", "done soon"]
    assert replies.said[-1].startswith("stepped")


def test_held_back_progress_is_flushed_before_the_result(tmp_path) -> None:  # type: ignore[no-untyped-def]
    order: list[str] = []

    @command("test.burst", "burst", description="Two quick updates", examples=["burst"])
    def burst(ctx: Context) -> str:
        ctx.progress("first")
        ctx.progress("last")  # within the interval: held back, then flushed before the result
        return "result"

    cfg = load_config(DEFAULT_CONFIG, env={"MARVIN_STATE": str(tmp_path / "burst.sqlite")})
    app = build_app(
        cfg,
        table=build_table([burst]),
        authorizer=LocalAuthorizer(),
        frontends=[TEST_FRONT_END],
    )
    inbox = Inbox()
    inbox.progress = lambda text: order.append(f"progress:{text}")  # type: ignore[method-assign]
    inbox.say = lambda text: order.append(f"say:{getattr(text, 'text', text)}")  # type: ignore[method-assign]
    user = User(id="U-alice", email=ALICE, source="test")
    ex_id = app.process(Message(text="burst", user=user, responder=inbox))
    app.wait(ex_id, 5)
    app.shutdown(timeout=1)
    assert order == ["progress:first", "progress:last", f"say:result (`{ex_id}`)"]


def test_drain_finishes_short_jobs_and_interrupts_the_rest(bot_with) -> None:  # type: ignore[no-untyped-def]
    bot = bot_with(workers=2)
    short = bot.send("wait for 1", wait=False)
    long = bot.send("wait for 30", user=BOB, wait=False)
    queued = bot.send("wait for 30", user=CAROL, wait=False)
    running(bot, short.execution_id)
    running(bot, long.execution_id)
    t0 = time.monotonic()
    interrupted = bot.app.drain(grace=1.5)
    assert time.monotonic() - t0 < 2.5
    assert set(interrupted) == {long.execution_id, queued.execution_id}
    state = {
        r.execution_id: bot.app.store.get(r.execution_id)["state"] for r in (short, long, queued)
    }
    assert state == {
        short.execution_id: "succeeded",
        long.execution_id: "interrupted",
        queued.execution_id: "interrupted",
    }
    assert "had not started and will not run" in queued.text
    assert "interrupted part-way" in long.text
    late = bot.send("wait for 0", wait=False)
    assert "restarting" in late.text


def test_recover_marks_dead_replicas_executions_interrupted(bot_with, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Recovery by lease: another host's replica is dead once its lease expired; one on this
    host as soon as its process is gone; rows from before replicas (no replica) are dead."""
    import subprocess
    import sys
    import time as _time

    from marvin.runtime.owner import process_identity

    bot = bot_with()
    store, here = bot.app.store, bot.app.rt.replicas.host
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    now = _time.time()
    try:
        replicas = {  # id: (host, pid, identity, lease_until)
            "far-alive": ("other-host", 7, "7:1", now + 60),
            "far-expired": ("other-host", 8, "8:1", now - 1),
            "near-dead": (here, dead_pid, f"{dead_pid}:1", now + 60),
            "near-alive": (here, alive.pid, process_identity(alive.pid), now + 60),
        }
        for rid, (host, pid, ident, lease) in replicas.items():
            store.db.execute(
                "INSERT INTO replicas (id, host, pid, identity, started_at, heartbeat_at,"
                " lease_until) VALUES (?,?,?,?,?,?,?)",
                (rid, host, pid, ident, now, now, lease),
            )
        rows = {}
        for name, owner, state in [
            ("far-alive", "far-alive", "running"),
            ("far-expired", "far-expired", "running"),
            ("near-dead", "near-dead", "queued"),
            ("near-alive", "near-alive", "running"),
            ("legacy", f"{dead_pid}:1", "running"),  # pid:start-time, before replicas
            ("done", "far-expired", "succeeded"),
        ]:
            rows[name] = store.create_execution(
                ref="test.wait", params={}, user_id="U1", email=ALICE, channel="C1",
                thread="T1", source="slack", state=state, pid=1, owner=owner,
            )  # fmt: skip
        told: list[dict] = []
        out = bot.app.recover(told.append)
        assert {r["id"] for r in out} == {rows["far-expired"], rows["near-dead"], rows["legacy"]}
        assert [r["id"] for r in told] == [r["id"] for r in out]
        assert all(r["channel"] == "C1" and r["thread"] == "T1" for r in told)
        notice = next(r["notice"] for r in told if r["id"] == rows["far-expired"])
        assert "interrupted part-way" in notice and "Check" in notice
        assert store.get(rows["far-alive"])["state"] == "running"
        assert store.get(rows["near-alive"])["state"] == "running"
        assert store.get(rows["done"])["state"] == "succeeded"
        assert store.get(rows["near-dead"])["state"] == "interrupted"
        assert bot.app.recover(told.append) == []  # once only
        stopped = {
            r["id"] for r in store.db.rows("SELECT id FROM replicas WHERE stopped_at IS NOT NULL")
        }
        assert stopped == {"far-expired", "near-dead"}  # reaped: their locks are free
        audit = store.audit_rows(rows["legacy"])
        assert audit[-1]["replica"] == bot.app.rt.owner  # each audit row names its replica
    finally:
        alive.kill()
        alive.wait()
