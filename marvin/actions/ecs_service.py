"""ECS services: restart one with a new deployment and follow the rollout to its end.

``forceNewDeployment`` starts a deployment with the same task definition; ECS then replaces
every task. The new deployment is the one whose id ``update_service`` returns as PRIMARY; we
follow that one by id (``rolloutState`` IN_PROGRESS -> COMPLETED or FAILED, with its reason),
show its running/desired counts and the service's newest event, and call it done when it
COMPLETED, or, for services without ``rolloutState`` (behind a classic load balancer), when it
is the only deployment left and runs its desired count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until
from marvin.config import Setting, declare
from marvin.runtime.plans import Plan

__all__ = ["RestartResult", "restart_service", "follow_rollout", "names", "plan_restart"]

declare(
    "service",
    {
        "cluster": Setting(str, "{environment}", None, "a template with {environment}"),
        "name": Setting(str, "{service}", lambda v: "{service}" in v, "a template with {service}"),
        "poll_seconds": Setting(
            (int, float), 10, lambda v: 0 < v <= 300, "seconds between 0 and 300"
        ),
        "timeout": Setting((int, float), 1800, lambda v: v > 0, "seconds > 0"),
    },
)


@dataclass(frozen=True)
class RestartResult:
    cluster: str
    service: str
    deployment: str
    running: int
    desired: int


def names(config: Any, service: str, environment: str) -> tuple[str, str]:
    """(cluster, service) from the configured templates."""
    values = {"service": service, "environment": environment}
    return (
        str(config.get("service.cluster")).format(**values),
        str(config.get("service.name")).format(**values),
    )


def plan_restart(ctx: Any, *, service: str, environment: str) -> Plan:
    """The running tasks a restart would replace (reads only). Tasks come and go on their
    own, so the basis is the service's task definition and desired count, not the task ids."""
    config, client = ctx.services.config, ctx.services.ecs
    cluster, name = names(config, service, environment)
    try:
        found = client.describe_services(cluster=cluster, services=[name]).get("services", [])
        arns = client.list_tasks(cluster=cluster, serviceName=name).get("taskArns", [])
    except ClientError as exc:
        found, arns = [], []
        ctx.log.info("ecs read failed while planning", error=str(exc)[:200])
    live = [s for s in found if s.get("status") == "ACTIVE"]
    if not live:
        text = f"There is no ECS service {name} in cluster {cluster}; a restart would fail."
        return Plan(text, basis={"service": name, "cluster": cluster}, changes=False)
    svc = live[0]
    basis = {
        "service": name,
        "cluster": cluster,
        "task_definition": svc.get("taskDefinition"),
        "desired": svc.get("desiredCount"),
    }
    ids = [a.rsplit("/", 1)[-1] for a in arns]
    shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    task_def = str(svc.get("taskDefinition", "")).rsplit("/", 1)[-1]
    text = (
        f"{name} on {cluster}: a new deployment of {task_def} would replace "
        f"{len(ids)} running task(s) ({shown or 'none running'}), {svc.get('desiredCount')} wanted."
    )
    return Plan(text, basis=basis)


def restart_service(ctx: Any, *, service: str, environment: str) -> RestartResult:
    """Force a new deployment of the environment's service and wait for its rollout."""
    config, client = ctx.services.config, ctx.services.ecs
    cluster, name = names(config, service, environment)
    try:
        resp = client.update_service(cluster=cluster, service=name, forceNewDeployment=True)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        if code in ("ServiceNotFoundException", "ClusterNotFoundException"):
            raise ActionError(f"there is no ECS service {name} in cluster {cluster}") from None
        raise ActionError(f"ECS refused to restart {name}: {err.get('Message', exc)}") from None
    svc = resp["service"]
    primary = next((d for d in svc.get("deployments", []) if d["status"] == "PRIMARY"), None)
    if primary is None:
        raise ActionError(f"ECS started no deployment for {name} (deployment controller?)")
    ctx.log.info("deployment started", cluster=cluster, service=name, deployment=primary["id"])
    return follow_rollout(
        ctx,
        client,
        cluster=cluster,
        service=name,
        deployment=primary["id"],
        poll_seconds=float(config.get("service.poll_seconds")),
        timeout=float(config.get("service.timeout")),
    )


def follow_rollout(
    ctx: Any,
    client: Any,
    *,
    cluster: str,
    service: str,
    deployment: str,
    poll_seconds: float,
    timeout: float,
) -> RestartResult:
    """Poll ``describe_services`` until deployment ``deployment`` COMPLETED; ActionError with
    ECS's reason (and newest event) if it FAILED or was replaced by another deployment."""
    last = {"text": f"{service}: deployment {deployment} starting"}

    def check() -> RestartResult | None:
        svc = _describe(client, cluster, service)
        deps = svc.get("deployments", [])
        mine = next((d for d in deps if d["id"] == deployment), None)
        event = _newest_event(svc)
        if mine is None or mine["status"] == "INACTIVE":
            now = next((d["id"] for d in deps if d["status"] == "PRIMARY"), "none")
            raise ActionError(
                f"{service}: deployment {deployment} was replaced by {now} before it finished"
            )
        state = mine.get("rolloutState")
        running, desired = mine.get("runningCount", 0), mine.get("desiredCount", 0)
        if state == "FAILED":
            reason = mine.get("rolloutStateReason") or "no reason given"
            raise ActionError(
                f"{service}: deployment {deployment} FAILED: {reason}"
                + (f" (last event: {event})" if event else "")
            )
        if state == "COMPLETED" or (state is None and len(deps) == 1 and running >= desired):
            return RestartResult(cluster, service, deployment, running, desired)
        others = sum(d.get("runningCount", 0) for d in deps if d["id"] != deployment)
        parts = [f"{running} of {desired} new tasks running"]
        if mine.get("pendingCount"):
            parts.append(f"{mine['pendingCount']} pending")
        if mine.get("failedTasks"):
            parts.append(f"{mine['failedTasks']} failed to start")
        if others:
            parts.append(f"{others} old still running")
        last["text"] = f"{service}: {state or 'rolling out'}, " + ", ".join(parts)
        ctx.progress(last["text"] + (f"\n{event}" if event else ""))
        return None

    return wait_until(ctx, check, every=poll_seconds, timeout=timeout, what=lambda: last["text"])


def _describe(client: Any, cluster: str, service: str) -> dict[str, Any]:
    try:
        resp = client.describe_services(cluster=cluster, services=[service])
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise ActionError(f"ECS: {err.get('Message', exc)}") from None
    found = resp.get("services", [])
    if not found:
        raise ActionError(f"ECS service {service} in {cluster} is gone")
    return found[0]


def _newest_event(svc: dict[str, Any]) -> str | None:
    events = svc.get("events") or []  # ECS lists the newest first
    if not events:
        return None
    return str(events[0].get("message", ""))[:300] or None
