"""Built-ins ``history [N] [all]`` and ``status <execution id>``: the audit trail in chat.

"Yours" means executions started under your user id (your Slack id in Slack, ``local:<email>``
in the console and CLI). Members of ``security.auditors_group`` may add ``all`` to ``history``
and may see anyone's ``status``; those reads of other people's records are audited too.
Parameters are shown as stored, i.e. with secret ones already redacted.
"""

from __future__ import annotations

import time
from typing import Any

from marvin.builtins.help import ops
from marvin.core.model import Private, User
from marvin.core.params import EXECUTION_ID, Choice, Text
from marvin.core.registry import command
from marvin.core.text import age_text
from marvin.runtime.execution import Context

__all__ = ["history_command", "status_command", "HANDLERS"]

DEFAULT_LIMIT = 10
MAX_LIMIT = 100  # one Slack message
LIMIT = Text(pattern=r"^(?i:\d{1,4}|all|mine)$", help="how many, e.g. 20")
SCOPE = Choice(choices=("all", "mine"), help="all: everyone's (auditors only)")


def _is_auditor(ctx: Context, user: User) -> bool:
    return ops(ctx).is_auditor(user)


def _audit(ctx: Context, event: str, detail: str, execution_id: str | None = None) -> None:
    ops(ctx).audit(event, ctx.message, ctx.command.ref, detail=detail, execution_id=execution_id)


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f"{stamp} ({age_text(now - ts)} ago)"


def _params(params: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)
    return f" ({shown})" if shown else ""


@command(
    "marvin.history",
    "history( {{ limit }})?( {{ scope }})?",
    description="Your recent commands (auditors: add `all` for everyone's)",
    examples=["history", "history 20", "history 20 all"],
    params={"limit": LIMIT, "scope": SCOPE},
    inline=True,
)
def history_command(ctx: Context, limit: str | None = None, scope: str | None = None) -> str:
    if limit is not None and limit.lower() in ("all", "mine"):
        limit, scope = None, limit.lower()
    if limit is not None and int(limit) == 0:
        return Private(f"`history N` lists your last N commands; N is 1 to {MAX_LIMIT}.")
    count = min(MAX_LIMIT, int(limit)) if limit else DEFAULT_LIMIT
    everyone = scope == "all"
    if everyone and not _is_auditor(ctx, ctx.user):
        _audit(ctx, "refused", "history all: not an auditor")
        return "Only auditors can see everyone's history; here is yours.\n" + _history(
            ctx, count, False
        )
    if everyone:
        _audit(ctx, "audit_read", f"history {count} all")
    return _history(ctx, count, everyone)


def _history(ctx: Context, count: int, everyone: bool) -> str:
    rows = ops(ctx).history(None if everyone else ctx.user.id, count)
    if not rows:
        return "No commands yet." if everyone else "You haven't run any commands yet."
    now = time.time()
    title = f"Last {len(rows)} command(s)" + (" by anyone:" if everyone else " you ran:")
    lines = [title]
    for row in rows:
        who = f" — {row['email'] or row['user_id']}" if everyone else ""
        what = f"`{row['id']}` {row['ref']}" if row["id"] else f"{row['ref']} (not run)"
        lines.append(
            f"• {what}{_params(row['params'])} — {row['state']}, "
            f"{_when(row['created_at'], now)}{who}"
        )
    return "\n".join(lines)


@command(
    "marvin.status",
    "status {{ execution }}",
    description="One of your executions in full, with its audit trail",
    examples=["status ex-7f3a2c"],
    params={"execution": EXECUTION_ID},
    inline=True,
)
def status_command(ctx: Context, execution: str) -> str:
    ex_id = execution.strip().lower()
    row = ops(ctx).execution(ex_id)
    own = row is not None and row["user_id"] == ctx.user.id
    if row is None or not (own or _is_auditor(ctx, ctx.user)):
        # The same answer for "no such id" and "not yours": ids are not an oracle.
        if row is not None:
            _audit(ctx, "refused", "status of another user's execution", ex_id)
        return f"I can't find `{ex_id}` among your executions. Say `history` to list them."
    if not own:
        _audit(ctx, "audit_read", f"status {ex_id}", ex_id)
    now = time.time()
    lines = [
        f"`{row['id']}` {row['ref']}{_params(row['params'])}: *{row['state']}*",
        f"Requested by {row['email'] or '?'} (`{row['user_id']}`) via {row['source']}"
        + (f" in {row['channel']}" if row.get("channel") else ""),
        f"Created {_when(row['created_at'], now)}",
    ]
    if row.get("started_at"):
        lines.append(f"Started {_when(row['started_at'], now)}")
    if row.get("finished_at"):
        took = row["finished_at"] - (row.get("started_at") or row["created_at"])
        if row["state"] == "interrupted":  # recorded at a restart: its end is its last sign
            lines.append(f"Last seen {_when(row['finished_at'], now)}, after {took:.1f} s")
        else:
            lines.append(f"Finished {_when(row['finished_at'], now)}, after {took:.1f} s")
    if row.get("reason"):
        lines.append(f"Reason: {row['reason']}")
    trail = ops(ctx).audit_trail(ex_id)
    if trail:
        lines.append("Audit trail:")
        for a in trail:
            stamp = time.strftime("%H:%M:%S", time.gmtime(a["ts"]))
            detail = f": {a['detail']}" if a.get("detail") else ""
            lines.append(f"  {stamp} {a['event']} by {a['email'] or a['user_id']}{detail}")
    return "\n".join(lines)


HANDLERS = [history_command, status_command]
