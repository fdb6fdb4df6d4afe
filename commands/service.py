"""The service family: an environment's ECS services."""

from marvin import ENVIRONMENT, Text, command
from marvin.actions.ecs_service import plan_restart, restart_service
from marvin.runtime.plans import plans

SERVICE = Text(pattern=r"^[a-z][a-z0-9_-]{0,60}$", help="a service name such as api or worker")


def plan(ctx, service: str, environment: str):
    return plan_restart(ctx, service=service, environment=environment)


@plans(plan)
@command(
    "service.restart",
    "restart service {{ service }} on {{ environment }}",
    description="Restart an environment's ECS service (new deployment) and follow the rollout",
    examples=["restart service api on demo01"],
    params={"service": SERVICE, "environment": ENVIRONMENT},
    lock="environment",
    ack="Restarting {{service}} on {{environment}}",
)
def restart(ctx, service: str, environment: str):
    done = restart_service(ctx, service=service, environment=environment)
    return (
        f"{done.service} on {done.cluster} restarted: deployment {done.deployment} completed, "
        f"{done.running} of {done.desired} tasks running."
    )
