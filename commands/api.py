"""The api family: API service test environments, in the same words as the platform's."""

from marvin import ENVIRONMENT, VERSION, command
from marvin.actions.environments import create_environment, plan_environment
from marvin.actions.restore import SNAPSHOT, restore_environment
from marvin.runtime.plans import plans


def plan_create(ctx, environment: str, requested_version: str = "latest"):
    return plan_environment(
        ctx, family="api", environment=environment, dataset=None, version=requested_version
    )


@plans(plan_create)
@command(
    "api.create",
    "create api environment named {{ environment }}"
    "( with version {{ requested_version='latest' }})",
    description="Create an API test environment (a CloudFormation stack)",
    examples=[
        "create api environment named demo01",
        "create api environment named demo01 with version 2.1",
    ],
    params={"environment": ENVIRONMENT, "requested_version": VERSION},
    lock="environment",
    ack="Creating api environment {{environment}}",
    result="Your requested workflow is complete.",
)
def create(ctx, environment: str, requested_version: str = "latest"):
    summary = create_environment(
        ctx, family="api", environment=environment, dataset=None, version=requested_version
    )
    ctx.reply(summary)


@command(
    "api.restore",
    "restore api environment named {{ environment }}( from snapshot {{ snapshot }})?",
    description="Restore a api environment's databases from snapshots",
    examples=[
        "restore api environment named demo01",
        "restore api environment named demo01 from snapshot before-migration",
    ],
    params={"environment": ENVIRONMENT, "snapshot": SNAPSHOT},
    lock="environment",
    ack="Restoring api environment {{environment}}",
)
def restore(ctx, environment: str, snapshot: str | None = None):
    return restore_environment(ctx, family="api", environment=environment, snapshot=snapshot)
