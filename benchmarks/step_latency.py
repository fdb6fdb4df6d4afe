"""Step latency: how long after a step finishes does Marvin notice it?

A loopback backend in this script runs a 3-step flow (2 s, 5 s and 20 s steps, as a Jenkins
queue -> build -> deploy or a stack's phases would). A real Marvin (``marvin.testing.make_bot``:
the pipeline, the job pool, the real ``ctx``) runs one command that starts each step over HTTP
and follows it with the action library's ``wait_until``; the next step starts as soon as the
previous one is noticed. The backend records when each step really finished; the command
records when it noticed. Two polling schedules are measured:

* ``backoff``: what Marvin does now, 1 s growing 1.5x to a 10 s cap (``poll_seconds: 10``);
* ``doubling``: 1 s doubling to the same cap, for comparison;
* ``fixed 5 s`` and ``fixed 10 s``: the old fixed periods (CloudFormation's 5 s, AWS's 10 s).

A fixed period's lag depends on where a step ends between two polls: 5 s and 20 s steps end
exactly on a fixed 5 s poll, its best case (try ``--steps 2.5,5.5,20.5``).

Prints one figure per line::

    python benchmarks/step_latency.py            # ~2.5 min
    python benchmarks/step_latency.py --steps 0.5,1,3 --cap 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from marvin import Integer, command
from marvin.actions import wait_until
from marvin.logs import setup_logging
from marvin.testing import make_bot

STEPS: list[float] = []
SCHEDULE: dict[str, float] = {}
BACKEND = ""
NOTICED: list[float] = []


class Flow:
    """Steps started by POST /step/<i>, done ``STEPS[i]`` seconds later."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.lock = threading.Lock()

    def finished_at(self, i: int) -> float:
        return self.started[i] + STEPS[i]


FLOW = Flow()


class Backend(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        i = int(self.path.rsplit("/", 1)[-1])
        with FLOW.lock:
            FLOW.started[i] = time.monotonic()
        self._send({"started": True})

    def do_GET(self) -> None:  # noqa: N802
        i = int(self.path.rsplit("/", 1)[-1])
        with FLOW.lock:
            done = time.monotonic() >= FLOW.finished_at(i)
        self._send({"done": done})

    def _send(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _call(method: str, i: int) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{BACKEND}/step/{i}", method=method, data=b"" if method == "POST" else None
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@command("bench.flow", "run flow {{ steps }}", description="A flow of steps on the backend",
         examples=["run flow 3"], params={"steps": Integer(min=1, max=9)}, timeout=600)  # fmt: skip
def flow(ctx: Any, steps: int) -> str:
    for i in range(steps):
        _call("POST", i)
        wait_until(
            ctx,
            lambda i=i: True if _call("GET", i)["done"] else None,
            every=SCHEDULE["cap"],
            first=SCHEDULE["first"],
            growth=SCHEDULE["growth"],
            timeout=300,
            what=lambda: "step still running",
        )
        NOTICED.append(time.monotonic())
    return "flow done"


def measure(name: str, first: float, cap: float, growth: float, state: Path) -> None:
    SCHEDULE.update(first=first, cap=cap, growth=growth)
    NOTICED.clear()
    FLOW.started.clear()
    bot = make_bot([flow], state_dir=state)
    start = time.monotonic()
    replies = bot.send(f"run flow {len(STEPS)}", timeout=600)
    total = time.monotonic() - start
    bot.app.shutdown(timeout=5)
    assert "flow done" in replies.text, replies.text
    lags = [NOTICED[i] - FLOW.finished_at(i) for i in range(len(STEPS))]
    per_step = ", ".join(f"{s:g} s step {lag:.2f} s" for s, lag in zip(STEPS, lags, strict=True))
    print(f"{name}: lag per step: {per_step}")
    print(f"{name}: mean lag per step: {sum(lags) / len(lags):.2f} s")
    work = sum(STEPS)
    print(
        f"{name}: total {total:.2f} s for {work:g} s of steps: "
        f"overhead {total - work:.2f} s ({(total - work) / work:.0%})"
    )


def main() -> None:
    global BACKEND
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="2,5,20", help="step seconds, comma-separated")
    parser.add_argument("--cap", type=float, default=10.0, help="poll cap (poll_seconds)")
    parser.add_argument("--fixed", default="5,10", help="old fixed periods, comma-separated")
    args = parser.parse_args()
    STEPS[:] = [float(s) for s in args.steps.split(",")]
    setup_logging(json=False, level="warning")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    BACKEND = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        cap = args.cap
        measure(f"backoff (1 s x1.5 to {cap:g} s)", 1.0, cap, 1.5, Path(tmp) / "a")
        measure(f"doubling (1 s x2 to {cap:g} s)", 1.0, cap, 2.0, Path(tmp) / "b")
        for period in (float(p) for p in args.fixed.split(",") if p):
            measure(f"fixed {period:g} s", period, period, 1.0, Path(tmp) / f"f{period:g}")
    server.shutdown()


if __name__ == "__main__":
    main()
