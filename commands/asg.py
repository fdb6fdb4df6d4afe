"""The asg family: Auto Scaling groups of an environment."""

from marvin import ENVIRONMENT, Integer, Text, command
from marvin.actions.asg import scale_group

GROUP = Text(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$",
    help="an auto scaling group name such as web-demo01",
)
COUNT = Integer(min=0, max=10000, help="the number of instances wanted")


@command(
    "asg.scale",
    "scale group {{ group }} in {{ environment }} to {{ count }}",
    description="Set an auto scaling group's desired capacity and wait for healthy instances",
    examples=["scale group web-demo01 in demo01 to 3"],
    params={"group": GROUP, "environment": ENVIRONMENT, "count": COUNT},
    lock="environment",
    ack="Scaling {{group}} in {{environment}} to {{count}}",
)
def scale(ctx, group: str, environment: str, count: int):
    done = scale_group(ctx, group=group, environment=environment, count=count)
    # undo: hook here once the undo mechanism lands: done.previous is what to set back.
    return (
        f"{done.group} is at {done.desired} instances, all InService and healthy "
        f"(was {done.previous})."
    )
