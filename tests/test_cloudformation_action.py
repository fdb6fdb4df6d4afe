"""The CloudFormation action's waiting: progress while the stack builds, the failed resource's
own reason on failure, prompt cancellation. botocore's Stubber answers with canned responses
on a real boto3 client (moto completes stacks at once, so it cannot show these states)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

from marvin.actions import ActionError
from marvin.actions.cloudformation import create_stack
from marvin.core.model import Cancelled


class FakeCtx:
    def __init__(self) -> None:
        self.progress_lines: list[str] = []
        self.cancel_event = threading.Event()
        self.log = SimpleNamespace(info=lambda *a, **k: None)

    def progress(self, text: str) -> None:
        self.progress_lines.append(text)

    def sleep(self, seconds: float) -> None:
        if self.cancel_event.wait(seconds):
            raise Cancelled("ex-000000")


def _client():
    return boto3.client(
        "cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def _stack(status: str, reason: str | None = None) -> dict:
    stack = {
        "StackName": "platform-demo01",
        "CreationTime": "2026-01-01T00:00:00Z",
        "StackStatus": status,
    }
    if reason:
        stack["StackStatusReason"] = reason
    return {"Stacks": [stack]}


def _resources(done: int, total: int) -> dict:
    return {
        "StackResources": [
            {
                "LogicalResourceId": f"R{i}",
                "ResourceType": "AWS::SQS::Queue",
                "Timestamp": "2026-01-01T00:00:00Z",
                "ResourceStatus": "CREATE_COMPLETE" if i < done else "CREATE_IN_PROGRESS",
            }
            for i in range(total)
        ]
    }


def _create(ctx: FakeCtx, client) -> dict:
    return create_stack(
        ctx,
        client,
        name="platform-demo01",
        template_body="{}",
        parameters={"Environment": "demo01", "Dataset": None},
        tags={"a": "b"},
        poll_seconds=0.01,
        timeout=30,
    )


def test_progress_then_outputs() -> None:
    client, ctx = _client(), FakeCtx()
    with Stubber(client) as stub:
        stub.add_response(
            "create_stack",
            {"StackId": "id"},
            {
                "StackName": "platform-demo01",
                "TemplateBody": "{}",
                "Parameters": [{"ParameterKey": "Environment", "ParameterValue": "demo01"}],
                "Tags": [{"Key": "a", "Value": "b"}],
                "OnFailure": "ROLLBACK",
            },
        )
        stub.add_response("describe_stacks", _stack("CREATE_IN_PROGRESS"))
        stub.add_response("describe_stack_resources", _resources(1, 3))
        stub.add_response("describe_stacks", _stack("CREATE_IN_PROGRESS"))
        stub.add_response("describe_stack_resources", _resources(2, 3))
        done = _stack("CREATE_COMPLETE")
        done["Stacks"][0]["Outputs"] = [{"OutputKey": "QueueUrl", "OutputValue": "q"}]
        stub.add_response("describe_stacks", done)
        assert _create(ctx, client) == {"QueueUrl": "q"}
        stub.assert_no_pending_responses()
    assert ctx.progress_lines == [
        "platform-demo01: 1 of 3 resources created",
        "platform-demo01: 2 of 3 resources created",
    ]


def test_failure_reports_the_failed_resource() -> None:
    client, ctx = _client(), FakeCtx()
    with Stubber(client) as stub:
        stub.add_response("create_stack", {"StackId": "id"})
        stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE", "Rollback requested"))
        stub.add_response(
            "describe_stack_events",
            {
                "StackEvents": [
                    {
                        "StackId": "id",
                        "EventId": "2",
                        "StackName": "platform-demo01",
                        "Timestamp": "2026-01-01T00:00:02Z",
                        "LogicalResourceId": "platform-demo01",
                        "ResourceStatus": "ROLLBACK_IN_PROGRESS",
                        "ResourceStatusReason": "Rollback",
                    },
                    {
                        "StackId": "id",
                        "EventId": "1",
                        "StackName": "platform-demo01",
                        "Timestamp": "2026-01-01T00:00:01Z",
                        "LogicalResourceId": "Queue",
                        "ResourceStatus": "CREATE_FAILED",
                        "ResourceStatusReason": "Queue name already exists",
                    },
                ]
            },
        )
        with pytest.raises(ActionError, match="ROLLBACK_COMPLETE: Queue: Queue name already"):
            _create(ctx, client)


def test_cancel_while_waiting_is_prompt() -> None:
    client, ctx = _client(), FakeCtx()
    with Stubber(client) as stub:
        stub.add_response("create_stack", {"StackId": "id"})
        stub.add_response("describe_stacks", _stack("CREATE_IN_PROGRESS"))
        stub.add_response("describe_stack_resources", _resources(0, 3))
        threading.Timer(0.1, ctx.cancel_event.set).start()
        t0 = time.monotonic()
        with pytest.raises(Cancelled):
            create_stack(
                ctx,
                client,
                name="platform-demo01",
                template_body="{}",
                parameters={},
                tags={},
                poll_seconds=30,
                timeout=60,
            )
        assert time.monotonic() - t0 < 2
