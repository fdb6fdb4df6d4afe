"""sidekiq.pause / show / resume against a real redis-server, with emulated Sidekiq 7
processes (heartbeats, TSTP, jobs) and, for resume, moto's ECS with the scheduler emulator."""

from __future__ import annotations

import json
import time

import pytest

import commands.sidekiq
from marvin.actions.sidekiq import processes, quiet
from marvin.runtime.execution import Context
from tests import ops_world as world
from tests.fakes import aws, sidekiq
from tests.fakes.ecs_scheduler import EcsScheduler
from tests.fakes.sidekiq import Fleet, push_job
from tests.test_ops_scale_restart import fast_config

moto_server = aws.moto_server
aws_env = aws.aws_env
redis_server = sidekiq.redis_server
sidekiq_redis = sidekiq.sidekiq_redis
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def every_progress(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setattr(Context, "PROGRESS_INTERVAL", 0)


@pytest.fixture
def bot(marvin_bot, sidekiq_redis, tmp_path):  # noqa: ANN001, ANN201
    return marvin_bot(commands.sidekiq, user="alice@example.com", config=fast_config(tmp_path))


@pytest.fixture
def fleets(sidekiq_redis):  # noqa: ANN001, ANN201
    made: list[Fleet] = []

    def make(tag: str) -> Fleet:
        made.append(Fleet(sidekiq_redis, tag))
        return made[-1]

    yield make
    for f in made:
        f.stop_all()


def wait_registered(server, n: int) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 5
    while len(processes(server.client())) < n:
        assert time.monotonic() < deadline, "emulated processes did not heartbeat"
        time.sleep(0.02)


def test_the_emulator_speaks_sidekiq_7(sidekiq_redis, fleets) -> None:  # noqa: ANN001
    """What Marvin relies on, seen in Redis as Sidekiq writes it."""
    (proc,) = fleets("demo01").start(1)
    wait_registered(sidekiq_redis, 1)
    r = sidekiq_redis.client()
    assert r.smembers("processes") == {proc.identity}
    fields = r.hgetall(proc.identity)
    assert json.loads(fields["info"])["tag"] == "demo01" and fields["quiet"] == "false"
    assert 0 < r.ttl(proc.identity) <= 60
    quiet(r, proc.identity)
    assert 0 < r.ttl(f"{proc.identity}-signals") <= 60  # EXPIRE in the same MULTI
    deadline = time.monotonic() + 5
    while r.hget(proc.identity, "quiet") != "true":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert proc.signals == ["TSTP"] and not r.exists(f"{proc.identity}-signals")


def test_pause_waits_for_busy_workers_to_drain(bot, sidekiq_redis, fleets) -> None:  # noqa: ANN001
    demo = fleets("demo01")
    a, b = demo.start(2, concurrency=3)
    other = fleets("demo02").start(1, queues=("reports",))[0]  # same Redis, another tag
    r = sidekiq_redis.client()
    for _ in range(4):
        push_job(r, "default", 0.8)
    wait_registered(sidekiq_redis, 3)
    deadline = time.monotonic() + 5
    while sum(p.busy for p in processes(r, "demo01")) < 4:
        assert time.monotonic() < deadline, "the workers never picked the jobs up"
        time.sleep(0.02)
    started = time.monotonic()
    rep = bot.send("pause sidekiq on demo01")
    assert rep.reactions == ["accepted", "succeeded"], rep.text
    assert time.monotonic() - started >= 0.3  # it waited for the jobs in hand
    assert "Sidekiq on demo01 is paused: 2 processes quiet, no jobs busy." in rep.said[-1]
    assert any("jobs still busy" in p and not p.startswith("0 ") for p in rep.progress)
    assert a.signals == ["TSTP"] and b.signals == ["TSTP"] and other.signals == []
    assert a.done_jobs + b.done_jobs == 4  # drained, not dropped
    push_job(r, "default", 0.1)
    time.sleep(0.4)
    assert r.llen("queue:default") == 1  # quiet processes fetch nothing new


def test_show_lists_processes_and_queues(bot, sidekiq_redis, fleets) -> None:  # noqa: ANN001
    demo = fleets("demo01")
    (live,) = demo.start(1, concurrency=10)
    (frozen,) = demo.start(1)
    r = sidekiq_redis.client()
    push_job(r, "mailers", 30, age=42.0)  # nobody works mailers: it waits, 42 s old
    wait_registered(sidekiq_redis, 2)
    frozen.freeze()
    time.sleep(1.2)  # past stale_seconds (1 s in these tests)
    rep = bot.send("show sidekiq on demo01")
    assert rep.reactions == ["accepted", "succeeded"], rep.text
    text = rep.said[-1]
    assert "Sidekiq on demo01: 2 processes" in text
    assert f"• {live.hostname}:{live.pid} running, busy 0/10, last beat 0 s ago" in text
    assert f"• {frozen.hostname}:{frozen.pid} STALE" in text
    assert "• mailers: 1 jobs, latency 4" in text  # 42-43 s


def test_pause_reports_stale_processes_without_waiting(bot, sidekiq_redis, fleets) -> None:  # noqa: ANN001
    demo = fleets("demo01")
    demo.start(1)
    (hung,) = demo.start(1)
    wait_registered(sidekiq_redis, 2)
    hung.freeze()
    time.sleep(1.2)
    rep = bot.send("pause sidekiq on demo01")
    assert rep.reactions[-1] == "succeeded", rep.text
    assert "1 processes quiet" in rep.said[-1]
    assert (
        f"Stale (no heartbeat for 1 s, not waited for): {hung.hostname}:{hung.pid}"
        in (rep.said[-1])
    )


def test_without_redis_or_processes_it_says_so(
    marvin_bot,
    bot,
    sidekiq_redis,
    monkeypatch,
    tmp_path,  # noqa: ANN001
) -> None:
    rep = bot.send("pause sidekiq on demo09")
    assert rep.reactions[-1] == "failed"
    assert "no live Sidekiq processes for demo09" in rep.said[-1]
    monkeypatch.setenv("SIDEKIQ_REDIS_PASSWORD", "wrong-password")
    (tmp_path / "a").mkdir()
    wrong = marvin_bot(commands.sidekiq, config=fast_config(tmp_path / "a"))
    rep = wrong.send("show sidekiq on demo01")
    assert "Sidekiq's Redis for demo01 (127.0.0.1:" in rep.said[-1]
    assert "AuthenticationError" in rep.said[-1] and "wrong-password" not in rep.said[-1]
    monkeypatch.delenv("SIDEKIQ_REDIS_URL")  # Marvin starts without it, and says so at run time
    (tmp_path / "b").mkdir()
    unset = marvin_bot(commands.sidekiq, config=fast_config(tmp_path / "b"))
    rep = unset.send("show sidekiq on demo01")
    assert rep.reactions[-1] == "failed"
    assert "Sidekiq's Redis is not configured: set SIDEKIQ_REDIS_URL" in rep.said[-1]


@pytest.mark.timeout(60)
def test_resume_restarts_workers_and_waits_for_fresh_heartbeats(
    marvin_bot,
    aws_env,
    sidekiq_redis,
    fleets,
    tmp_path,  # noqa: ANN001
) -> None:
    bot = marvin_bot(commands.sidekiq, user="alice@example.com", config=fast_config(tmp_path))
    demo = fleets("demo01")
    old = demo.start(2)
    wait_registered(sidekiq_redis, 2)
    assert bot.send("pause sidekiq on demo01").reactions[-1] == "succeeded"
    with EcsScheduler(tick=0.1) as ecs:
        world.make_service("demo01", "worker", desired=2)
        ecs.settle()
        # each new ECS task is a fresh Sidekiq process; an old quiet one stops
        ecs.on_tasks.append(lambda service, n: service == "worker" and demo.replace_one())
        rep = bot.send("resume sidekiq on demo01")
    assert rep.reactions == ["accepted", "succeeded"], rep.text
    assert (
        "Sidekiq on demo01 is running: 2 fresh processes (service worker restarted)"
        in (rep.said[-1])
    )
    assert [x[0] for x in ecs.rollouts] == ["worker"]
    live = processes(sidekiq_redis.client(), "demo01")
    assert {p.identity for p in live}.isdisjoint({p.identity for p in old})
    assert all(not p.quiet for p in live)
