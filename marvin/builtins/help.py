"""Built-in commands: ``help`` and ``whoami``. They use the same ``@command`` as everyone."""

from __future__ import annotations

from marvin.core.help import detail, overview
from marvin.core.model import Reply
from marvin.core.registry import command
from marvin.runtime.execution import Context

__all__ = ["help_command", "whoami", "HANDLERS"]


@command(
    "marvin.help",
    "help( {{ topic }})?",
    description="List the commands you may run, or show one in full",
    examples=["help", "help platform", "help platform.create"],
    inline=True,
)
def help_command(ctx: Context, topic: str | None = None) -> Reply:
    app = ctx.app
    mine = [c for c in app.table if app.authorizer.visible(ctx.user, c)]
    if topic:
        cmd = app.table.get(topic.strip())
        if cmd is not None and cmd in mine:
            return detail(cmd)
    return overview(mine, topic.strip() if topic else None)


@command(
    "marvin.whoami",
    "whoami",
    description="Show who Marvin thinks you are",
    examples=["whoami"],
    inline=True,
)
def whoami(ctx: Context) -> str:
    user = ctx.user  # already identified by the authoriser before any command runs
    lines = [f"You are {user.email or 'unknown'} (user id `{user.id}`, via {user.source})."]
    lines.append("Groups: " + (", ".join(sorted(user.groups)) or "none"))
    describe = getattr(ctx.app.authorizer, "describe", None)
    if describe is not None:
        lines.extend(describe(user))
    return "\n".join(lines)


HANDLERS = [help_command, whoami]
