"""Dispatch speed: microseconds per message at 150 and 1,500 commands.

Generates command tables in a realistic alias language (verbs x families x objects, optional
groups, defaults), then matches 10,000 messages (about 70% matching, 30% not) through the real
normaliser and matcher, as the Slack front end does. Prints one figure per line.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from marvin.core.matcher import Matcher  # noqa: E402
from marvin.core.normalize import normalize  # noqa: E402
from marvin.core.registry import CommandTable, command  # noqa: E402

VERBS = [
    "create",
    "restore",
    "destroy",
    "snapshot",
    "scale",
    "restart",
    "deploy",
    "pause",
    "resume",
    "enable",
    "disable",
    "show",
    "list",
    "get",
    "set",
]
OBJECTS = [
    "environment",
    "database",
    "group",
    "service",
    "cache",
    "queue",
    "worker",
    "flag",
    "job",
    "bucket",
]


def make_table(n: int) -> tuple[CommandTable, list[str]]:
    families = [f"fam{i}" for i in range(n // (len(VERBS) * len(OBJECTS)) + 1)]
    handlers, examples = [], []
    for family in families:
        for verb in VERBS:
            for obj in OBJECTS:
                if len(handlers) >= n:
                    break
                fmt = (
                    f"{verb} {family} {obj} named {{{{ name }}}}( with size {{{{ size }}}})?"
                    f"( in region {{{{ region='us-east-1' }}}})"
                )
                ex = f"{verb} {family} {obj} named demo01"

                def handler(ctx, name, size=None, region="us-east-1"):
                    return None

                handler.__module__ = "bench"
                command(f"{family}.{verb}_{obj}", fmt, description="bench", examples=[ex])(handler)
                handlers.append(handler)
                examples.append(ex)
    return CommandTable.build(handlers), examples


def messages(rng: random.Random, table_examples: list[str], count: int) -> list[str]:
    out = []
    for _ in range(count):
        r = rng.random()
        ex = rng.choice(table_examples)
        if r < 0.4:
            out.append(f"<@U0BOT> {ex}")
        elif r < 0.7:
            out.append(f"{ex} with size large in region eu-west-1")
        elif r < 0.85:
            out.append(ex.replace("named", "called"))  # near miss: unknown
        else:
            out.append("what is the meaning of life, the universe and everything")
    return out


def bench(n: int, count: int = 10_000) -> float:
    table, examples = make_table(n)
    matcher = Matcher(table)
    msgs = messages(random.Random(n), examples, count)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for text in msgs:
            matcher.match(normalize(text))
        runs.append((time.perf_counter() - t0) / count * 1e6)
    return statistics.median(runs)


if __name__ == "__main__":
    for size in (150, 1500):
        print(f"dispatch_us_per_message_{size}_commands={bench(size):.1f}")
