"""RDS: snapshot a database instance and wait until the snapshot is available."""

from __future__ import annotations

import re
import time
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until

__all__ = ["snapshot_database", "instance_id"]


def instance_id(database: str, environment: str) -> str:
    """Databases are named ``<environment>-<database>`` across families (shared vocabulary)."""
    return f"{environment}-{database}"


def snapshot_database(
    ctx: Any,
    *,
    database: str,
    environment: str,
    label: str,
    poll_seconds: float = 10.0,
    timeout: float = 3600.0,
) -> str:
    """Create a manual snapshot; returns its identifier. Raises ActionError with RDS's reason."""
    client = ctx.services.rds
    instance = instance_id(database, environment)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    snap = re.sub(r"[^a-zA-Z0-9-]", "-", f"{instance}-{label}-{stamp}")[:255]
    try:
        client.create_db_snapshot(
            DBSnapshotIdentifier=snap,
            DBInstanceIdentifier=instance,
            Tags=[
                {"Key": "marvin:requested-by", "Value": ctx.user.email or ctx.user.id},
                {"Key": "marvin:execution-id", "Value": ctx.execution_id},
            ],
        )
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise ActionError(
            f"RDS refused the snapshot of {instance}: "
            f"{err.get('Message') or err.get('Code') or exc}"
        ) from None
    last = {"status": "creating"}

    def check() -> str | None:
        status = client.describe_db_snapshots(DBSnapshotIdentifier=snap)["DBSnapshots"][0]
        last["status"] = status["Status"]
        if status["Status"] == "available":
            return snap
        if status["Status"] in ("failed", "deleted"):
            raise ActionError(f"snapshot {snap} {status['Status']}")
        ctx.progress(f"snapshot {snap}: {status['Status']} ({status.get('PercentProgress', 0)}%)")
        return None

    return wait_until(
        ctx,
        check,
        every=poll_seconds,
        timeout=timeout,
        what=lambda: f"snapshot {snap} still {last['status']}",
    )
