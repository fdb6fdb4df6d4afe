from marvin import command


@command("echo.greet", "greet {{ who }}", description="Echo a greeting", examples=["greet Bob"])
def greet(ctx, who: str) -> str:
    return f"echo {who}"
