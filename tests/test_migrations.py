"""migrations.run: moto (server mode) for ECS and CloudWatch Logs through the real pipeline;
botocore's Stubber for the task that exits non-zero (moto's containers always exit 0)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

import commands.migrations
from marvin import command
from marvin.actions.migrations import MigrationFailed, run_migrations, with_tag
from marvin.config import DEFAULT_CONFIG, load_config
from tests.fakes import aws

moto_server = aws.moto_server
aws_env = aws.aws_env
pytestmark = pytest.mark.timeout(60)
LOGS = {"awslogs-group": "/ecs/migrations", "awslogs-stream-prefix": "mig"}


def make_environment(name: str = "demo01") -> None:
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=name)
    ecs.register_task_definition(
        family=f"{name}-migrations",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "migrations",
                "image": "registry.example.com:5000/app:4.2",
                "memory": 512,  # moto: every container needs its own memory
                "command": ["bin/migrate"],
                "logConfiguration": {"logDriver": "awslogs", "options": LOGS},
            },
            {"name": "sidecar", "image": "envoy:1", "memory": 128, "essential": False},
        ],
    )


def config(tmp_path: Path, **migrations: object):  # noqa: ANN201
    import os

    cfg = load_config(DEFAULT_CONFIG, env={**os.environ, "MARVIN_STATE": str(tmp_path / "s.db")})
    settings = {"subnets": ["subnet-1"], "security_groups": ["sg-1"], "poll_seconds": 0.05}
    cfg.data["migrations"].update({**settings, **migrations})
    return cfg


def task_of(environment: str = "demo01") -> dict:
    ecs = boto3.client("ecs")
    arns = ecs.list_tasks(cluster=environment)["taskArns"]
    assert len(arns) == 1
    return ecs.describe_tasks(cluster=environment, tasks=arns)["tasks"][0]


def test_version_as_image_tag_registers_a_revision(marvin_bot, aws_env, tmp_path) -> None:  # noqa: ANN001
    make_environment()
    bot = marvin_bot(commands.migrations, config=config(tmp_path))
    r = bot.send("run migrations on demo01 at version 4.3", timeout=30)
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert r.said[0].startswith("Running migrations on demo01 (`ex-")
    assert "Migrations on demo01 succeeded (demo01-migrations:2, task " in r.said[-1]
    assert r.progress and all(p.startswith("demo01-migrations:2 on demo01: ") for p in r.progress)
    definition = boto3.client("ecs").describe_task_definition(taskDefinition="demo01-migrations:2")
    images = {c["name"]: c["image"] for c in definition["taskDefinition"]["containerDefinitions"]}
    assert images == {"migrations": "registry.example.com:5000/app:4.3", "sidecar": "envoy:1"}
    task = task_of()
    assert task["startedBy"] == f"marvin-{r.execution_id}"
    assert task["taskDefinitionArn"].endswith(":2")


def test_version_as_command_override(marvin_bot, aws_env, tmp_path) -> None:  # noqa: ANN001
    make_environment()
    cfg = config(tmp_path, version_as="command", command=["bin/migrate", "--to", "{version}"])
    bot = marvin_bot(commands.migrations, config=cfg)
    r = bot.send("run migrations on demo01 at version 4.3", timeout=30)
    assert r.reactions[-1] == "succeeded", r.text
    assert "(demo01-migrations:1, task" in r.said[-1]
    overrides = task_of()["overrides"]["containerOverrides"]
    assert overrides == [{"name": "migrations", "command": ["bin/migrate", "--to", "4.3"]}]


def test_unknown_environment_is_a_clear_failure(marvin_bot, aws_env, tmp_path) -> None:  # noqa: ANN001
    bot = marvin_bot(commands.migrations, config=config(tmp_path))
    r = bot.send("run migrations on nowhere")
    assert r.reactions == ["accepted", "failed"]
    assert "no migration task definition nowhere-migrations" in r.said[-1]


def test_cancel_stops_the_task(marvin_bot, aws_env, tmp_path) -> None:  # noqa: ANN001
    make_environment()
    bot = marvin_bot(commands.migrations, config=config(tmp_path, poll_seconds=30))
    r = bot.send("run migrations on demo01", wait=False)
    deadline = time.monotonic() + 10
    while not r.progress:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    bot.send(f"cancel {r.execution_id}")
    bot.app.wait(r.execution_id, 10)
    assert bot.app.store.get(r.execution_id)["state"] == "cancelled"
    task = task_of()
    assert task["lastStatus"] == "STOPPED"
    assert task["stoppedReason"] == f"cancelled ({r.execution_id})"


RUNNING, RELEASE = threading.Event(), threading.Event()


@command(
    "app.deploy",
    "deploy app to {{ environment }}( {{ pace='fast' }})?",
    description="stands in for a deploy of the same environment (its own family's lock)",
    examples=["deploy app to demo01", "deploy app to demo01 slowly"],
    lock="environment",
)
def deploy(ctx, environment, pace="fast"):  # noqa: ANN001, ANN201
    if pace == "slowly":
        RUNNING.set()
        RELEASE.wait(10)
    return "deployed"


def test_a_deploy_of_the_environment_waits_for_the_migration(marvin_bot, aws_env, tmp_path) -> None:  # noqa: ANN001
    make_environment()
    make_environment("demo02")
    bot = marvin_bot(commands.migrations, deploy, config=config(tmp_path, poll_seconds=30))
    r = bot.send("run migrations on demo01", wait=False)
    deadline = time.monotonic() + 10
    while not r.progress:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    refused = bot.send("deploy app to demo01")
    assert "succeeded" not in refused.reactions
    assert "environment demo01 is busy" in refused.text and r.execution_id in refused.text
    assert bot.send("deploy app to demo02").reactions[-1] == "succeeded"  # another environment
    bot.send(f"cancel {r.execution_id}")
    bot.app.wait(r.execution_id, 10)
    # And the other way round: a running deploy holds off the migration.
    deploying = bot.send("deploy app to demo01 slowly", wait=False)
    while not RUNNING.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    held_off = bot.send("run migrations on demo01")
    assert f"environment demo01 is busy: `{deploying.execution_id}` app.deploy" in held_off.text
    RELEASE.set()
    bot.app.wait(deploying.execution_id, 10)


def test_non_zero_exit_fails_with_reason_and_log_tail(aws_env, tmp_path) -> None:  # noqa: ANN001
    """The action on a stubbed ECS (exit code 3) and moto's CloudWatch Logs."""
    task_id = "0123456789abcdef0123456789abcdef"
    arn = f"arn:aws:ecs:us-east-1:123456789012:task/demo01/{task_id}"
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=LOGS["awslogs-group"])
    stream = f"mig/migrations/{task_id}"
    logs.create_log_stream(logGroupName=LOGS["awslogs-group"], logStreamName=stream)
    now = int(time.time() * 1000)
    lines = [f"migrating {i}" for i in range(40)]
    lines += ["connecting with DATABASE_PASSWORD=hunter22", "ERROR: relation users exists"]
    logs.put_log_events(
        logGroupName=LOGS["awslogs-group"],
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
    )
    ecs = boto3.client("ecs", endpoint_url="https://ecs.invalid")  # every call answered below
    container = {
        "name": "migrations",
        "image": "app:4.2",
        "memory": 512,
        "logConfiguration": {"logDriver": "awslogs", "options": LOGS},
    }
    definition = {
        "taskDefinitionArn": f"{arn.split(':task/')[0]}:task-definition/demo01-migrations:7",
        "family": "demo01-migrations",
        "revision": 7,
        "containerDefinitions": [container],
    }
    running = {"taskArn": arn, "lastStatus": "RUNNING", "containers": []}
    stopped = {
        "taskArn": arn,
        "lastStatus": "STOPPED",
        "stoppedReason": "Essential container in task exited",
        "containers": [{"name": "migrations", "exitCode": 3, "reason": "exit status 3"}],
    }
    with Stubber(ecs) as stub:
        stub.add_response("describe_task_definition", {"taskDefinition": definition})
        stub.add_response("run_task", {"tasks": [running], "failures": []})
        stub.add_response("describe_tasks", {"tasks": [running], "failures": []})
        stub.add_response("describe_tasks", {"tasks": [stopped], "failures": []})
        progress: list[str] = []
        ctx = SimpleNamespace(
            services=SimpleNamespace(config=config(tmp_path), ecs=ecs, logs=logs),
            execution_id="ex-abc123",
            progress=progress.append,
            sleep=lambda s: time.sleep(min(s, 0.01)),
            log=SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None),
        )
        with pytest.raises(MigrationFailed) as failed:
            run_migrations(ctx, environment="demo01", version=None)
        stub.assert_no_pending_responses()
    message = str(failed.value)
    assert f"demo01-migrations:7, task {task_id}): exit code 3" in message
    assert "Essential container in task exited; exit status 3" in message
    tail = failed.value.tail.splitlines()
    assert len(tail) == 30 and tail[-1] == "ERROR: relation users exists"
    assert "hunter22" not in failed.value.tail and "DATABASE_PASSWORD=****" in failed.value.tail
    assert progress == ["demo01-migrations:7 on demo01: RUNNING (0 s)"]


def test_with_tag() -> None:
    assert with_tag("app:1", "2") == "app:2"
    assert with_tag("registry:5000/team/app", "2") == "registry:5000/team/app:2"
    assert with_tag("app@sha256:abc", "2") == "app:2"
