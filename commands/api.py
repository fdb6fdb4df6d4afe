"""The api family: API service test environments, in the same words as the platform's."""

from marvin import ENVIRONMENT, VERSION, command
from marvin.actions.environments import create_environment


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
