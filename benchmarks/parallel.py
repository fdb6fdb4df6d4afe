"""Parallel branches (marvin.actions.parallel): what a fork costs and how fast a stop spreads.

Branches wait in ``ctx.sleep`` the way the actions' waits do, on a real execution Context.
Prints, one per line:
- the wall time of 8 branches of 0.2 s each (0.2 s when they really overlap, 1.6 s if not),
  and the helper's overhead above the longest branch;
- cancel latency: from ``cancel`` to every one of 8 waiting branches stopped and joined
  (median and worst of 20 runs);
- failure latency: from one branch failing to the 7 others stopped and joined (same).
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from marvin import Cancelled  # noqa: E402
from marvin.actions import ActionError  # noqa: E402
from marvin.actions.parallel import ParallelFailed, run_parallel  # noqa: E402
from marvin.core.model import Message, User  # noqa: E402
from marvin.runtime.execution import Context  # noqa: E402

BRANCHES, RUNS = 8, 20


class Quiet:
    def say(self, text: object) -> None: ...
    def whisper(self, text: str) -> None: ...
    def progress(self, text: str) -> None: ...
    def react(self, state: str) -> None: ...


def context() -> Context:
    msg = Message(text="bench", user=User(id="U1", email="b@example.com"), responder=Quiet())
    return Context(
        execution_id="ex-bench1",
        command=SimpleNamespace(ref="bench.parallel"),
        params={},
        message=msg,
        services=SimpleNamespace(config=None),
    )


def waiting(bctx) -> None:  # noqa: ANN001
    while True:
        bctx.progress("waiting")
        bctx.sleep(1.0)  # a long poll interval: only the stop can end it quickly


def overlap() -> tuple[float, float]:
    def branch(bctx) -> None:  # noqa: ANN001
        bctx.sleep(0.2)

    started = time.perf_counter()
    run_parallel(context(), {f"b{i}": branch for i in range(BRANCHES)})
    wall = time.perf_counter() - started
    return wall, wall - 0.2


def cancel_latency() -> float:
    ctx = context()
    stopped_at: list[float] = []

    def cancel_soon() -> None:
        time.sleep(0.05)
        stopped_at.append(time.perf_counter())
        ctx.cancel_event.set()

    threading.Thread(target=cancel_soon).start()
    try:
        run_parallel(ctx, {f"b{i}": waiting for i in range(BRANCHES)})
    except Cancelled:
        return time.perf_counter() - stopped_at[0]
    raise AssertionError("not cancelled")


def failure_latency() -> float:
    failed_at: list[float] = []

    def failing(bctx) -> None:  # noqa: ANN001
        bctx.sleep(0.05)
        failed_at.append(time.perf_counter())
        raise ActionError("boom")

    branches = {f"b{i}": waiting for i in range(BRANCHES - 1)}
    branches["bad"] = failing
    try:
        run_parallel(context(), branches)
    except ParallelFailed:
        return time.perf_counter() - failed_at[0]
    raise AssertionError("did not fail")


def main() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    wall, overhead = overlap()
    print(
        f"{BRANCHES} branches of 0.2 s: {wall * 1000:.0f} ms wall, "
        f"{overhead * 1000:.1f} ms overhead"
    )
    for name, fn in (("cancel", cancel_latency), ("failure", failure_latency)):
        samples = [fn() * 1000 for _ in range(RUNS)]
        print(
            f"{name} to all {BRANCHES} branches joined: "
            f"median {statistics.median(samples):.1f} ms, worst {max(samples):.1f} ms"
        )


if __name__ == "__main__":
    main()
