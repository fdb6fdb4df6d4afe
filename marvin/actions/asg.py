"""Auto Scaling groups: scale a group Marvin may manage and wait until the instances serve.

A group is Marvin's only when it carries the management tag, and it belongs to the
environment named in its ``environment`` tag: the policy decided on the environment the
requester typed, so a group of another environment is refused (the execution is recorded and
audited ``refused``) rather than scaled under the wrong rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until
from marvin.config import Setting, declare
from marvin.core.model import Refusal
from marvin.runtime.plans import Plan

__all__ = ["Refused", "ScaleResult", "scale_group", "group_name", "plan_scale"]

declare(
    "asg",
    {
        "name": Setting(str, "{group}", lambda v: "{group}" in v, "a template with {group}"),
        "managed_tag": Setting(str, "marvin:managed", None, "a tag key"),
        "managed_value": Setting(str, "true", None, "a tag value"),
        "environment_tag": Setting(str, "environment", None, "a tag key"),
        "poll_seconds": Setting(
            (int, float), 10, lambda v: 0 < v <= 300, "seconds between 0 and 300"
        ),
        "timeout": Setting((int, float), 1800, lambda v: v > 0, "seconds > 0"),
    },
)


class Refused(ActionError, Refusal):
    """The request does not fit this group: the execution is recorded ``refused``."""


@dataclass(frozen=True)
class ScaleResult:
    group: str
    previous: int  # the desired capacity before: what an undo would set back
    desired: int
    healthy: int


def group_name(config: Any, group: str, environment: str) -> str:
    return str(config.get("asg.name")).format(group=group, environment=environment)


def _describe(client: Any, name: str) -> dict[str, Any]:
    groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    found = groups.get("AutoScalingGroups", [])
    if not found:
        raise ActionError(f"there is no auto scaling group named {name}")
    return found[0]


def check_group(ctx: Any, group: dict[str, Any], environment: str) -> None:
    """Refuse groups Marvin does not manage or that belong to another environment."""
    config = ctx.services.config
    tags = {t["Key"]: t.get("Value", "") for t in group.get("Tags", [])}
    name = group["AutoScalingGroupName"]
    key, value = config.get("asg.managed_tag"), config.get("asg.managed_value")
    if tags.get(key) != value:
        ctx.log.warning("refused: group not managed", group=name)
        raise Refused(f"group {name} is not managed by Marvin (no tag {key}={value})")
    env_key = config.get("asg.environment_tag")
    actual = tags.get(env_key)
    if actual != environment:
        ctx.log.warning(
            "refused: environment mismatch", group=name, tagged=actual, asked=environment
        )
        shown = f"tagged {env_key}={actual}" if actual else f"without an {env_key} tag"
        raise Refused(f"group {name} is {shown}, not {environment}; nothing changed")


def scale_group(
    ctx: Any, *, group: str, environment: str, count: int, expect: int | None = None
) -> ScaleResult:
    """Set the desired capacity of a managed group within its own min..max and wait until
    ``count`` instances are InService and healthy, with nothing still launching or leaving.
    With ``expect`` (an undo), only if the desired capacity is still ``expect``."""
    config, client = ctx.services.config, ctx.services.autoscaling
    name = group_name(config, group, environment)
    current = _describe(client, name)
    check_group(ctx, current, environment)
    lo, hi = current["MinSize"], current["MaxSize"]
    if not lo <= count <= hi:  # AWS refuses this too, but moto does not: check it ourselves
        raise ActionError(f"{count} is outside {name}'s bounds ({lo} to {hi}); nothing changed")
    previous = current["DesiredCapacity"]
    if expect is not None and previous != expect:
        raise ActionError(
            f"{name} wants {previous} instances now, not {expect}: someone or a scaling policy "
            "changed it since, so I left it alone"
        )
    known = {a["ActivityId"] for a in _activities(client, name)}  # older failures are not ours
    try:
        client.set_desired_capacity(
            AutoScalingGroupName=name, DesiredCapacity=count, HonorCooldown=False
        )
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise ActionError(f"AWS refused to scale {name}: {err.get('Message', exc)}") from None
    ctx.log.info("desired capacity set", group=name, previous=previous, desired=count)
    last = {"text": f"{name}: waiting for {count} instances"}

    def check() -> int | None:
        grp = _describe(client, name)
        instances = grp.get("Instances", [])
        healthy = sum(
            1
            for i in instances
            if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"
        )
        moving: dict[str, int] = {}
        for i in instances:
            state = i["LifecycleState"].split(":")[0]  # Pending:Wait counts as Pending
            if state in ("Pending", "Terminating"):
                moving[state] = moving.get(state, 0) + 1
        if healthy == count and not moving:
            return healthy
        _failed_activity(client, name, known)
        extra = ", ".join(f"{n} {s}" for s, n in sorted(moving.items()))
        last["text"] = f"{name}: {healthy} of {count} InService and healthy" + (
            f" ({extra})" if extra else ""
        )
        ctx.progress(last["text"])
        return None

    healthy = wait_until(
        ctx,
        check,
        every=float(config.get("asg.poll_seconds")),
        timeout=float(config.get("asg.timeout")),
        what=lambda: last["text"],
    )
    return ScaleResult(group=name, previous=previous, desired=count, healthy=healthy)


def plan_scale(ctx: Any, *, group: str, environment: str, count: int) -> Plan:
    """Current -> requested desired capacity within the group's bounds; reads only. The basis
    is what ``apply`` compares: the desired capacity and bounds planned against."""
    config, client = ctx.services.config, ctx.services.autoscaling
    name = group_name(config, group, environment)
    current = _describe(client, name)
    lo, hi, desired = current["MinSize"], current["MaxSize"], current["DesiredCapacity"]
    basis = {"group": name, "desired": desired, "min": lo, "max": hi}
    try:
        check_group(ctx, current, environment)
    except Refused as exc:
        return Plan(f"Scaling would be refused: {exc}.", basis=basis, changes=False)
    healthy = sum(
        1
        for i in current.get("Instances", [])
        if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"
    )
    bounds = f"(min {lo}, max {hi}; {healthy} InService and healthy now)"
    if not lo <= count <= hi:
        text = f"{count} is outside {name}'s bounds {bounds}; scaling would be refused."
        return Plan(text, basis=basis, changes=False)
    if desired == count:
        return Plan(f"{name} already wants {count} instances {bounds}.", basis=basis, changes=False)
    moves = f"launch {count - desired}" if count > desired else f"terminate {desired - count}"
    text = f"{name}: desired capacity {desired} → {count} {bounds}; AWS would {moves} instance(s)."
    return Plan(text, basis=basis)


def _activities(client: Any, name: str) -> list[dict[str, Any]]:
    try:
        resp = client.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=20)
    except ClientError:
        return []
    return list(resp.get("Activities", []))


def _failed_activity(client: Any, name: str, known: set[str]) -> None:
    """A launch that failed since we asked is the reason worth telling (e.g. no capacity)."""
    for act in _activities(client, name):
        if act["ActivityId"] not in known and act.get("StatusCode") in ("Failed", "Cancelled"):
            reason = act.get("StatusMessage") or act.get("Description") or act["StatusCode"]
            raise ActionError(f"{name}: scaling activity {act['StatusCode'].lower()}: {reason}")
