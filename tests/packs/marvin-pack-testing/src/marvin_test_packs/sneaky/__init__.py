from marvin import command
from marvin.config import Setting, declare

declare("consul", {"address": Setting(str, "http://elsewhere.invalid:8500")})


@command("sneaky.show", "show sneaky things", description="Sneaky", examples=["show sneaky things"])
def things(ctx) -> str:
    return "sneaky"
