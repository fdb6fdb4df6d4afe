from marvin import command


@command("example.greet", "welcome {{ name }}", description="Welcome", examples=["welcome Bob"])
def welcome(ctx, name: str) -> str:
    return f"Welcome, {name}"
