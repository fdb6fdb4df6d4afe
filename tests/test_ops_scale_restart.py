"""asg.scale and service.restart: API calls against moto (server mode) through the real
pipeline; the waiting logic (instances launching, rollouts) with botocore's Stubber where
moto cannot model it."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import boto3
import pytest
import structlog
from botocore.stub import ANY, Stubber

import commands.asg
import commands.service
from marvin.actions import ActionError
from marvin.actions.asg import scale_group
from marvin.actions.ecs_service import restart_service
from marvin.config import DEFAULT_CONFIG, load_config
from tests import ops_world as world
from tests.fakes import aws
from tests.fakes.ecs_scheduler import CIRCUIT_BREAKER, EcsScheduler

moto_server = aws.moto_server
aws_env = aws.aws_env
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def fast_config(tmp_path):  # noqa: ANN001, ANN201
    cfg = load_config(
        DEFAULT_CONFIG, env={**os.environ, "MARVIN_STATE": str(tmp_path / "s.sqlite3")}
    )
    for section, values in world.FAST.items():
        cfg.data.setdefault(section, {}).update(values)
    return cfg


@pytest.fixture
def bot(marvin_bot, aws_env, tmp_path):  # noqa: ANN001, ANN201
    return marvin_bot(
        commands.asg, commands.service, user="alice@example.com", config=fast_config(tmp_path)
    )


# -- asg.scale against moto ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_scale_within_bounds_waits_for_healthy_instances(bot) -> None:  # noqa: ANN001
    world.make_group("web-demo01", "demo01", min_size=1, max_size=4, desired=1)
    r = bot.send("scale group web-demo01 in demo01 to 3")
    assert r.said[0] == "Scaling web-demo01 in demo01 to 3"
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert "web-demo01 is at 3 instances, all InService and healthy (was 1)" in r.said[-1]
    grp = world.group("web-demo01")
    assert grp["DesiredCapacity"] == 3
    assert [i["LifecycleState"] for i in grp["Instances"]] == ["InService"] * 3


@pytest.mark.timeout(60)
def test_scale_outside_bounds_changes_nothing(bot) -> None:  # noqa: ANN001
    world.make_group("web-demo01", "demo01", min_size=1, max_size=4, desired=2)
    r = bot.send("scale group web-demo01 in demo01 to 5")
    assert r.reactions[-1] == "failed"
    assert "5 is outside web-demo01's bounds (1 to 4); nothing changed" in r.said[-1]
    r0 = bot.send("scale group web-demo01 in demo01 to 0")
    assert "0 is outside web-demo01's bounds (1 to 4)" in r0.said[-1]
    assert world.group("web-demo01")["DesiredCapacity"] == 2


@pytest.mark.timeout(60)
def test_scale_refuses_a_group_of_another_environment_and_audits_it(bot) -> None:  # noqa: ANN001
    world.make_group("web-prod", "prod", min_size=1, max_size=10, desired=4)
    world.make_group("web-loose", None, desired=1, managed=False)
    r = bot.send("scale group web-prod in demo01 to 1")
    assert r.reactions[-1] == "failed"
    assert "was not run (`ex-" in r.said[-1]
    audit = bot.app.store.audit_rows(r.execution_id)
    assert audit[-1]["event"] == "refused" and "environment=prod, not demo01" in audit[-1]["detail"]
    assert "group web-prod is tagged environment=prod, not demo01; nothing changed" in r.said[-1]
    unmanaged = bot.send("scale group web-loose in demo01 to 2")
    assert "is not managed by Marvin (no tag marvin:managed=true)" in unmanaged.said[-1]
    missing = bot.send("scale group nope in demo01 to 2")
    assert "there is no auto scaling group named nope" in missing.said[-1]
    assert world.group("web-prod")["DesiredCapacity"] == 4
    assert world.group("web-loose")["DesiredCapacity"] == 1


def undo(bot, ex_id: str):  # noqa: ANN001, ANN201
    """``undo <id>`` starts a new execution of asg.scale; its replies come to the same thread."""
    replies = bot.send(f"undo {ex_id}")
    if (replies.said or replies.whispered) and not replies.reactions:
        return replies  # answered at once: nothing was started
    deadline = time.monotonic() + 20
    while not replies.reactions or replies.reactions[-1] == "accepted":
        assert time.monotonic() < deadline, replies
        time.sleep(0.02)
    return replies


@pytest.mark.timeout(60)
def test_undo_puts_the_capacity_back_only_if_nobody_changed_it(bot) -> None:  # noqa: ANN001
    world.make_group("web-demo01", "demo01", min_size=1, max_size=4, desired=1)
    up = bot.send("scale group web-demo01 in demo01 to 3")
    assert f"To put it back: `undo {up.execution_id}`" in up.said[-1]
    back = undo(bot, up.execution_id)
    assert back.reactions[-1] == "succeeded", back.text
    assert f"Undid `{up.execution_id}`: web-demo01 is back at 1 instances" in back.said[-1]
    assert world.group("web-demo01")["DesiredCapacity"] == 1
    twice = undo(bot, up.execution_id)
    assert "was already undone" in twice.text
    assert world.group("web-demo01")["DesiredCapacity"] == 1

    again = bot.send("scale group web-demo01 in demo01 to 2")
    boto3.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName="web-demo01", DesiredCapacity=4
    )  # a scaling policy (or a person) moved it since
    refused = undo(bot, again.execution_id)
    assert "web-demo01 wants 4 instances now, not 2" in refused.text
    assert world.group("web-demo01")["DesiredCapacity"] == 4


# -- asg waiting logic with the Stubber -----------------------------------------------------


def stub_ctx(cfg, **clients):  # noqa: ANN001, ANN003, ANN201
    progress: list[str] = []
    ctx = SimpleNamespace(
        services=SimpleNamespace(config=cfg, **clients),
        log=structlog.get_logger("test"),
        progress=progress.append,
        sleep=lambda s: None,
        execution_id="ex-stub01",
    )
    return ctx, progress


def asg_group(instances: list[tuple[str, str]], desired: int = 1) -> dict:
    return {
        "AutoScalingGroups": [
            {
                "AutoScalingGroupName": "web-demo01",
                "MinSize": 1,
                "MaxSize": 5,
                "DesiredCapacity": desired,
                "DefaultCooldown": 300,
                "AvailabilityZones": ["us-east-1a"],
                "HealthCheckType": "EC2",
                "CreatedTime": T0,
                "Tags": [
                    {"Key": "marvin:managed", "Value": "true"},
                    {"Key": "environment", "Value": "demo01"},
                ],
                "Instances": [
                    {
                        "InstanceId": f"i-{n:04d}",
                        "AvailabilityZone": "us-east-1a",
                        "LifecycleState": state,
                        "HealthStatus": health,
                        "ProtectedFromScaleIn": False,
                    }
                    for n, (state, health) in enumerate(instances)
                ],
            }
        ]
    }


def activity(ident: str, code: str, message: str = "") -> dict:
    return {
        "ActivityId": ident,
        "AutoScalingGroupName": "web-demo01",
        "Cause": "a user request",
        "StartTime": T0,
        "StatusCode": code,
        "StatusMessage": message,
    }


def test_scale_progress_until_instances_are_in_service(tmp_path) -> None:  # noqa: ANN001
    client = boto3.client("autoscaling", region_name="us-east-1")
    old_failure = activity("a-old", "Failed", "an old failure that is not ours")
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", asg_group([("InService", "Healthy")]))
        stub.add_response("describe_scaling_activities", {"Activities": [old_failure]})
        stub.add_response(
            "set_desired_capacity",
            {},
            {"AutoScalingGroupName": "web-demo01", "DesiredCapacity": 3, "HonorCooldown": False},
        )
        pending = [("InService", "Healthy"), ("Pending", "Healthy"), ("Pending:Wait", "Healthy")]
        stub.add_response("describe_auto_scaling_groups", asg_group(pending, 3))
        stub.add_response("describe_scaling_activities", {"Activities": [old_failure]})
        sick = [("InService", "Healthy"), ("InService", "Unhealthy"), ("InService", "Healthy")]
        stub.add_response("describe_auto_scaling_groups", asg_group(sick, 3))
        stub.add_response("describe_scaling_activities", {"Activities": [old_failure]})
        stub.add_response(
            "describe_auto_scaling_groups", asg_group([("InService", "Healthy")] * 3, 3)
        )
        ctx, progress = stub_ctx(fast_config(tmp_path), autoscaling=client)
        done = scale_group(ctx, group="web-demo01", environment="demo01", count=3)
        stub.assert_no_pending_responses()
    assert (done.previous, done.desired, done.healthy) == (1, 3, 3)
    assert progress == [
        "web-demo01: 1 of 3 InService and healthy (2 Pending)",
        "web-demo01: 2 of 3 InService and healthy",
    ]


def test_scale_reports_a_failed_launch(tmp_path) -> None:  # noqa: ANN001
    client = boto3.client("autoscaling", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("describe_auto_scaling_groups", asg_group([("InService", "Healthy")]))
        stub.add_response("describe_scaling_activities", {"Activities": []})
        stub.add_response(
            "set_desired_capacity",
            {},
            {"AutoScalingGroupName": ANY, "DesiredCapacity": 2, "HonorCooldown": False},
        )
        stub.add_response("describe_auto_scaling_groups", asg_group([("InService", "Healthy")], 2))
        no_capacity = "We currently do not have sufficient t3.micro capacity in us-east-1a."
        stub.add_response(
            "describe_scaling_activities",
            {"Activities": [activity("a-new", "Failed", no_capacity)]},
        )
        ctx, _ = stub_ctx(fast_config(tmp_path), autoscaling=client)
        with pytest.raises(ActionError, match="scaling activity failed: We currently do not"):
            scale_group(ctx, group="web-demo01", environment="demo01", count=2)


# -- service.restart: moto for the calls, the scheduler emulator for the rollout ----------


@pytest.mark.timeout(60)
def test_restart_follows_the_rollout_to_completed(bot) -> None:  # noqa: ANN001
    with EcsScheduler(tick=0.05) as ecs:
        world.make_service("demo01", "api", desired=3)
        ecs.settle()
        r = bot.send("restart service api on demo01")
        assert r.reactions == ["accepted", "succeeded"], r.text
        assert "api on demo01 restarted: deployment ecs-svc/" in r.said[-1]
        assert "3 of 3 tasks running" in r.said[-1]
        assert [x[2] for x in ecs.rollouts] == ["COMPLETED"]
        assert ecs.rollouts[0][1] in r.said[-1]
        assert any("IN_PROGRESS, " in p and "new tasks running" in p for p in r.progress)


@pytest.mark.timeout(60)
def test_restart_reports_a_failed_rollout_with_its_reason(bot) -> None:  # noqa: ANN001
    with EcsScheduler(tick=0.05) as ecs:
        world.make_service("demo01", "api", desired=2)
        ecs.settle()
        ecs.fail["api"] = 3
        r = bot.send("restart service api on demo01")
        assert r.reactions[-1] == "failed"
        assert f"FAILED: {CIRCUIT_BREAKER}" in r.said[-1]
        assert "deployment failed: tasks failed to start" in r.said[-1]  # the last event
        missing = bot.send("restart service nope on demo01")
        assert "there is no ECS service nope in cluster demo01" in missing.said[-1]


# -- rollout logic with the Stubber ---------------------------------------------------------


def deployment(ident: str, status: str, running: int, desired: int = 3, **extra) -> dict:  # noqa: ANN003
    return {
        "id": ident,
        "status": status,
        "runningCount": running,
        "desiredCount": desired,
        **extra,
    }


def service(*deps: dict, events: list[str] = ()) -> dict:  # type: ignore[assignment]
    return {
        "serviceName": "api",
        "deployments": list(deps),
        "events": [{"id": str(i), "createdAt": T0, "message": m} for i, m in enumerate(events)],
    }


def run_restart(tmp_path, responses: list[dict]):  # noqa: ANN001, ANN201
    client = boto3.client("ecs", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "update_service",
            {"service": responses[0]},
            {"cluster": "demo01", "service": "api", "forceNewDeployment": True},
        )
        for svc in responses[1:]:
            stub.add_response("describe_services", {"services": [svc]})
        ctx, progress = stub_ctx(fast_config(tmp_path), ecs=client)
        try:
            return restart_service(ctx, service="api", environment="demo01"), progress
        finally:
            stub.assert_no_pending_responses()


def test_rollout_progress_then_completed(tmp_path) -> None:  # noqa: ANN001
    new = "ecs-svc/new"
    started = service(
        deployment(new, "PRIMARY", 0, rolloutState="IN_PROGRESS"),
        deployment("ecs-svc/old", "ACTIVE", 3),
    )
    halfway = service(
        deployment(new, "PRIMARY", 2, rolloutState="IN_PROGRESS", pendingCount=1),
        deployment("ecs-svc/old", "ACTIVE", 1),
        events=["(service api) has started 1 tasks: (task 2)."],
    )
    done = service(deployment(new, "PRIMARY", 3, rolloutState="COMPLETED"))
    result, progress = run_restart(tmp_path, [started, started, halfway, done])
    assert (result.deployment, result.running, result.desired) == (new, 3, 3)
    assert progress == [
        "api: IN_PROGRESS, 0 of 3 new tasks running, 3 old still running",
        "api: IN_PROGRESS, 2 of 3 new tasks running, 1 pending, 1 old still running\n"
        "(service api) has started 1 tasks: (task 2).",
    ]


def test_rollout_failed_and_replaced_and_without_rollout_state(tmp_path) -> None:  # noqa: ANN001
    new = "ecs-svc/new"
    start = service(deployment(new, "PRIMARY", 0, rolloutState="IN_PROGRESS"))
    failed = service(
        deployment(new, "PRIMARY", 0, rolloutState="FAILED", failedTasks=3,
                   rolloutStateReason="ECS deployment circuit breaker: tasks failed to start."),
        events=["(service api) was unable to place a task."],
    )  # fmt: skip
    with pytest.raises(ActionError) as err:
        run_restart(tmp_path, [start, failed])
    assert "FAILED: ECS deployment circuit breaker: tasks failed to start." in str(err.value)
    assert "(last event: (service api) was unable to place a task.)" in str(err.value)

    other = service(deployment("ecs-svc/other", "PRIMARY", 0, rolloutState="IN_PROGRESS"))
    with pytest.raises(ActionError, match="was replaced by ecs-svc/other before it finished"):
        run_restart(tmp_path, [start, other])

    # Behind a classic load balancer ECS gives no rolloutState: the only deployment left,
    # at its desired count, is the end.
    plain = service(deployment(new, "PRIMARY", 0), deployment("ecs-svc/old", "ACTIVE", 3))
    draining = service(deployment(new, "PRIMARY", 3), deployment("ecs-svc/old", "ACTIVE", 1))
    alone = service(deployment(new, "PRIMARY", 3))
    result, progress = run_restart(tmp_path, [plain, plain, draining, alone])
    assert result.running == 3 and progress[-1].startswith("api: rolling out, 3 of 3")
