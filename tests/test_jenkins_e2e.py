"""End to end: ``marvin serve`` (a subprocess on Socket Mode against the fake Slack) and
``marvin run``, with the shipped commands and policy, against the fake Jenkins, moto in server
mode (auto-scaling, ECS, CloudWatch Logs) and the ECS exit proxy for a failing migration."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from tests.fakes import aws
from tests.fakes.agents import AgentSync
from tests.fakes.ecs_exit import EcsExitProxy
from tests.fakes.jenkins import FakeJenkins, choice, string
from tests.fakes.slack import FakeSlack
from tests.serving import ROOT, Serve, marvin_yaml

moto_server = aws.moto_server
pytestmark = pytest.mark.timeout(90)
ALICE, TOKEN, GROUP = "U0ALICE", "jenkins-token-e2e-42", "jenkins-agents"
LOGS = {"awslogs-group": "/ecs/migrations", "awslogs-stream-prefix": "mig"}
PARAMS = [string("VERSION"), choice("TARGET", ["dev", "qa"])]


def write_config(root: Path) -> Path:
    return marvin_yaml(
        root,
        directory="users:\n  alice@example.com: {groups: [ops]}\n",
        jenkins={
            "url": "${JENKINS_URL}",
            "user": "${JENKINS_USER}",
            "api_token": "${JENKINS_API_TOKEN}",
            "jobs": ["deploy-*"],
            "poll_seconds": 0.2,
            "workers_group": GROUP,
            "workers_nodes": "agent-*",
            "workers_timeout": 30,
        },
        migrations={"subnets": ["subnet-1"], "security_groups": ["sg-1"], "poll_seconds": 0.1},
    )


@pytest.fixture(scope="module")
def world(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    urllib.request.urlopen(f"{moto_server}/moto-api/reset", data=b"").read()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**aws.ENV, "AWS_ENDPOINT_URL": moto_server}.items():
            mp.setenv(key, value)
        make_aws()
        proxy_args = dict(container="migrations", group=LOGS["awslogs-group"], prefix="mig")
        with (
            FakeJenkins.start(user="marvin", token=TOKEN) as jenkins,
            EcsExitProxy.start(moto_server, **proxy_args) as proxy,
            AgentSync(jenkins, boto3.client("autoscaling"), GROUP),
            FakeSlack.start() as slack,
        ):
            slack.add_user(ALICE, email="alice@example.com")
            root = tmp_path_factory.mktemp("jenkins-e2e")
            env = {
                **aws.ENV,
                "AWS_ENDPOINT_URL": moto_server,
                "AWS_ENDPOINT_URL_ECS": proxy.url,
                "JENKINS_URL": jenkins.url,
                "JENKINS_USER": "marvin",
                "JENKINS_API_TOKEN": TOKEN,
            }
            config = write_config(root)
            serve = Serve(slack, config, env=env)
            try:
                slack.wait_connected(timeout=20)
            except TimeoutError:
                serve.stop()
                raise AssertionError(serve.output()) from None
            yield SimpleNamespace(
                jenkins=jenkins, proxy=proxy, slack=slack, serve=serve, config=config, env=env
            )
            assert serve.stop() == 0, serve.output()[-3000:]
            assert TOKEN not in serve.output()  # the API token never reaches a log line


def make_aws() -> None:
    asg = boto3.client("autoscaling")
    asg.create_launch_configuration(
        LaunchConfigurationName="agents", ImageId="ami-12c6146b", InstanceType="t3.small"
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchConfigurationName="agents",
        MinSize=1,
        MaxSize=4,
        DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
    )
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="demo01")
    ecs.register_task_definition(
        family="demo01-migrations",
        containerDefinitions=[
            {
                "name": "migrations",
                "image": "app:4.2",
                "memory": 256,
                "logConfiguration": {"logDriver": "awslogs", "options": LOGS},
            }
        ],
    )


def say(
    world: SimpleNamespace, text: str, done: str, timeout: float = 30, anywhere: bool = False
) -> list[str]:
    """Mention Marvin with ``text``; every text posted or updated in its thread (``anywhere``:
    in any thread, e.g. a cancelled command's) once one matches ``done``."""
    slack, n = world.slack, len(world.slack.calls)
    event = slack.app_mention(text, user=ALICE)
    slack.send_event(event)

    def texts() -> list[str]:
        return [
            str(c.args.get("text", ""))
            for c in slack.calls[n:]
            if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral")
            and (
                anywhere
                or c.args.get("thread_ts") in (event["ts"], None)
                or c.method == "chat.update"
            )
        ]

    deadline = time.monotonic() + timeout
    while not any(re.search(done, t) for t in texts()):
        assert time.monotonic() < deadline, (texts(), world.serve.output()[-2000:])
        time.sleep(0.05)
    return texts()


def execution_id(texts: list[str]) -> str:
    return next(m.group(0) for t in texts for m in [re.search(r"ex-[0-9a-f]{6}", t)] if m)


def test_build_succeeds_with_progress(world) -> None:  # noqa: ANN001
    world.jenkins.add_job("deploy-app", PARAMS, duration=2.5, estimated=120)
    out = say(world, "run jenkins job deploy-app VERSION=1.2 TARGET=qa", r"#1 succeeded")
    assert any("deploy-app #1: running for" in t and "of about 2 min 00 s" in t for t in out), out
    assert world.jenkins.builds[("deploy-app", 1)].params == {"VERSION": "1.2", "TARGET": "qa"}


def test_failed_build_shows_console_tail(world) -> None:  # noqa: ANN001
    world.jenkins.add_job(
        "deploy-broken", duration=0.1, result="FAILURE", console=[f"token={TOKEN}", "it broke"]
    )
    out = say(world, "run jenkins job deploy-broken", r"failed \(`ex-")
    tail = next(t for t in out if "Last lines of the console" in t)
    assert "it broke" in tail and "Finished: FAILURE" in tail and TOKEN not in tail
    assert any("deploy-broken #1 ended FAILURE" in t for t in out)


def test_parameter_error_queues_nothing(world) -> None:  # noqa: ANN001
    world.jenkins.add_job("deploy-params", PARAMS)
    out = say(world, "run jenkins job deploy-params VERSIO=1", r"failed \(`ex-")
    assert any("has no parameter VERSIO. Its parameters: VERSION (required)" in t for t in out)
    assert not world.jenkins.posts("/job/deploy-params/")


def test_cancel_while_queued_and_while_running(world) -> None:  # noqa: ANN001
    fake = world.jenkins
    fake.add_job("deploy-wait", duration=None)
    for node in fake.nodes.values():
        node.temporarily_offline = node.name.startswith("agent-")  # nowhere to run
    queued = say(world, "run jenkins job deploy-wait", r"queued for")
    ex = execution_id(queued)
    say(world, f"cancel {ex}", rf"Cancelled `{ex}`", anywhere=True)
    item = next(i for i in fake.queue.values() if i.job == "deploy-wait")
    assert item.cancelled and item.build is None
    for node in fake.nodes.values():
        node.temporarily_offline = False
    running = say(world, "run jenkins job deploy-wait", r"deploy-wait #1: running for")
    ex = execution_id(running)
    out = say(world, f"cancel {ex}", rf"Cancelled `{ex}`", anywhere=True)
    assert any("deploy-wait #1: stopped in Jenkins" in t for t in out), out
    deadline = time.monotonic() + 5
    while fake.builds[("deploy-wait", 1)].result != "ABORTED":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_scale_within_and_outside_bounds(world) -> None:  # noqa: ANN001
    out = say(world, "scale jenkins workers to 3", r"scaled from 2 to 3|failed")
    assert any("scaled from 2 to 3; 3 agents online" in t for t in out), out
    out = say(world, "scale jenkins workers to 9", r"failed")
    assert any("9 is outside jenkins-agents's bounds (1 to 4); nothing changed" in t for t in out)
    out = say(world, "scale jenkins workers to 1", r"scaled from 3 to 1|failed")
    assert any("scaled from 3 to 1; 1 agents online" in t for t in out), out
    out = say(world, "show jenkins workers", r"Jenkins agents online")
    assert any("1 Jenkins agents online (0 busy)" in t for t in out), out


def test_migration_succeeds_then_fails_with_log_tail(world) -> None:  # noqa: ANN001
    out = say(world, "run migrations on demo01 at version 4.3", r"succeeded|failed \(")
    assert any("Migrations on demo01 succeeded (demo01-migrations:2" in t for t in out), out
    world.proxy.exit_code = 5
    world.proxy.log_lines = ["applying 0042_users", "PGPASSWORD=hunter22", "ERROR: duplicate"]
    try:
        out = say(world, "run migrations on demo01", r"failed \(`ex-")
    finally:
        world.proxy.exit_code = None
    assert any("exit code 5: Essential container in task exited" in t for t in out), out
    tail = next(t for t in out if "Last lines of the migration log" in t)
    assert "ERROR: duplicate" in tail and "hunter22" not in tail


def marvin_run(world, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    argv = [sys.executable, "-m", "marvin", "--config", str(world.config), "run", *args]
    argv += ["--as", "alice@example.com"]
    env = {**os.environ, **world.env, "PYTHONPATH": str(ROOT)}
    env["MARVIN_STATE"] = str(world.config.parent / "cli.sqlite3")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_marvin_run(world) -> None:  # noqa: ANN001
    world.jenkins.add_job("deploy-cli", PARAMS, duration=0.3)
    ok = marvin_run(world, "jenkins.build", "job=deploy-cli", "VERSION=7")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "deploy-cli #1 succeeded" in ok.stdout
    bad = marvin_run(world, "jenkins.build", "job=deploy-cli", "TARGET=prod")
    assert bad.returncode == 1 and "TARGET=prod is not one of dev, qa" in bad.stdout
    scale = marvin_run(world, "jenkins.scale", "count=0")
    assert scale.returncode == 1 and "outside jenkins-agents's bounds" in scale.stdout
    world.proxy.exit_code, world.proxy.log_lines = 2, ["boom from the migration"]
    try:
        failed = marvin_run(world, "migrations.run", "environment=demo01")
    finally:
        world.proxy.exit_code = None
    assert failed.returncode == 1 and "boom from the migration" in failed.stdout
    done = marvin_run(world, "migrations.run", "environment=demo01", "version=4.4")
    assert done.returncode == 0 and "Migrations on demo01 succeeded" in done.stdout
