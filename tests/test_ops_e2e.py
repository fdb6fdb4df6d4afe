"""The ops commands end to end: ``marvin serve`` (a subprocess on Socket Mode) against the
loopback fake Slack, and ``marvin run``, both on the project's own commands, vocabulary and
policy; AWS is moto in server mode (with ECS's scheduler and RDS's timing emulated in this
process, where the moto server runs), Sidekiq is emulated processes on a real redis-server."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ops_world as world
from tests.fakes import aws, sidekiq
from tests.fakes.ecs_scheduler import CIRCUIT_BREAKER, EcsScheduler
from tests.fakes.rds_lifecycle import RdsLifecycle
from tests.fakes.sidekiq import PASSWORD, Fleet, push_job
from tests.fakes.slack import FakeSlack
from tests.serving import ROOT, Serve, marvin_yaml

moto_server = aws.moto_server
aws_env = aws.aws_env
redis_server = sidekiq.redis_server
ALICE, BOB = "U0ALICE", "U0BOB"  # ops (also platform-admins), developers


def write_config(root: Path) -> Path:
    fast = copy.deepcopy(world.FAST)
    fast["sidekiq"]["redis_url"] = "${SIDEKIQ_REDIS_URL:-}"
    return marvin_yaml(
        root,
        directory="users:\n  alice@example.com: {groups: [ops]}\n"
        "  bob@example.com: {groups: [developers]}\ngroups:\n  platform-admins: {members: [ops]}\n",
        commands={"lint": "strict"},
        **fast,
    )


def service_env(moto: str, redis_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SIDEKIQ_REDIS_URL": redis_url,
        "SIDEKIQ_REDIS_PASSWORD": PASSWORD,
    }


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("ops"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.start() as f:
        f.add_user(ALICE, email="alice@example.com")
        f.add_user(BOB, email="bob@example.com")
        yield f


@pytest.fixture(scope="module")
def marvin(fake, config, moto_server, redis_server) -> Iterator[Serve]:  # noqa: ANN001
    serve = Serve(fake, config, env=service_env(moto_server, redis_server.url))
    try:
        fake.wait_connected(timeout=20)
    except TimeoutError:
        serve.stop()
        raise AssertionError(serve.output()) from None
    yield serve
    assert serve.stop() == 0, serve.output()[-3000:]


@pytest.fixture
def estate(aws_env, redis_server):  # noqa: ANN001, ANN201
    """A clean moto and Redis, ECS's scheduler and RDS's timing, and Sidekiq fleets."""
    redis_server.client().flushall()
    fleets: list[Fleet] = []
    with EcsScheduler(tick=0.05) as ecs, RdsLifecycle(tick=0.05, ticks=4) as rds:

        def fleet(tag: str) -> Fleet:
            fleets.append(Fleet(redis_server, tag))
            return fleets[-1]

        yield ecs, rds, fleet
    for f in fleets:
        f.stop_all()


class Asked:
    def __init__(self, fake: FakeSlack, since: int, ts: str) -> None:
        calls = [c for c in fake.calls[since:] if c.args.get("thread_ts") == ts or "ts" in c.args]
        self.posts = [c.args["text"] for c in calls if c.method == "chat.postMessage"]
        self.updates = [c.args.get("text", "") for c in calls if c.method == "chat.update"]
        self.result = next(t for t in reversed(self.posts) if "`ex-" in t)


def ask(fake: FakeSlack, text: str, *, user: str = ALICE, confirm: bool = False) -> Asked:
    n = len(fake.calls)
    event = fake.app_mention(text, user=user)
    fake.send_event(event)
    if confirm:
        prompt = fake.wait_for(
            "chat.postMessage",
            lambda c: "blocks" in c.args and c.args.get("thread_ts") == event["ts"],
            timeout=10,
            since=n,
        )
        token = prompt.args["blocks"][1]["elements"][0]["value"]
        ts = prompt.response["ts"]
        fake.send_interactive(fake.block_actions("marvin_confirm", token, user=user, message_ts=ts))
    fake.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("thread_ts") == event["ts"] and "`ex-" in str(c.args.get("text")),
        timeout=30,
        since=n,
    )
    return Asked(fake, n, event["ts"])


# -- through Slack ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_slack_scale_restart_and_policy(fake, marvin, estate) -> None:  # noqa: ANN001
    ecs, _rds, _fleet = estate
    world.make_group("web-demo01", "demo01", min_size=1, max_size=4, desired=1)
    world.make_group("web-prod", "prod", min_size=2, max_size=10, desired=4)
    ok = ask(fake, "scale group web-demo01 in demo01 to 2", user=BOB)
    assert "web-demo01 is at 2 instances, all InService and healthy (was 1)" in ok.result
    assert world.group("web-demo01")["DesiredCapacity"] == 2
    out = ask(fake, "scale group web-demo01 in demo01 to 7", user=BOB)
    assert "7 is outside web-demo01's bounds (1 to 4); nothing changed" in out.result
    sneaky = ask(fake, "scale group web-prod in demo01 to 2", user=BOB)
    assert "was not run (`ex-" in sneaky.result
    assert world.group("web-prod")["DesiredCapacity"] == 4

    world.make_service("demo01", "api", desired=2)
    ecs.settle()
    done = ask(fake, "restart service api on demo01", user=BOB)
    assert "api on demo01 restarted: deployment ecs-svc/" in done.result
    assert any("new tasks running" in t for t in done.posts + done.updates)
    ecs.fail["api"] = 2
    failed = ask(fake, "restart service api on demo01", user=BOB)
    assert f"FAILED: {CIRCUIT_BREAKER}" in failed.result

    n = len(fake.calls)
    fake.send_event(fake.app_mention("restart service api on prod", user=BOB))
    refusal = fake.wait_for("chat.postEphemeral", timeout=10, since=n)
    assert "not allowed to run `service.restart`" in refusal.args["text"]
    assert "platform-admins" in refusal.args["text"]


@pytest.mark.timeout(90)
def test_slack_restores(fake, marvin, estate) -> None:  # noqa: ANN001
    _ecs, rds, _fleet = estate
    world.make_environment("platform", "demo01", ["orders"])
    world.snapshot("demo01-orders", "demo01-orders-before-upgrade-20240501-120000")
    time.sleep(0.01)
    world.snapshot("demo01-orders", "demo01-orders-latest")
    named = ask(fake, "restore platform environment named demo01 from snapshot before-upgrade",
                confirm=True)  # fmt: skip
    assert "orders: from demo01-orders-before-upgrade-20240501-120000" in named.result
    latest = ask(fake, "restore platform environment named demo01", confirm=True)
    assert "orders: from demo01-orders-latest" in latest.result

    world.make_environment("api", "demo02", ["orders", "users"])
    for db in ("orders", "users"):
        world.snapshot(f"demo02-{db}", f"demo02-{db}-manual")
    both = ask(fake, "restore api environment named demo02", confirm=True)
    assert "orders: from demo02-orders-manual" in both.result
    assert "users: from demo02-users-manual" in both.result
    shown = both.posts + both.updates
    assert any("• orders: " in t and "• users: " in t for t in shown), shown

    world.make_environment("api", "demo03", ["orders", "users"])
    for db in ("orders", "users"):
        world.snapshot(f"demo03-{db}", f"demo03-{db}-manual")
    rds.fail.append("demo03-users-restored-*")
    rds.hold.append("demo03-orders-restored-*")
    broken = ask(fake, "restore api environment named demo03", confirm=True)
    assert "orders: cancelled" in broken.result and "users: failed" in broken.result
    assert "still runs on its own databases" in broken.result
    left = {k for k in world.instances() if k.startswith("demo03-")}
    assert left == {"demo03-orders", "demo03-users"}


@pytest.mark.timeout(90)
def test_slack_sidekiq_pause_show_resume(fake, marvin, estate, redis_server) -> None:  # noqa: ANN001
    ecs, _rds, fleet = estate
    demo = fleet("demo01")
    workers = demo.start(2, concurrency=2)
    r = redis_server.client()
    for _ in range(3):
        push_job(r, "default", 1.0)
    deadline = time.monotonic() + 5
    while sum(len(w.work) for w in workers) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    paused = ask(fake, "pause sidekiq on demo01", user=BOB)
    assert "Sidekiq on demo01 is paused: 2 processes quiet, no jobs busy." in paused.result
    assert sum(w.done_jobs for w in workers) == 3
    shown = ask(fake, "show sidekiq on demo01", user=BOB)
    assert "Sidekiq on demo01: 2 processes" in shown.result and " quiet, busy 0/2" in shown.result

    world.make_service("demo01", "worker", desired=2)
    ecs.settle()
    ecs.on_tasks.append(lambda service, n: service == "worker" and demo.replace_one())
    resumed = ask(fake, "resume sidekiq on demo01", user=BOB)
    assert "Sidekiq on demo01 is running: 2 fresh processes" in resumed.result
    again = ask(fake, "show sidekiq on demo01", user=BOB)
    assert again.result.count(" running, busy 0/5") == 2


# -- through `marvin run` --------------------------------------------------------------------


def run(config: Path, env: dict[str, str], ref: str, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "marvin", "--config", str(config), "run", ref, *args]
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv + ["--as", "alice@example.com"], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.timeout(120)
def test_cli_runs_every_command(config, estate, moto_server, redis_server) -> None:  # noqa: ANN001
    ecs, rds, fleet = estate
    env = service_env(moto_server, redis_server.url)
    world.make_group("web-demo05", "demo05", min_size=1, max_size=3, desired=1)
    world.make_group("web-live", "live", desired=1)
    p = run(config, env, "asg.scale", "group=web-demo05", "environment=demo05", "count=3")
    assert p.returncode == 0 and "web-demo05 is at 3 instances" in p.stdout, p.stderr[-2000:]
    p = run(config, env, "asg.scale", "group=web-demo05", "environment=demo05", "count=4")
    assert p.returncode == 1 and "4 is outside web-demo05's bounds (1 to 3)" in p.stdout
    p = run(config, env, "asg.scale", "group=web-live", "environment=demo05", "count=2")
    assert p.returncode == 1 and "group web-live is tagged environment=live, not demo05" in p.stdout

    world.make_service("demo05", "api", desired=2)
    world.make_service("demo05", "worker", desired=1)
    ecs.settle()
    p = run(config, env, "service.restart", "service=api", "environment=demo05")
    assert p.returncode == 0 and "deployment ecs-svc/" in p.stdout, p.stderr[-2000:]
    ecs.fail["api"] = 2
    p = run(config, env, "service.restart", "service=api", "environment=demo05")
    assert p.returncode == 1 and CIRCUIT_BREAKER in p.stdout

    world.make_environment("platform", "demo05", ["orders", "users"])
    for db in ("orders", "users"):
        world.snapshot(f"demo05-{db}", f"demo05-{db}-nightly-1")
    p = run(config, env, "platform.restore", "environment=demo05", "snapshot=nightly-1", "--yes")
    assert p.returncode == 0 and "users: from demo05-users-nightly-1" in p.stdout, p.stderr[-2000:]
    rds.fail.append("demo05-orders-restored-*")
    p = run(config, env, "platform.restore", "environment=demo05", "--yes")
    assert p.returncode == 1 and "orders: failed" in p.stdout and "users: cancelled" in p.stdout
    assert world.instances()["demo05-users"]["marvin:restored-from"] == "demo05-users-nightly-1"

    demo = fleet("demo05")
    demo.start(1)
    push_job(redis_server.client(), "default", 0.5)
    time.sleep(0.3)
    p = run(config, env, "sidekiq.pause", "environment=demo05")
    assert p.returncode == 0 and "1 processes quiet, no jobs busy" in p.stdout, p.stderr[-2000:]
    p = run(config, env, "sidekiq.show", "environment=demo05")
    assert p.returncode == 0 and " quiet, busy 0/5" in p.stdout
    ecs.on_tasks.append(lambda service, n: service == "worker" and demo.replace_one())
    p = run(config, env, "sidekiq.resume", "environment=demo05")
    assert p.returncode == 0 and "1 fresh processes" in p.stdout, p.stderr[-2000:]
