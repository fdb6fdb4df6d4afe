"""The sidekiq family: pause, inspect and resume an environment's Sidekiq workers."""

from marvin import ENVIRONMENT, command
from marvin.actions import sidekiq_control


@command(
    "sidekiq.pause",
    "pause sidekiq on {{ environment }}",
    description="Quiet every Sidekiq process and wait until no job is busy",
    examples=["pause sidekiq on demo01"],
    params={"environment": ENVIRONMENT},
    lock="environment",
    ack="Pausing Sidekiq on {{environment}}",
)
def pause(ctx, environment: str):
    return sidekiq_control.pause(ctx, environment=environment)


@command(
    "sidekiq.resume",
    "resume sidekiq on {{ environment }}",
    description="Restart the worker service and wait for fresh Sidekiq processes",
    examples=["resume sidekiq on demo01"],
    params={"environment": ENVIRONMENT},
    lock="environment",
    ack="Resuming Sidekiq on {{environment}}",
)
def resume(ctx, environment: str):
    return sidekiq_control.resume(ctx, environment=environment)


@command(
    "sidekiq.show",
    "show sidekiq on {{ environment }}",
    description="List Sidekiq processes and queues",
    examples=["show sidekiq on demo01"],
    params={"environment": ENVIRONMENT},
)
def show(ctx, environment: str):
    return sidekiq_control.show(ctx, environment=environment)
