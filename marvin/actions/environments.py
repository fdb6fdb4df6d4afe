"""Test environments: one CloudFormation stack per family and environment name."""

from __future__ import annotations

from typing import Any

from marvin.actions.cloudformation import create_stack, stack_name

__all__ = ["create_environment"]


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
        parameters={
            "Family": family,
            "Environment": environment,
            "Dataset": dataset,
            "Version": version,
        },
        tags={
            "marvin:requested-by": ctx.user.email or ctx.user.id,
            "marvin:execution-id": ctx.execution_id,
        },
        poll_seconds=float(services.config.get("cloudformation.poll_seconds")),
        timeout=float(services.config.get("cloudformation.timeout")),
    )
    shown = ", ".join(f"{k}={v}" for k, v in sorted(outputs.items()))
    return f"Stack {name} is ready" + (f" ({shown})." if shown else ".")
