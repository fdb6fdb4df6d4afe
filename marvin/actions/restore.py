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

import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until
from marvin.actions.cloudformation import stack_name
from marvin.actions.parallel import ParallelFailed, run_parallel
from marvin.config import Setting, declare
from marvin.core.params import Text
from marvin.runtime.execution import Cancelled

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
ROLE_TAG = "marvin:restore-role"  # marks Marvin's copies, so they are never taken for the DB
_BROKEN = {
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "restore-error",
    "storage-full",
    "inaccessible-encryption-credentials",
    "deleting",
}


@dataclass
class Database:
    name: str  # the short name, e.g. orders
    instance: dict[str, Any]  # describe_db_instances' entry for <environment>-<name>
    snapshot: dict[str, Any] = field(default_factory=dict)
    restored: str = ""
    previous: str = ""

    @property
    def id(self) -> str:
        return str(self.instance["DBInstanceIdentifier"])


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
        left = _delete_copies(ctx, rds, dbs)
        if isinstance(exc, Cancelled):
            ctx.reply(f"Stopped before any swap: {environment} still runs on its databases.{left}")
            raise
        raise ActionError(
            f"restore of {family} environment {environment} failed ({exc}). The environment "
            f"still runs on its own databases; nothing was swapped.{left}"
        ) from None
    _swap_all(_Shielded(ctx), rds, dbs, poll, timeout)
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
        _wait_available(
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


def _wait_available(ctx: Any, rds: Any, ident: str, what: str, poll: float, timeout: float) -> None:
    last = {"status": "starting"}

    def check() -> bool | None:
        try:
            inst = rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "DBInstanceNotFound":
                raise
            return None  # a rename is not visible under the new name at once
        status = last["status"] = inst["DBInstanceStatus"]
        if status == "available":
            return True
        if status in _BROKEN:
            raise ActionError(f"{what}: {ident} is {status}")
        ctx.progress(f"{what}: {status}")
        return None

    wait_until(ctx, check, every=poll, timeout=timeout, what=lambda: f"{what}: {last['status']}")


def _delete_copies(ctx: Any, rds: Any, dbs: list[Database]) -> str:
    """Delete every restored copy that exists; returns what could not be, for the reply."""
    left = []
    for db in dbs:
        try:
            rds.delete_db_instance(
                DBInstanceIdentifier=db.restored,
                SkipFinalSnapshot=True,
                DeleteAutomatedBackups=True,
            )
            ctx.log.info("deleted restored copy", instance=db.restored)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "DBInstanceNotFound":
                ctx.log.warning("could not delete restored copy", instance=db.restored)
                left.append(db.restored)
    return f" Left behind (delete by hand): {', '.join(left)}." if left else ""


class _Shielded:
    """The swap's context: progress as usual, but cancel does not cut a rename half-way."""

    def __init__(self, ctx: Any) -> None:
        self.ctx, self.services, self.log = ctx, ctx.services, ctx.log
        self.execution_id = ctx.execution_id

    def progress(self, text: str) -> None:
        self.ctx.progress(text)

    def check(self) -> None:
        pass

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _rename(ctx: Any, rds: Any, old: str, new: str, poll: float, timeout: float) -> None:
    rds.modify_db_instance(
        DBInstanceIdentifier=old, NewDBInstanceIdentifier=new, ApplyImmediately=True
    )
    _wait_available(ctx, rds, new, f"renaming {old} to {new}", poll, timeout)


def _swap_all(ctx: Any, rds: Any, dbs: list[Database], poll: float, timeout: float) -> None:
    touched: list[Database] = []
    for db in dbs:
        touched.append(db)
        try:
            _rename(ctx, rds, db.id, db.previous, poll, timeout)
            _rename(ctx, rds, db.restored, db.id, poll, timeout)
        except (ActionError, ClientError) as exc:
            reason = str(exc)
            ctx.log.error("swap failed; rolling back", database=db.id, reason=reason)
            left = _roll_back(ctx, rds, touched, poll, timeout)
            left += _delete_copies(ctx, rds, dbs)
            raise ActionError(
                f"swapping in the restored {db.id} failed ({reason}); every database was put "
                f"back, so the environment runs on its previous data.{left}"
            ) from None
    for db in dbs:  # only once all are swapped: a rollback must find the tags as they were
        _retag(rds, db)


def _roll_back(ctx: Any, rds: Any, dbs: list[Database], poll: float, timeout: float) -> str:
    """Undo the swaps made so far, newest first, from what RDS shows now."""
    left = []
    for db in reversed(dbs):
        try:
            if not _exists(rds, db.previous):
                continue  # the original was never renamed away
            if _exists(rds, db.id):  # the restored copy already took the name
                _rename(ctx, rds, db.id, db.restored, poll, timeout)
            _rename(ctx, rds, db.previous, db.id, poll, timeout)
        except (ActionError, ClientError) as exc:
            ctx.log.error("rollback failed", database=db.id, reason=str(exc))
            left.append(f"{db.previous} (rename it back to {db.id})")
    return f" Could not put back: {', '.join(left)}." if left else ""


def _exists(rds: Any, ident: str) -> bool:
    try:
        rds.describe_db_instances(DBInstanceIdentifier=ident)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            return False
        raise


def _retag(rds: Any, db: Database) -> None:
    """The restored copy is now the database; the old one is marked as Marvin's leftover."""
    arn = rds.describe_db_instances(DBInstanceIdentifier=db.id)["DBInstances"][0]["DBInstanceArn"]
    rds.remove_tags_from_resource(ResourceName=arn, TagKeys=[ROLE_TAG])
    prev = rds.describe_db_instances(DBInstanceIdentifier=db.previous)["DBInstances"][0]
    rds.add_tags_to_resource(
        ResourceName=prev["DBInstanceArn"], Tags=[{"Key": ROLE_TAG, "Value": "previous"}]
    )


def _when(snap: dict[str, Any]) -> str:
    created = snap.get("SnapshotCreateTime")
    return created.strftime("%Y-%m-%d %H:%M UTC") if created is not None else "at an unknown time"
