"""RDS pieces of an all-or-nothing restore: wait for an instance, rename-swap a restored
copy in, put everything back if a swap fails, delete copies (see ``marvin.actions.restore``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until

__all__ = ["ROLE_TAG", "Database", "wait_available", "delete_copies", "Shielded", "swap_all"]

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


def wait_available(ctx: Any, rds: Any, ident: str, what: str, poll: float, timeout: float) -> None:
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


def delete_copies(ctx: Any, rds: Any, dbs: list[Database]) -> str:
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


class Shielded:
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
    wait_available(ctx, rds, new, f"renaming {old} to {new}", poll, timeout)


def swap_all(ctx: Any, rds: Any, dbs: list[Database], poll: float, timeout: float) -> None:
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
            left += delete_copies(ctx, rds, dbs)
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
