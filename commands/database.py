"""The database family: snapshots of an environment's RDS databases."""

from marvin import ENVIRONMENT, Text, command
from marvin.actions.rds import snapshot_database

DATABASE = Text(pattern=r"^[a-z][a-z0-9-]{0,40}$", help="a database name such as orders")
LABEL = Text(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$", help="a short label such as before-migration")


@command(
    "database.snapshot",
    "snapshot database {{ database }} in {{ environment }}( as {{ label='manual' }})",
    description="Snapshot an environment's RDS database",
    examples=[
        "snapshot database orders in demo01",
        "snapshot database orders in demo01 as before-migration",
    ],
    params={"database": DATABASE, "environment": ENVIRONMENT, "label": LABEL},
    lock="environment",
    ack="Snapshotting {{database}} in {{environment}}",
)
def snapshot(ctx, database: str, environment: str, label: str = "manual"):
    snap = snapshot_database(
        ctx,
        database=database,
        environment=environment,
        label=label,
        poll_seconds=float(ctx.services.config.get("aws.poll_seconds")),
    )
    return f"Snapshot {snap} is available."
