"""Built-in ``approve <execution>`` and ``reject <execution>``: answer a request awaiting
two-person approval in words (the console, the CLI's ``marvin approve``, or chat beside the
buttons). The rules (fresh identity, not the requester, approver groups, one vote each) are
``marvin.runtime.approvals``'s; here the execution answers where the approver asked."""

from __future__ import annotations

from marvin.builtins.help import ops
from marvin.core.params import EXECUTION_ID
from marvin.core.registry import command
from marvin.runtime.execution import Context

__all__ = ["approve_command", "reject_command", "HANDLERS"]


def _answer(ctx: Context, execution: str, approve: bool) -> str:
    here = ctx.message.responder
    result = ops(ctx).vote(execution, ctx.message, approve, lambda _origin: here)
    return result.text


@command(
    "marvin.approve",
    "approve {{ execution }}",
    description="Approve someone else's request that awaits your approval",
    examples=["approve ex-7f3a2c"],
    params={"execution": EXECUTION_ID},
    inline=True,
)
def approve_command(ctx: Context, execution: str) -> str:
    return _answer(ctx, execution, True)


@command(
    "marvin.reject",
    "reject {{ execution }}",
    description="Reject a request that awaits your approval; it will not run",
    examples=["reject ex-7f3a2c"],
    params={"execution": EXECUTION_ID},
    inline=True,
)
def reject_command(ctx: Context, execution: str) -> str:
    return _answer(ctx, execution, False)


HANDLERS = [approve_command, reject_command]
