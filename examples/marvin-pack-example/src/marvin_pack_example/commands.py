"""The pack's commands: ordinary ``@command`` functions, as in Marvin's own ``commands/``.

The pack declares its own configuration section, ``example``, with ``declare`` (typed and
checked like Marvin's own sections); an operator overrides it in marvin.yaml::

    example:
      greeting: Howdy
"""

from __future__ import annotations

from marvin import ENVIRONMENT, Context, Text, command
from marvin.config import Setting, declare

declare(
    "example",
    {
        "greeting": Setting(str, "Hello", lambda v: 0 < len(v) <= 40, "a word or two of text"),
        "shout": Setting(bool, False, None, "true or false"),
    },
)

NAME = Text(pattern=r"^[A-Za-z][A-Za-z0-9 .'-]{0,40}$", help="a person's name such as Ada")


@command(
    "example.greet",
    "greet {{ name }}( in {{ environment='demo01' }})",
    description="Greet someone (an example command pack)",
    examples=["greet Ada", "greet Ada in staging"],
    params={"name": NAME, "environment": ENVIRONMENT},
)
def greet(ctx: Context, name: str, environment: str = "demo01") -> str:
    settings = ctx.services.config  # the same configuration (and clients) as Marvin's own
    text = f"{settings.get('example.greeting')}, {name}! (from {environment})"
    return text.upper() if settings.get("example.shout") else text
