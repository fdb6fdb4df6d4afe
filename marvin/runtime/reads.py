"""The reads behind the built-ins (``jobs``, ``history``) and who a user is for an audit row
outside a message; ``Marvin`` delegates here so the request pipeline stays apart from them."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import structlog

from marvin.core.authz import FrontEnds, Refused
from marvin.core.model import JobView, User
from marvin.runtime.parts import Runtime

__all__ = ["live", "history", "resolved"]

log = structlog.get_logger("marvin")


def live(rt: Runtime, awaiting: list[JobView]) -> list[JobView]:
    """``awaiting`` (requests held for approval), then every process's queued and running
    jobs from the store's running-job table."""
    return awaiting + [
        JobView(
            execution_id=row["execution_id"],
            ref=row["ref"],
            shown=row["shown"],
            requester=row["requester"],
            state=row["state"],
            created=row["created_at"],
            started=row["started_at"],
            lock=row["lock"],
            lock_holder=row.get("lock_holder"),
            stopping=row["cancel_by"] is not None or _stopping(rt, row["execution_id"]),
            progress=row["progress"],
        )
        for row in rt.jobs.running.live()
    ]


def _stopping(rt: Runtime, execution_id: str) -> bool:
    job = rt.jobs.get(execution_id)
    return job is not None and job.cancel_event.is_set()


def history(rt: Runtime, user_id: str | None, limit: int) -> list[dict[str, Any]]:
    """Executions and refused requests (which never became one), newest first."""
    rows = rt.store.recent(user_id, limit)
    for a in rt.store.refusals(user_id, limit):
        params = json.loads(a["params"]) if a["params"] else {}
        rows.append(
            {
                "id": None,
                "ref": a["ref"] or "-",
                "params": params,
                "state": "refused",
                "reason": a["detail"],
                "created_at": a["ts"],
                "email": a["email"],
                "user_id": a["user_id"],
            }  # fmt: skip
        )
    rows.sort(key=lambda r: r["created_at"], reverse=True)
    return rows[:limit]


def resolved(frontends: FrontEnds, user: User) -> User:
    """``user`` as far as their front end can tell (for an audit row written regardless)."""
    try:
        return frontends.resolve(user)
    except Refused as exc:
        return replace(user, email=user.email or exc.email)
    except Exception:
        log.warning("could not resolve a user for the audit", user=user.id, exc_info=True)
        return user
