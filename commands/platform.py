"""The platform family: the main product's test environments."""

from marvin import ENVIRONMENT, VERSION, Text, command
from marvin.actions.environments import create_environment, plan_environment
from marvin.actions.restore import SNAPSHOT, restore_environment
from marvin.runtime.plans import plans

DATASET = Text(pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$", help="a dataset name such as small or full")


def plan_create(ctx, environment: str, dataset: str | None = None, requested_version="latest"):
    return plan_environment(
        ctx, family="platform", environment=environment, dataset=dataset, version=requested_version
    )


@plans(plan_create)
@command(
    "platform.create",
    "create platform environment named {{ environment }}( with dataset {{ dataset }})?"
    "( with version {{ requested_version='latest' }})",
    description="Create a platform test environment (a CloudFormation stack)",
    examples=[
        "create platform environment named demo01",
        "create platform environment named demo01 with dataset small with version 4.3",
    ],
    params={"environment": ENVIRONMENT, "dataset": DATASET, "requested_version": VERSION},
    lock="environment",
    ack="Creating platform environment {{environment}}",
    result="Your requested workflow is complete.",
)
def create(ctx, environment: str, dataset: str | None = None, requested_version: str = "latest"):
    summary = create_environment(
        ctx, family="platform", environment=environment, dataset=dataset, version=requested_version
    )
    ctx.reply(summary)


@command(
    "platform.restore",
    "restore platform environment named {{ environment }}( from snapshot {{ snapshot }})?",
    description="Restore a platform environment's databases from snapshots",
    examples=[
        "restore platform environment named demo01",
        "restore platform environment named demo01 from snapshot before-migration",
    ],
    params={"environment": ENVIRONMENT, "snapshot": SNAPSHOT},
    lock="environment",
    ack="Restoring platform environment {{environment}}",
)
def restore(ctx, environment: str, snapshot: str | None = None):
    return restore_environment(ctx, family="platform", environment=environment, snapshot=snapshot)
