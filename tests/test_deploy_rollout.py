"""The rolling SSM deploy against outcomes moto can't produce (Failed, TimedOut, InProgress),
with botocore's Stubber on real clients: every AWS call is checked against what is expected,
and a call nobody expected (say, a batch after a failed one) fails the test."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from marvin.actions import ActionError
from marvin.actions.deploy import deploy_package
from marvin.config import DEFAULT_CONFIG, load_config
from marvin.runtime.execution import Cancelled

IDS = ["i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c",
       "i-0000000000000000d", "i-0000000000000000e"]  # fmt: skip
C1, C2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


class Ctx:
    """Just what an action uses of the execution context."""

    execution_id = "ex-abc123"

    def __init__(self, ssm: Any, ec2: Any, *, cancel_after_sleeps: int | None = None) -> None:
        config = load_config(DEFAULT_CONFIG, env={"GA_REPO_URL": "https://yum.test/ga/{app}"})
        config.data["deploy"].update(poll_seconds=0.01, batch_size=2)
        self.services = type("S", (), {"config": config, "ssm": ssm, "ec2": ec2})()
        self.progress_lines: list[str] = []
        self.replies: list[str] = []
        self.sleeps = 0
        self.cancel_after = cancel_after_sleeps
        self.cancel_event = threading.Event()

    def progress(self, text: str) -> None:
        self.progress_lines.append(text)

    def reply(self, text: str) -> None:
        self.replies.append(text)

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled(self.execution_id)

    def sleep(self, _seconds: float) -> None:
        self.sleeps += 1
        if self.cancel_after is not None and self.sleeps >= self.cancel_after:
            self.cancel_event.set()
        self.check()


def clients() -> tuple[Any, Stubber, Any, Stubber]:
    kw = dict(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    ssm, ec2 = boto3.client("ssm", **kw), boto3.client("ec2", **kw)
    return ssm, Stubber(ssm), ec2, Stubber(ec2)


def instances(ec2_stub: Stubber, ids: list[str]) -> None:
    ec2_stub.add_response(
        "describe_instances",
        {"Reservations": [{"Instances": [{"InstanceId": i} for i in ids]}]},
        {
            "Filters": [
                {"Name": "tag:Environment", "Values": ["prod"]},
                {"Name": "tag:App", "Values": ["orders-api"]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        },
    )


def send(ssm_stub: Stubber, batch: list[str], command_id: str) -> None:
    ssm_stub.add_response(
        "send_command",
        {"Command": {"CommandId": command_id}},
        {
            "InstanceIds": batch,
            "DocumentName": "AWS-RunShellScript",
            "Parameters": ANY,
            "TimeoutSeconds": 600,
            "Comment": ANY,
        },
    )


def status(ssm_stub: Stubber, command_id: str, instance: str, state: str, out: str = "",
           err: str = "") -> None:  # fmt: skip
    ssm_stub.add_response(
        "get_command_invocation",
        {"Status": state, "StandardOutputContent": out, "StandardErrorContent": err},
        {"CommandId": command_id, "InstanceId": instance},
    )


def test_failed_batch_stops_the_rollout() -> None:
    ssm, ssm_stub, ec2, ec2_stub = clients()
    instances(ec2_stub, IDS)
    send(ssm_stub, IDS[:2], C1)
    status(ssm_stub, C1, IDS[0], "InProgress")
    status(ssm_stub, C1, IDS[1], "Success")
    status(ssm_stub, C1, IDS[0], "Success")  # after one poll
    send(ssm_stub, IDS[2:4], C2)
    status(ssm_stub, C2, IDS[2], "Failed", "Last metadata expiration check",
           "Error: Unable to find a match: orders-api-0:1.4.1-1.el9")  # fmt: skip
    status(ssm_stub, C2, IDS[3], "TimedOut")
    # No third batch: the Stubber would refuse an unexpected send_command.
    ctx = Ctx(ssm, ec2)
    with ssm_stub, ec2_stub, pytest.raises(ActionError) as failed:
        deploy_package(ctx, app="orders-api", version="1.4.1-1.el9", environment="prod")
    ssm_stub.assert_no_pending_responses()
    assert f"batch 2/3 failed on {IDS[2]}, {IDS[3]}" in str(failed.value)
    assert "2 of 5 instance(s) updated, rollout stopped" in str(failed.value)
    (report,) = ctx.replies
    assert f"• {IDS[2]}: Failed" in report and "Unable to find a match" in report
    assert f"• {IDS[3]}: TimedOut" in report
    assert f"Updated: {IDS[0]}, {IDS[1]}. Not touched: {IDS[4]}." in report
    assert ctx.sleeps == 1  # waited once for the InProgress instance
    assert any("batch 1/3 done (2/5)" in p for p in ctx.progress_lines)
    assert not any("batch 3/3" in p for p in ctx.progress_lines)


def test_all_batches_succeed() -> None:
    ssm, ssm_stub, ec2, ec2_stub = clients()
    instances(ec2_stub, IDS[:3])
    send(ssm_stub, IDS[:2], C1)
    ssm_stub.add_client_error("get_command_invocation", "InvocationDoesNotExist")  # too early
    status(ssm_stub, C1, IDS[1], "Success")
    status(ssm_stub, C1, IDS[0], "Success")
    send(ssm_stub, IDS[2:3], C2)
    status(ssm_stub, C2, IDS[2], "Success", "orders-api 0:1.4.1-1.el9 installed")
    ctx = Ctx(ssm, ec2)
    with ssm_stub, ec2_stub:
        done = deploy_package(ctx, app="orders-api", version="1.4.1-1.el9", environment="prod")
    ssm_stub.assert_no_pending_responses()
    assert done == "Deployed orders-api 1.4.1-1.el9 from GA to prod: 3 instance(s) in 2 batch(es)."


def test_cancel_while_waiting_cancels_the_ssm_command() -> None:
    ssm, ssm_stub, ec2, ec2_stub = clients()
    instances(ec2_stub, IDS[:1])
    send(ssm_stub, IDS[:1], C1)
    status(ssm_stub, C1, IDS[0], "InProgress")
    ssm_stub.add_response("cancel_command", {}, {"CommandId": C1})
    ctx = Ctx(ssm, ec2, cancel_after_sleeps=1)
    with ssm_stub, ec2_stub, pytest.raises(Cancelled):
        deploy_package(ctx, app="orders-api", version="1.4.1-1.el9", environment="prod")
    ssm_stub.assert_no_pending_responses()  # cancel_command was sent


def test_ssm_refusing_the_command_is_reported() -> None:
    ssm, ssm_stub, ec2, ec2_stub = clients()
    instances(ec2_stub, IDS[:1])
    ssm_stub.add_client_error("send_command", "InvalidInstanceId", "Instances not in a valid state")
    with ssm_stub, ec2_stub, pytest.raises(ActionError, match="SSM refused the command"):
        deploy_package(Ctx(ssm, ec2), app="orders-api", version="1.4.1-1.el9", environment="prod")
