"""The migrations family: run an environment's database migrations as a one-off ECS task."""

from marvin import ENVIRONMENT, VERSION, command
from marvin.actions.migrations import MigrationFailed, run_migrations


@command(
    "migrations.run",
    "run migrations on {{ environment }}( at version {{ version }})?",
    description="Run an environment's database migrations (an ECS task) and wait for them",
    examples=["run migrations on demo01", "run migrations on demo01 at version 4.3"],
    params={"environment": ENVIRONMENT, "version": VERSION},
    # No deploy or restore of this environment meanwhile: with jobs.locks: shared (the
    # shipped default) this is one lock per environment name across all families.
    lock="environment",
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
