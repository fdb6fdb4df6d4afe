"""Planners of asg.scale (moto server) and of the Consul writes (loopback Consul fake with
py-consul): what the plan shows, that it changes nothing, and apply's compare-and-set."""

from __future__ import annotations

import time

import pytest

import commands.asg
import commands.config
import commands.feature
import commands.maintenance
from marvin.testing import Bot, Replies
from tests import ops_world as world
from tests.fakes import aws
from tests.fakes.consul import FakeConsul, fake_consul  # noqa: F401 (fixture)
from tests.test_ops_scale_restart import fast_config

moto_server = aws.moto_server
aws_env = aws.aws_env
pytestmark = pytest.mark.timeout(60)


def run(bot: Bot, text: str) -> tuple[Replies, dict]:
    """Send ``text`` (``plan ...`` or ``apply ...``), wait for the execution it started."""
    before = {r["id"] for r in bot.app.store.recent(None, 50)}
    replies = bot.send(text)
    deadline = time.monotonic() + 20
    while True:
        new = [r for r in bot.app.store.recent(None, 50) if r["id"] not in before]
        if new:
            bot.app.wait(new[0]["id"], 20)
            row = bot.app.store.get(new[0]["id"])
            if row["state"] not in ("queued", "running"):
                break
        assert time.monotonic() < deadline, replies.text
        time.sleep(0.02)
    deadline = time.monotonic() + 5
    while row["state"] == "succeeded" and "(`" + row["id"] not in replies.text:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return replies, row


def test_scale_plan_shows_capacity_and_bounds_then_applies(marvin_bot, aws_env, tmp_path):  # type: ignore[no-untyped-def]
    bot = marvin_bot(commands.asg, user="alice@example.com", config=fast_config(tmp_path))
    world.make_group("web-demo01", "demo01", min_size=1, max_size=4, desired=1)
    r, plan = run(bot, "plan scale group web-demo01 in demo01 to 3")
    assert "web-demo01: desired capacity 1 → 3 (min 1, max 4" in r.text
    assert "launch 2 instance(s)" in r.text
    assert world.group("web-demo01")["DesiredCapacity"] == 1  # nothing changed
    r, applied = run(bot, f"apply {plan['id']}")
    assert applied["state"] == "succeeded", r.text
    assert world.group("web-demo01")["DesiredCapacity"] == 3

    r, outside = run(bot, "plan scale group web-demo01 in demo01 to 9")
    assert "outside web-demo01's bounds" in r.text and "nothing would change" in r.text
    world.make_group("api-prod", "prod")
    r, _ = run(bot, "plan scale group api-prod in demo01 to 2")
    assert "would be refused" in r.text and "tagged environment=prod" in r.text


def test_scale_apply_refused_when_capacity_changed_since(marvin_bot, aws_env, tmp_path):  # type: ignore[no-untyped-def]
    bot = marvin_bot(commands.asg, user="alice@example.com", config=fast_config(tmp_path))
    world.make_group("web-demo02", "demo02", min_size=1, max_size=4, desired=1)
    _, plan = run(bot, "plan scale group web-demo02 in demo02 to 2")
    import boto3

    boto3.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName="web-demo02", DesiredCapacity=4
    )
    r, applied = run(bot, f"apply {plan['id']}")
    assert applied["state"] == "failed" and "The state changed since" in r.text
    assert "desired capacity 4 → 2" in r.text  # the new plan
    assert world.group("web-demo02")["DesiredCapacity"] == 4


@pytest.fixture
def consul_bot(marvin_bot, fake_consul: FakeConsul) -> Bot:  # noqa: F811
    return marvin_bot(
        commands.config, commands.feature, commands.maintenance, user="alice@example.com"
    )


def test_config_plan_old_to_new_with_secrets_redacted(consul_bot, fake_consul) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    fake_consul.put("demo01/config/app/timeout", "10")
    fake_consul.put("demo01/config/db/password", "hunter2")
    r, plan = run(consul_bot, "plan set config app/timeout to 30 in demo01")
    assert "`app/timeout`: `10` → `30`" in r.text
    assert fake_consul.get("demo01/config/app/timeout") == b"10"
    r, secret = run(consul_bot, "plan set config db/password to swordfish in demo01")
    assert "(secret, set, 7 bytes) → (secret, set, 9 bytes)" in r.text
    assert "hunter2" not in r.text and "swordfish" not in r.text
    audit = str(consul_bot.app.store.audit_rows(secret["id"]))
    assert "swordfish" not in audit and "hunter2" not in audit
    r, applied = run(consul_bot, f"apply {plan['id']}")
    assert applied["state"] == "succeeded" and fake_consul.get("demo01/config/app/timeout") == b"30"

    _, stale = run(consul_bot, "plan set config app/timeout to 60 in demo01")
    fake_consul.put("demo01/config/app/timeout", "45")  # someone else wrote it meanwhile
    r, refused = run(consul_bot, f"apply {stale['id']}")
    assert refused["state"] == "failed" and "`45` → `60`" in r.text
    assert fake_consul.get("demo01/config/app/timeout") == b"45"  # compare-and-set held


def test_feature_and_maintenance_plans(consul_bot, fake_consul) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    fake_consul.put("demo01/features/new-checkout", "false")
    r, plan = run(consul_bot, "plan enable feature new-checkout on demo01")
    assert "Feature `new-checkout` on demo01: off → on" in r.text
    assert fake_consul.get("demo01/features/new-checkout") == b"false"
    r, _ = run(consul_bot, "plan disable feature new-checkout on demo01")
    assert "already off" in r.text
    r, _ = run(consul_bot, "plan enable feature nope on demo01")
    assert "no feature flag `nope`" in r.text
    r, m = run(consul_bot, "plan enable maintenance mode on demo01 for 30 minutes because upgrade")
    assert "Now: Maintenance mode on demo01 is *off*" in r.text
    assert "would be *on*" in r.text and "because upgrade" in r.text
    assert fake_consul.get("demo01/maintenance") is None
    r, applied = run(consul_bot, f"apply {m['id']}")
    assert applied["state"] == "succeeded" and fake_consul.get("demo01/maintenance") is not None
    r, off = run(consul_bot, "plan disable maintenance mode on demo01")
    assert "After: off." in r.text


def test_restart_plan_lists_the_tasks_to_be_replaced(marvin_bot, aws_env, tmp_path):  # type: ignore[no-untyped-def]
    import boto3

    import commands.service

    bot = marvin_bot(commands.service, user="alice@example.com", config=fast_config(tmp_path))
    world.make_service("demo01", "api", desired=2)
    client = boto3.client("ecs")
    # moto's services start no tasks; start two as ECS would have (list_tasks finds them).
    client.run_task(
        cluster="demo01",
        taskDefinition="api",
        count=2,
        startedBy="ecs-svc/1",
        launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
    )
    tasks = client.list_tasks(cluster="demo01", serviceName="api")["taskArns"]
    assert len(tasks) == 2
    before = client.describe_services(cluster="demo01", services=["api"])["services"][0]
    r, plan = run(bot, "plan restart service api on demo01")
    assert "would replace 2 running task(s)" in r.text and "2 wanted" in r.text
    assert all(arn.rsplit("/", 1)[-1] in r.text for arn in tasks)
    after = client.describe_services(cluster="demo01", services=["api"])["services"][0]
    assert after["deployments"] == before["deployments"]  # no deployment was started
    r, _ = run(bot, "plan restart service nope on demo01")
    assert "no ECS service nope" in r.text
