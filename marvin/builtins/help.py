"""Built-in commands: ``help`` and ``whoami``. They use the same ``@command`` as everyone."""

from __future__ import annotations

from marvin.core.facade import Operations
from marvin.core.help import detail, overview
from marvin.core.model import Reply
from marvin.core.registry import command
from marvin.runtime.execution import Context

__all__ = ["help_command", "whoami", "ops", "HANDLERS"]


@command(
    "marvin.help",
    "help( {{ topic }})?",
    description="List the commands you may run, or show one in full",
    examples=["help", "help platform", "help platform.create"],
    inline=True,
)
def help_command(ctx: Context, topic: str | None = None) -> Reply:
    # The table and policy are fixed once Marvin runs, so what one user (with these groups,
    # through this kind of channel) may see is rendered once, not for every `help`.
    user = ctx.user
    key = ("help", user.id, user.groups, user.via, (topic or "").strip().lower())
    return ops(ctx).remember(key, lambda: _render(ctx, topic))


def _render(ctx: Context, topic: str | None) -> Reply:
    app = ops(ctx)
    mine = [c for c in app.table if app.visible(ctx.user, c)]
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
    lines = [
        f"You are {user.email or 'unknown'} (user id `{user.id}`, "
        f"via {user.source}, {'an' if user.via == 'api' else 'a'} {user.via} channel)."
    ]
    lines.append("Groups: " + (", ".join(sorted(user.groups)) or "none"))
    lines.extend(ops(ctx).describe(user))
    return "\n".join(lines)


def ops(ctx: Context) -> Operations:
    """The application's operations, which the built-ins (all inline) are given."""
    if ctx.ops is None:
        raise RuntimeError("built-ins run inline, with the application's operations")
    return ctx.ops


HANDLERS = [help_command, whoami]
