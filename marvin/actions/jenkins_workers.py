"""Jenkins agents in an auto-scaling group (``jenkins.workers_group``): show them, and scale
them with the bounds checked here (AWS rejects a capacity outside min..max; moto does not).

Scaling down never kills an agent that is running a build. Marvin picks the instances to
remove itself instead of letting the group choose: first instances with no agent online,
then idle agents, then busy ones. Each chosen agent is first taken offline in Jenkins (so no
new build lands on it), and its instance is terminated only once the agent is idle, with
``ShouldDecrementDesiredCapacity``. Busy agents are waited for (with progress, up to
``jenkins.workers_timeout``), never killed. A cancel brings drained agents back online.

An agent belongs to an instance when the instance id (``i-...``) appears in its node name or
description, as the EC2 and Swarm plugins write it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until
from marvin.actions.jenkins import jenkins_call
from marvin.core.model import Cancelled

__all__ = ["Agent", "Group", "agents", "group", "scale_workers"]

_INSTANCE = re.compile(r"\bi-[0-9a-f]{8,17}\b")
_BUILT_IN = {"Built-In Node", "master", "(master)"}


@dataclass(frozen=True)
class Agent:
    name: str
    instance: str | None
    online: bool
    idle: bool
    drained: bool  # temporarily offline (taken offline by a person or by Marvin)


@dataclass(frozen=True)
class Group:
    name: str
    min: int
    max: int
    desired: int
    instances: tuple[str, ...]  # in service or pending


def agents(ctx: Any) -> list[Agent]:
    """The Jenkins agents matching ``jenkins.workers_nodes`` (never the built-in node)."""
    pattern = ctx.services.config.get("jenkins.workers_nodes")
    nodes = jenkins_call("list agents", ctx.services.jenkins.get_nodes_with_info)
    out = []
    for n in nodes:
        if n["name"] in _BUILT_IN or not fnmatch.fnmatchcase(n["name"], pattern):
            continue
        found = _INSTANCE.search(f"{n['name']} {n.get('description') or ''}")
        out.append(
            Agent(
                n["name"],
                found.group(0) if found else None,
                not n["offline"],
                bool(n["idle"]),
                bool(n.get("temporarilyOffline")),
            )
        )
    return out


def group(ctx: Any) -> Group:
    name = ctx.services.config.get("jenkins.workers_group")
    if not name:
        raise ActionError("no auto-scaling group is configured for Jenkins agents")
    try:
        found = ctx.services.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
            "AutoScalingGroups"
        ]
    except ClientError as exc:
        raise ActionError(f"can't read auto-scaling group {name}: {_aws(exc)}") from None
    if not found:
        raise ActionError(f"auto-scaling group {name} does not exist")
    g = found[0]
    live = tuple(
        i["InstanceId"]
        for i in g.get("Instances", [])
        if i.get("LifecycleState", "InService").split(":")[0] in ("InService", "Pending")
    )
    return Group(name, g["MinSize"], g["MaxSize"], g["DesiredCapacity"], live)


def _aws(exc: ClientError) -> str:
    err = exc.response.get("Error", {})
    return err.get("Message") or err.get("Code") or str(exc)


def scale_workers(ctx: Any, count: int) -> Group:
    """Scale the agents' group to ``count`` and wait until that many agents are online in
    Jenkins. Returns the group as it was before. Out-of-bounds changes nothing."""
    config = ctx.services.config
    before = group(ctx)
    if not before.min <= count <= before.max:
        raise ActionError(
            f"{count} is outside {before.name}'s bounds ({before.min} to {before.max}); "
            "nothing changed"
        )
    every = float(config.get("jenkins.poll_seconds"))
    timeout = float(config.get("jenkins.workers_timeout"))
    asg = ctx.services.autoscaling
    if count > before.desired:
        try:
            asg.set_desired_capacity(
                AutoScalingGroupName=before.name, DesiredCapacity=count, HonorCooldown=False
            )
        except ClientError as exc:
            raise ActionError(f"AWS refused to scale {before.name}: {_aws(exc)}") from None
    elif count < before.desired:
        _scale_down(ctx, before, before.desired - count, every, timeout)

    def online() -> bool | None:
        up = [a for a in agents(ctx) if a.online]
        if len(up) == count:
            return True
        ctx.progress(f"{len(up)} of {count} Jenkins agents online")
        return None

    wait_until(ctx, online, every=every, timeout=timeout, what=lambda: f"not {count} agents online")
    return before


def _scale_down(ctx: Any, g: Group, remove: int, every: float, timeout: float) -> None:
    server, asg = ctx.services.jenkins, ctx.services.autoscaling
    by_instance = {a.instance: a for a in agents(ctx) if a.instance}

    def order(instance: str) -> int:
        agent = by_instance.get(instance)
        return 0 if agent is None or not agent.online else 1 if agent.idle else 2

    chosen = sorted(g.instances, key=order)[:remove]
    drained: dict[str, str] = {}  # instance -> agent name taken offline by us
    for instance in chosen:
        agent = by_instance.get(instance)
        if agent is not None and agent.online:
            jenkins_call(
                f"take {agent.name} offline", server.disable_node, agent.name, "scaling down"
            )
            drained[instance] = agent.name
    left = list(chosen)

    def terminate() -> bool | None:
        now = {a.instance: a for a in agents(ctx) if a.instance}
        for instance in list(left):
            agent = now.get(instance)
            if agent is not None and not agent.idle:
                continue  # still finishing a build: it was taken offline, so no new one lands
            try:
                asg.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance, ShouldDecrementDesiredCapacity=True
                )
            except ClientError as exc:
                raise ActionError(f"AWS refused to remove {instance}: {_aws(exc)}") from None
            left.remove(instance)
            drained.pop(instance, None)
        if not left:
            return True
        busy = ", ".join(now[i].name for i in left if i in now)
        ctx.progress(f"waiting for {len(left)} busy agent(s) to finish their builds: {busy}")
        return None

    try:
        wait_until(
            ctx,
            terminate,
            every=every,
            timeout=timeout,
            what=lambda: f"{len(left)} agent(s) still busy",
        )
    except (Cancelled, ActionError):
        for name in drained.values():  # not terminated: put them back to work
            try:
                server.enable_node(name)
            except Exception:
                ctx.log.warning("could not bring agent back online", agent=name, exc_info=True)
        raise
