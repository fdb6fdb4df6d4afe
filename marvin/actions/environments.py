"""Test environments: one CloudFormation stack per family and environment name."""

from __future__ import annotations

from typing import Any

from marvin.actions.cfn_plan import plan_stack, stack_status, template_digest
from marvin.actions.cloudformation import create_stack, stack_name
from marvin.runtime.plans import Plan

__all__ = ["create_environment", "plan_environment"]


def _parameters(family: str, environment: str, dataset: str | None, version: str) -> dict:
    return {"Family": family, "Environment": environment, "Dataset": dataset, "Version": version}


def plan_environment(
    ctx: Any, *, family: str, environment: str, dataset: str | None, version: str
) -> Plan:
    """What creating the environment would do, from a CREATE change set (deleted again)."""
    services = ctx.services
    name, client = stack_name(family, environment), services.cloudformation
    template = services.environment_template
    status = stack_status(client, name)
    basis: dict[str, Any] = {"stack": name, "status": status, "template": template_digest(template)}
    if status is not None:
        text = f"Stack {name} already exists ({status}); creating it would be refused."
        return Plan(text, basis=basis, changes=False)
    planned = plan_stack(
        ctx,
        client,
        name=name,
        template_body=template,
        parameters=_parameters(family, environment, dataset, version),
        kind="CREATE",
        poll_seconds=float(services.config.get("cloudformation.poll_seconds")),
    )
    basis["changes"] = [list(c) for c in planned.changes]
    return Plan(planned.summary(), basis=basis, changes=bool(planned.changes))


def create_environment(
    ctx: Any, *, family: str, environment: str, dataset: str | None, version: str
) -> str:
    """Create stack ``<family>-<environment>`` from the configured template and wait for it."""
    services = ctx.services
    name = stack_name(family, environment)
    outputs = create_stack(
        ctx,
        services.cloudformation,
        name=name,
        template_body=services.environment_template,
        parameters=_parameters(family, environment, dataset, version),
        tags={
            "marvin:requested-by": ctx.user.email or ctx.user.id,
            "marvin:execution-id": ctx.execution_id,
        },
        poll_seconds=float(services.config.get("cloudformation.poll_seconds")),
        timeout=float(services.config.get("cloudformation.timeout")),
    )
    shown = ", ".join(f"{k}={v}" for k, v in sorted(outputs.items()))
    return f"Stack {name} is ready" + (f" ({shown})." if shown else ".")
