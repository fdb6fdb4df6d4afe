"""The app family: deploying an application's RPM to an environment."""

from marvin import ENVIRONMENT, Text, command
from marvin.actions.deploy import deploy_package
from marvin.actions.release import plan_rollout
from marvin.runtime.plans import plans

APP = Text(pattern=r"^[a-z][a-z0-9-]{0,40}$", help="an application (RPM) name such as orders-api")
RPM_VERSION = Text(
    pattern=r"^([0-9]{1,9}:)?[A-Za-z0-9._+~^]{1,60}-[A-Za-z0-9._+~^]{1,60}$",
    help="an RPM version-release such as 1.4.1-1.el9, with an optional epoch: 2:1.4.1-1.el9",
)


def plan(ctx, app: str, version: str, environment: str):
    return plan_rollout(ctx, app=app, version=version, environment=environment)


@plans(plan)
@command(
    "app.deploy",
    "deploy {{ app }} {{ version }} to {{ environment }}",
    description="Install exactly one RPM version on an environment's instances (SSM, in batches)",
    examples=[
        "deploy orders-api 1.4.1-1.el9 to staging",
        "deploy orders-api 2:1.4.1-1.el9 to prod",
    ],
    params={"app": APP, "version": RPM_VERSION, "environment": ENVIRONMENT},
    lock="environment",
    checks=["ga_repository"],  # production takes only packages promoted to GA
    ack="Deploying {{app}} {{version}} to {{environment}}",
)
def deploy(ctx, app: str, version: str, environment: str):
    return deploy_package(ctx, app=app, version=version, environment=environment)
