"""Reads a team value from Consul through Marvin's configured client (ctx.services.consul)
and the shared action library; its section's defaults come from config.yaml."""

from marvin import ENVIRONMENT, Text, command
from marvin.actions.consul import ConsulError


@command(
    "kv.show",
    "show team value {{ key }} in {{ environment }}",
    description="Show a team value from Consul",
    examples=["show team value motd in demo01"],
    params={"key": Text(pattern=r"^[a-z][a-z0-9_-]{0,40}$"), "environment": ENVIRONMENT},
)
def show(ctx, key: str, environment: str) -> str:
    path = f"{environment}/{ctx.services.config.get('kv.prefix')}/{key}"
    try:
        entry = ctx.services.consul.get(path)
    except ConsulError as exc:
        return f"Consul: {exc}"
    return f"{path} = {entry.value.decode() if entry else '(not set)'}"
