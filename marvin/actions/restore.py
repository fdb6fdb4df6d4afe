"""Restore an environment's databases from snapshots, all or nothing.

Design: restore beside, then rename-swap. The environment's databases are the RDS instances
tagged with its family and environment and named ``<environment>-<database>``; the
environment's services reach each by that name's endpoint, so nothing else is repointed.

1. Pick each database's snapshot (the named one, or its latest *manual* snapshot: automated
   ``rds:`` ones are skipped). Nothing has changed if this fails.
2. Restore every database to ``<id>-restored-<run>`` in parallel branches (the slow part).
   A failure cancels the other branches, every restored copy is deleted, and the
   environment never stopped running on its databases.
3. Swap, one database at a time: rename ``<id>`` to ``<id>-previous-<run>``, then the restored
   copy to ``<id>``. If a swap fails, every swap already made is reversed, so the environment
   is never left on a mix of old and restored data. A cancel does not interrupt this short
   step (stopping half-way is what would break the environment); it ends or rolls back.
The previous instances are kept and named in the reply: delete them when no longer needed.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError
from marvin.actions.cloudformation import stack_name
from marvin.actions.parallel import ParallelFailed, run_parallel
from marvin.actions.rds_swap import (
    ROLE_TAG,
    Database,
    Shielded,
    delete_copies,
    swap_all,
    wait_available,
)
from marvin.config import Setting, declare
from marvin.core.model import Cancelled
from marvin.core.params import Text

__all__ = ["Database", "SNAPSHOT", "restore_environment"]

# The commands' snapshot parameter: an identifier, or a label from `snapshot database ... as`.
SNAPSHOT = Text(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,254}$",
    help="a snapshot identifier, or the label given when it was taken",
)

declare(
    "restore",
    {
        "family_tag": Setting(str, "marvin:family", None, "a tag key"),
        "environment_tag": Setting(str, "environment", None, "a tag key"),
        "poll_seconds": Setting(
            (int, float), 15, lambda v: 0 < v <= 300, "seconds between 0 and 300"
        ),
        "timeout": Setting((int, float), 7200, lambda v: v > 0, "seconds > 0"),
    },
)


def restore_environment(ctx: Any, *, family: str, environment: str, snapshot: str | None) -> str:
    """Restore every database of ``<family>-<environment>``; returns the summary to reply."""
    services = ctx.services
    config, rds = services.config, services.rds
    _require_stack(services.cloudformation, family, environment)
    dbs = _databases(config, rds, family, environment)
    run = ctx.execution_id.removeprefix("ex-").lower()
    for db in dbs:
        db.snapshot = _choose_snapshot(rds, db.id, snapshot)
        db.restored, db.previous = f"{db.id}-restored-{run}", f"{db.id}-previous-{run}"
        if len(db.previous) > 63:
            raise ActionError(f"{db.id} is too long a name to restore beside (63 characters)")
    poll, timeout = float(config.get("restore.poll_seconds")), float(config.get("restore.timeout"))
    branches = {db.name: _restore_branch(db, poll, timeout) for db in dbs}
    try:
        run_parallel(ctx, branches, title=f"Restoring {family} environment {environment}:")
    except (ParallelFailed, Cancelled) as exc:
        left = delete_copies(ctx, rds, dbs)
        if isinstance(exc, Cancelled):
            ctx.reply(f"Stopped before any swap: {environment} still runs on its databases.{left}")
            raise
        raise ActionError(
            f"restore of {family} environment {environment} failed ({exc}). The environment "
            f"still runs on its own databases; nothing was swapped.{left}"
        ) from None
    swap_all(Shielded(ctx), rds, dbs, poll, timeout)
    lines = [
        f"• {db.name}: from {db.snapshot['DBSnapshotIdentifier']}, taken "
        f"{_when(db.snapshot)}; the previous instance is kept as {db.previous}"
        for db in dbs
    ]
    return (
        f"{family} environment {environment} now runs on restored data:\n"
        + "\n".join(lines)
        + "\nDelete the previous instances when you no longer need them."
    )


def _require_stack(cfn: Any, family: str, environment: str) -> None:
    name = stack_name(family, environment)
    try:
        cfn.describe_stacks(StackName=name)
    except ClientError:
        raise ActionError(
            f"there is no {family} environment {environment} (stack {name})"
        ) from None


def _databases(config: Any, rds: Any, family: str, environment: str) -> list[Database]:
    fam_key, env_key = config.get("restore.family_tag"), config.get("restore.environment_tag")
    found = []
    for page in rds.get_paginator("describe_db_instances").paginate():
        for inst in page["DBInstances"]:
            tags = {t["Key"]: t["Value"] for t in inst.get("TagList", [])}
            ident = inst["DBInstanceIdentifier"]
            if (
                tags.get(fam_key) == family
                and tags.get(env_key) == environment
                and ROLE_TAG not in tags
                and ident.startswith(f"{environment}-")
            ):
                found.append(Database(ident.removeprefix(f"{environment}-"), inst))
    if not found:
        raise ActionError(
            f"{family} environment {environment} has no databases "
            f"(RDS instances tagged {fam_key}={family} and {env_key}={environment})"
        )
    return sorted(found, key=lambda d: d.name)


def _choose_snapshot(rds: Any, instance: str, wanted: str | None) -> dict[str, Any]:
    """The snapshot named ``wanted`` (its identifier, or a label given to `snapshot database
    ... as <label>`), else the latest manual one. Automated ``rds:`` snapshots never count."""
    snaps = [
        s
        for page in rds.get_paginator("describe_db_snapshots").paginate(
            DBInstanceIdentifier=instance, SnapshotType="manual"
        )
        for s in page["DBSnapshots"]
        if not s["DBSnapshotIdentifier"].startswith("rds:") and s.get("Status") == "available"
    ]
    if wanted:
        snaps = [
            s
            for s in snaps
            if s["DBSnapshotIdentifier"] in (wanted, f"{instance}-{wanted}")
            or s["DBSnapshotIdentifier"].startswith(f"{instance}-{wanted}-")
        ]
    if not snaps:
        which = f"named {wanted}" if wanted else "taken manually"
        raise ActionError(f"{instance} has no available snapshot {which}; nothing changed")
    return max(snaps, key=lambda s: s["SnapshotCreateTime"])


def _restore_branch(db: Database, poll: float, timeout: float) -> Any:
    def branch(bctx: Any) -> str:
        snap = db.snapshot["DBSnapshotIdentifier"]
        _restore_copy(bctx.services.rds, db, bctx.execution_id)
        bctx.progress(f"restoring from {snap}")
        wait_available(
            bctx, bctx.services.rds, db.restored, f"restoring from {snap}", poll, timeout
        )
        return db.restored

    return branch


def _restore_copy(rds: Any, db: Database, execution_id: str) -> None:
    """Start restoring ``db``'s snapshot beside it, with the instance's own settings."""
    inst = db.instance
    tags = [t for t in inst.get("TagList", []) if not t["Key"].startswith("aws:")]
    tags += [
        {"Key": ROLE_TAG, "Value": "restored"},
        {"Key": "marvin:restored-from", "Value": db.snapshot["DBSnapshotIdentifier"]},
        {"Key": "marvin:execution-id", "Value": execution_id},
    ]
    args: dict[str, Any] = {
        "DBInstanceIdentifier": db.restored,
        "DBSnapshotIdentifier": db.snapshot["DBSnapshotIdentifier"],
        "DBInstanceClass": inst["DBInstanceClass"],
        "MultiAZ": bool(inst.get("MultiAZ")),
        "Tags": tags,
    }
    if inst.get("DBSubnetGroup"):
        args["DBSubnetGroupName"] = inst["DBSubnetGroup"]["DBSubnetGroupName"]
    if inst.get("VpcSecurityGroups"):
        args["VpcSecurityGroupIds"] = [g["VpcSecurityGroupId"] for g in inst["VpcSecurityGroups"]]
    if inst.get("DBParameterGroups"):
        args["DBParameterGroupName"] = inst["DBParameterGroups"][0]["DBParameterGroupName"]
    if inst.get("PubliclyAccessible") is not None:
        args["PubliclyAccessible"] = inst["PubliclyAccessible"]
    try:
        rds.restore_db_instance_from_db_snapshot(**args)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise ActionError(f"RDS refused to restore {db.id}: {err.get('Message', exc)}") from None


def _when(snap: dict[str, Any]) -> str:
    created = snap.get("SnapshotCreateTime")
    return created.strftime("%Y-%m-%d %H:%M UTC") if created is not None else "at an unknown time"
