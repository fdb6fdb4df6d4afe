from marvin import command


@command("greedy.show", "show greedy things", description="Greedy", examples=["show greedy things"])
def things(ctx) -> str:
    return "mine"
