"""The asg family: Auto Scaling groups of an environment."""

from marvin import ENVIRONMENT, Integer, Text, command
from marvin.actions.asg import plan_scale, scale_group
from marvin.runtime.plans import plans
from marvin.runtime.undo import UndoRecord, undoable

GROUP = Text(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$",
    help="an auto scaling group name such as web-demo01",
)
COUNT = Integer(min=0, max=10000, help="the number of instances wanted")


def undo_scale(ctx, record: UndoRecord) -> str:
    target = record.target
    done = scale_group(
        ctx,
        group=target["group"],
        environment=target["environment"],
        count=record.before,
        expect=record.after,  # compare-and-set: only if nobody changed it since
    )
    ctx.record_undo(target=target, before=done.previous, after=done.desired)
    return (
        f"Undid `{record.execution_id}`: {done.group} is back at {done.desired} instances, "
        "all InService and healthy."
    )


def plan(ctx, group: str, environment: str, count: int):
    return plan_scale(ctx, group=group, environment=environment, count=count)


@plans(plan)
@undoable(undo_scale)
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
    ctx.record_undo(
        target={"group": group, "environment": environment},
        before=done.previous,
        after=done.desired,
    )
    return (
        f"{done.group} is at {done.desired} instances, all InService and healthy "
        f"(was {done.previous}).\nTo put it back: `undo {ctx.execution_id}`"
    )
