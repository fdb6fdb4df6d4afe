"""CloudFormation stacks: create one and follow it to the end, reporting progress."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until
from marvin.actions.aws import aws_client
from marvin.actions.clients import client
from marvin.config import Config, Setting, declare

__all__ = ["create_stack", "stack_name"]

declare(
    "cloudformation",
    {
        "template": Setting(str, "templates/environment.yaml", None, "a file path"),
        "poll_seconds": Setting(
            (int, float), 5, lambda v: 0 < v <= 300, "seconds between 0 and 300"
        ),
        "timeout": Setting((int, float), 3600, lambda v: v > 0, "seconds > 0"),
    },
)


@client("cloudformation")
def _cloudformation(config: Config) -> Any:
    return aws_client(config, "cloudformation")


@client("environment_template")
def _environment_template(config: Config) -> str:
    return config.file("cloudformation.template").read_text()


_DONE = {"CREATE_COMPLETE"}
_FAILED = {
    "CREATE_FAILED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_COMPLETE",
    "DELETE_FAILED",
}


def stack_name(family: str, environment: str) -> str:
    return f"{family}-{environment}"


def create_stack(
    ctx: Any,
    client: Any,
    *,
    name: str,
    template_body: str,
    parameters: Mapping[str, str | None],
    tags: Mapping[str, str],
    poll_seconds: float = 5.0,
    timeout: float = 3600.0,
) -> dict[str, str]:
    """Create stack ``name`` and wait for it; returns its outputs. Raises ActionError with the
    stack's own reason on failure. Waiting uses ``ctx.sleep`` so cancellation is prompt."""
    try:
        client.create_stack(
            StackName=name,
            TemplateBody=template_body,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v}
                for k, v in parameters.items()
                if v is not None
            ],
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            OnFailure="ROLLBACK",
        )
    except ClientError as exc:
        err = exc.response.get("Error", {})
        if err.get("Code") == "AlreadyExistsException":
            raise ActionError(f"stack {name} already exists") from None
        raise ActionError(
            f"CloudFormation refused stack {name}: {err.get('Message', exc)}"
        ) from None
    ctx.log.info("stack creation started", stack=name)
    last = {"status": "CREATE_IN_PROGRESS"}

    def check() -> dict[str, str] | None:
        stack = client.describe_stacks(StackName=name)["Stacks"][0]
        status = last["status"] = stack["StackStatus"]
        if status in _DONE:
            return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if status in _FAILED:
            raise ActionError(f"stack {name} {status}: {_reason(client, name, stack)}")
        ctx.progress(_progress(client, name, status))
        return None

    return wait_until(
        ctx,
        check,
        every=poll_seconds,
        timeout=timeout,
        what=lambda: f"stack {name} still {last['status']}",
    )


def _progress(client: Any, name: str, status: str) -> str:
    try:
        res = client.describe_stack_resources(StackName=name)["StackResources"]
    except ClientError:
        return f"{name}: {status}"
    done = sum(1 for r in res if r["ResourceStatus"] == "CREATE_COMPLETE")
    return f"{name}: {done} of {len(res)} resources created"


def _reason(client: Any, name: str, stack: Mapping[str, Any]) -> str:
    """The first failed resource's reason is the useful one; the stack's is often generic."""
    try:
        events = client.describe_stack_events(StackName=name)["StackEvents"]
    except ClientError:
        events = []
    for event in reversed(events):
        if event.get("ResourceStatus", "").endswith("FAILED") and event.get("ResourceStatusReason"):
            return f"{event['LogicalResourceId']}: {event['ResourceStatusReason']}"
    return stack.get("StackStatusReason") or "no reason given"
