"""Built-in ``undo <execution>``: put back what one execution changed, if nothing changed it since.

The mechanism is ``marvin.runtime.undo``. Here: find the execution's undo record and its
command's undo function, then dispatch a new execution of the *original* command's ref whose
handler runs the undo function. That execution goes through the whole pipeline as the undoer:
the same policy rule (with the original's parameters, so production stays production),
confirmation, MFA, lock, job pool and audit. The undo function itself compares and sets:
it restores the before-state only if the state is still the after-state.

Ids are not an oracle: someone who may not run the original command gets the same answer as
for an id that does not exist.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from marvin.actions import ActionError
from marvin.builtins.help import ops
from marvin.core.facade import Operations
from marvin.core.params import EXECUTION_ID
from marvin.core.registry import Command, command
from marvin.runtime.execution import Context
from marvin.runtime.statedb import state_target
from marvin.runtime.undo import UndoFunction, UndoLog, undo_function

__all__ = ["undo_command", "HANDLERS"]


@command(
    "marvin.undo",
    "undo {{ execution }}",
    description="Undo what one of your commands changed, if nothing changed it since",
    examples=["undo ex-7f3a2c"],
    params={"execution": EXECUTION_ID},
    inline=True,
)
def undo_command(ctx: Context, execution: str) -> str | None:
    app = ops(ctx)
    ex_id = execution.strip().lower()
    row = app.execution(ex_id)
    cmd = app.table.get(row["ref"]) if row else None
    params = {"undo_of": ex_id, **(row["params"] if row else {})}
    user, msg = ctx.user, ctx.message
    decision = app.decide(user, cmd, params) if cmd is not None else None
    if row is None or decision is None or not decision.allowed:
        if decision is not None and row is not None and row["user_id"] == user.id:
            return decision.reason  # their own execution: the real reason (e.g. CLI only)
        if row is not None:
            app.audit(
                "refused",
                msg,
                ctx.command.ref,
                execution_id=ex_id,
                detail="undo of an execution the requester may not run",
            )
        return f"I can't find `{ex_id}` among the executions you may undo."
    log = UndoLog.at(state_target(ctx.services.config))
    record = log.get(ex_id)
    undo = undo_function(cmd.handler)
    if undo is None:
        return f"`{ex_id}` ({cmd.ref}) can't be undone: `{cmd.ref}` has no undo."
    if row["state"] != "succeeded":
        return f"`{ex_id}` ({cmd.ref}) {row['state'].replace('_', ' ')}; there is nothing to undo."
    if record is None:
        return f"`{ex_id}` ({cmd.ref}) recorded nothing to undo (it changed nothing undoable)."
    if record.undone_by:
        return f"`{ex_id}` ({cmd.ref}) was already undone by `{record.undone_by}`."
    app.dispatch(msg, _undoer(cmd, ex_id, undo, log, app), params)
    return None  # the new execution answers in this thread (or the refusal was whispered)


def _undoer(cmd: Command, ex_id: str, undo: UndoFunction, log: UndoLog, app: Operations) -> Command:
    """``cmd`` with a handler that runs ``undo`` on ``ex_id``'s record: same ref, parameters,
    lock and flags, so policy and the job machinery treat it as that command."""

    def run(ctx: Context, **_params: Any) -> Any:
        record = log.get(ex_id)
        if record is None:
            raise ActionError(f"`{ex_id}` has no undo record any more")
        if not log.claim(ex_id, ctx.execution_id):
            raise ActionError(f"`{ex_id}` was already undone by `{record.undone_by}`")
        try:
            result = undo(ctx, record)
        except BaseException:
            log.release(ex_id, ctx.execution_id)
            raise
        msg = ctx.message
        app.audit("undone", msg, cmd.ref, execution_id=ex_id, detail=f"by {ctx.execution_id}")
        app.audit("undo", msg, cmd.ref, execution_id=ctx.execution_id, detail=f"of {ex_id}")
        return result

    spec = replace(cmd.spec, ack=f"Undoing `{ex_id}` ({cmd.ref})", result=None)
    return replace(cmd, spec=spec, handler=run)


HANDLERS = [undo_command]
