"""Built-in commands ``jobs`` and ``cancel``: what is running, and stopping it.

Both are ``inline``: they answer on the intake thread at once, however full the job pool is.
"""

from __future__ import annotations

import time

from marvin.builtins.help import ops
from marvin.core.model import Private
from marvin.core.params import EXECUTION_ID
from marvin.core.registry import command
from marvin.core.text import age_text
from marvin.runtime.execution import Context

__all__ = ["jobs_command", "cancel_command", "HANDLERS"]

_MAX_LINES = 40  # keep the answer within one Slack message


@command(
    "marvin.jobs",
    "jobs",
    description="List the commands queued and running, with who asked, age and progress",
    examples=["jobs"],
    inline=True,
)
def jobs_command(ctx: Context) -> str:
    live = ops(ctx).live()
    if not live:
        return "Nothing is running or queued."
    now = time.time()
    lines = [f"{len(live)} queued or running:"]
    for job in live[:_MAX_LINES]:
        shown = ", ".join(f"{k}={v}" for k, v in job.shown.items() if v is not None)
        what = f"`{job.execution_id}` {job.ref}" + (f" ({shown})" if shown else "")
        if job.state == "running":
            status = f"running for {age_text(now - (job.started or job.created))}"
        elif job.state == "waiting" and job.lock is not None:
            held = f" (held by `{job.lock_holder}`)" if job.lock_holder else ""
            status = f"waiting {age_text(now - job.created)} for {job.lock}{held}"
        elif job.state == "abandoned":
            status = "timed out and abandoned, may still be running"
        elif job.state == "awaiting_approval":  # job.progress says from whom
            status = f"awaiting approval for {age_text(now - job.created)}"
        else:
            status = f"queued for {age_text(now - job.created)}"
        if job.stopping and job.state == "running":
            status += ", stopping"
        line = f"• {what} — {job.requester}, {status}"
        if job.progress:
            line += f" — {job.progress}"
        lines.append(line)
    if len(live) > _MAX_LINES:
        lines.append(f"…and {len(live) - _MAX_LINES} more.")
    return "\n".join(lines)


@command(
    "marvin.cancel",
    "cancel {{ execution }}",
    description="Cancel a queued or running command (yours, or anyone's for the ops groups)",
    examples=["cancel ex-7f3a2c"],
    params={"execution": EXECUTION_ID},
    inline=True,
)
def cancel_command(ctx: Context, execution: str) -> str:
    outcome = ops(ctx).request_cancel(execution, ctx.user)
    # A refusal (not yours, or no such execution) is for the asker alone.
    return Private(outcome.message) if outcome.refused else outcome.message


HANDLERS = [jobs_command, cancel_command]
