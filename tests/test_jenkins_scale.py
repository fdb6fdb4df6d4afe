"""jenkins.scale and jenkins.status: moto (server mode) for the auto-scaling group, the fake
Jenkins for the agents, and botocore's Stubber for what moto does not do (AWS refusing a
capacity outside the group's bounds)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import boto3
import jenkins as python_jenkins
import pytest
from botocore.stub import Stubber

import commands.jenkins
from marvin.actions import ActionError
from marvin.actions.jenkins_workers import scale_workers
from marvin.config import DEFAULT_CONFIG, load_config
from tests.fakes import aws
from tests.fakes.agents import AgentSync
from tests.fakes.jenkins import FakeJenkins

moto_server = aws.moto_server
pytestmark = pytest.mark.timeout(60)
GROUP, TOKEN = "jenkins-agents", "tok-5678-abcd"


def make_group(desired: int = 2) -> None:
    image = "ami-12c6146b"  # one of moto's built-in images (listing them all takes seconds)
    asg = boto3.client("autoscaling")
    asg.create_launch_configuration(
        LaunchConfigurationName="agents", ImageId=image, InstanceType="t3.small"
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchConfigurationName="agents",
        MinSize=1,
        MaxSize=4,
        DesiredCapacity=desired,
        AvailabilityZones=["us-east-1a"],
    )


def config(tmp_path: Path, fake: FakeJenkins):  # noqa: ANN201
    env = {
        "MARVIN_STATE": str(tmp_path / "state.sqlite3"),
        "JENKINS_URL": fake.url,
        "JENKINS_USER": "marvin",
        "JENKINS_API_TOKEN": TOKEN,
        "JENKINS_WORKERS_ASG": GROUP,
    }
    cfg = load_config(DEFAULT_CONFIG, env=env)
    cfg.data["jenkins"].update(poll_seconds=0.1, workers_nodes="agent-*", workers_timeout=20)
    return cfg


@pytest.fixture(scope="module")
def world(moto_server: str) -> Iterator[SimpleNamespace]:
    """One group and one Jenkins for the module (moto's first EC2 call costs seconds)."""
    urllib.request.urlopen(f"{moto_server}/moto-api/reset", data=b"").read()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws.ENV.items():
            mp.setenv(key, value)
        mp.setenv("AWS_ENDPOINT_URL", moto_server)
        make_group()
        with FakeJenkins.start(user="marvin", token=TOKEN) as fake:
            with AgentSync(fake, boto3.client("autoscaling"), GROUP) as sync:
                yield SimpleNamespace(jenkins=fake, sync=sync)


@pytest.fixture
def estate(world, tmp_path, marvin_bot) -> SimpleNamespace:  # noqa: ANN001
    """Each test starts from 2 idle agents online."""
    fake = world.jenkins
    with fake.lock:
        for build in fake.builds.values():
            if build.result is None:
                fake._end(build, "ABORTED")
        for node in fake.nodes.values():
            node.temporarily_offline = False
    boto3.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=GROUP, DesiredCapacity=2, HonorCooldown=False
    )
    world.sync.boot = 0.0
    deadline = time.monotonic() + 10
    while len(online(fake)) != 2:
        assert time.monotonic() < deadline, online(fake)
        time.sleep(0.02)
    cfg = config(tmp_path, fake)
    bot = marvin_bot(commands.jenkins, user="ops@example.com", config=cfg)
    return SimpleNamespace(jenkins=fake, sync=world.sync, bot=bot, config=cfg)


def desired() -> int:
    asg = boto3.client("autoscaling")
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0][
        "DesiredCapacity"
    ]


def online(fake: FakeJenkins) -> list[str]:
    return [n.name for n in fake.nodes.values() if n.name.startswith("agent-") and not n.offline]


def test_scale_up_waits_until_agents_are_online(estate) -> None:  # noqa: ANN001
    estate.sync.boot = 0.6  # agents take a moment to connect, so progress is seen
    r = estate.bot.send("scale jenkins workers to 4", timeout=30)
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert f"{GROUP} scaled from 2 to 4; 4 agents online." in r.said[-1]
    assert desired() == 4 and len(online(estate.jenkins)) == 4
    assert any("of 4 Jenkins agents online" in p for p in r.progress), r.progress
    status = estate.bot.send("show jenkins workers")
    assert "4 Jenkins agents online (0 busy), 0 offline." in status.said[-1]
    assert f"Group {GROUP}: desired 4 (min 1, max 4)." in status.said[-1]


