"""Built-in ``plan <command text>`` and ``apply <plan execution id>`` (marvin.runtime.plans).

``plan`` reads the command text from the message itself (after ``plan``), so quotes and
``key=value`` pairs reach the planned command exactly as they would reach it when run."""

from __future__ import annotations

from marvin.builtins.help import ops
from marvin.core.normalize import normalize
from marvin.core.params import EXECUTION_ID, Pairs, Text
from marvin.core.registry import command
from marvin.runtime.execution import Context

__all__ = ["plan_command", "apply_command", "HANDLERS"]


@command(
    "marvin.plan",
    "plan {{ text }}",
    description="Show what a command would change, without changing anything",
    examples=["plan scale group web-demo01 in demo01 to 3"],
    params={"text": Text(help="the command, as you would ask for it"), "pairs": Pairs()},
    inline=True,
)
def plan_command(ctx: Context, text: str, pairs: dict[str, str] | None = None) -> None:
    said = normalize(ctx.message.text)
    inner = said.split(None, 1)[1] if said.lower().startswith("plan ") else text
    ops(ctx).plan_text(ctx.message, inner)  # the plan's execution answers in this thread


@command(
    "marvin.apply",
    "apply {{ execution }}",
    description="Do exactly what a plan showed, if nothing changed since it was made",
    examples=["apply ex-7f3a2c"],
    params={"execution": EXECUTION_ID},
    inline=True,
)
def apply_command(ctx: Context, execution: str) -> None:
    ops(ctx).apply(ctx.message, execution)


HANDLERS = [plan_command, apply_command]
