"""The migrations family: run an environment's database migrations as a one-off ECS task."""

from marvin import ENVIRONMENT, VERSION, command
from marvin.actions.migrations import MigrationFailed, run_migrations


@command(
    "migrations.run",
    "run migrations on {{ environment }}( at version {{ version }})?",
    description="Run an environment's database migrations (an ECS task) and wait for them",
    examples=["run migrations on demo01", "run migrations on demo01 at version 4.3"],
    params={"environment": ENVIRONMENT, "version": VERSION},
    # Every family's lock on this environment: no deploy or restore of it meanwhile (those
    # families' own environment locks still do not exclude each other).
    lock="*.environment",
    ack="Running migrations on {{ environment }} (`{{ execution_id }}`)",
)
def run(ctx, environment: str, version: str | None = None):
    try:
        done = run_migrations(ctx, environment=environment, version=version)
    except MigrationFailed as failed:
        ctx.reply(f"Last lines of the migration log:\n```\n{failed.tail}\n```")
        raise
    return (
        f"Migrations on {environment} succeeded ({done.definition}, task {done.task_id}, "
        f"{done.seconds:.0f} s)."
    )