@pytest.mark.parametrize("count", [0, 5])
def test_outside_the_bounds_changes_nothing(estate, count: int) -> None:  # noqa: ANN001
    r = estate.bot.send(f"scale jenkins workers to {count}")
    assert r.reactions == ["accepted", "failed"]
    assert f"{count} is outside {GROUP}'s bounds (1 to 4); nothing changed" in r.said[-1]
    assert desired() == 2


def test_scale_down_never_kills_a_busy_agent(estate) -> None:  # noqa: ANN001
    fake = estate.jenkins
    fake.add_job("long", duration=1.5)
    before = len(fake.builds)
    client = python_jenkins.Jenkins(fake.url, "marvin", TOKEN, timeout=5)
    estate.bot.send("scale jenkins workers to 3", timeout=30)
    for _ in range(2):  # two of the three agents busy
        client.build_job("long")
    deadline = time.monotonic() + 5
    while len([b for b in fake.builds.values() if b.result is None]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    busy = {b.node for b in fake.builds.values() if b.result is None}
    r = estate.bot.send("scale jenkins workers to 1", timeout=30)
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert any("waiting for 1 busy agent(s) to finish their builds" in p for p in r.progress)
    assert [b.result for b in list(fake.builds.values())[before:]] == ["SUCCESS"] * 2
    assert desired() == 1 and len(online(fake)) == 1 and online(fake)[0] in busy


def test_cancel_while_draining_brings_the_agent_back(estate) -> None:  # noqa: ANN001
    fake = estate.jenkins
    fake.add_job("forever", duration=None)
    client = python_jenkins.Jenkins(fake.url, "marvin", TOKEN, timeout=5)
    for _ in range(2):  # both agents busy: one of them must be drained
        client.build_job("forever")
    deadline = time.monotonic() + 5
    while len([b for b in fake.builds.values() if b.result is None]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = estate.bot.send("scale jenkins workers to 1", wait=False)
    while not any("busy agent" in p for p in r.progress):
        assert time.monotonic() < deadline + 10, r.progress
        time.sleep(0.02)
    drained = [n for n in fake.nodes.values() if n.temporarily_offline]
    estate.bot.send(f"cancel {r.execution_id}")
    estate.bot.app.wait(r.execution_id, 10)
    assert estate.bot.app.store.get(r.execution_id)["state"] == "cancelled"
    assert len(drained) == 1 and not drained[0].temporarily_offline
    assert desired() == 2
    assert len([b for b in fake.builds.values() if b.result is None]) == 2  # untouched


def test_aws_refusing_the_capacity_is_reported(tmp_path) -> None:  # noqa: ANN001
    asg = boto3.client(
        "autoscaling", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    group = {
        "AutoScalingGroupName": GROUP,
        "MinSize": 1,
        "MaxSize": 4,
        "DesiredCapacity": 2,
        "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"],
        "HealthCheckType": "EC2",
        "CreatedTime": "2026-01-01T00:00:00Z",
        "Instances": [],
    }
    with FakeJenkins.start(user="marvin", token=TOKEN) as fake, Stubber(asg) as stub:
        stub.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [group]})
        stub.add_client_error(
            "set_desired_capacity",
            "ValidationError",
            "New SetDesiredCapacity value 3 is above max value 2 for the AutoScalingGroup.",
        )
        services = SimpleNamespace(
            config=config(tmp_path, fake),
            autoscaling=asg,
            jenkins=python_jenkins.Jenkins(fake.url, "marvin", TOKEN, timeout=5),
        )
        ctx = SimpleNamespace(services=services, progress=lambda t: None, sleep=time.sleep)
        with pytest.raises(ActionError, match="AWS refused to scale jenkins-agents: New Set"):
            scale_workers(ctx, 3)
        stub.assert_no_pending_responses()
