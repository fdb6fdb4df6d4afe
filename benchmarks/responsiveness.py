"""Responsiveness under load: 100 long jobs running, ``help`` must still answer at once.

100 users each start a command that waits on a slow loopback HTTP backend (a threaded server
in this script whose handler sleeps ``--backend-seconds``, 5 s by default). The job pool is
raised to 128 workers so all 100 run at the same time (none is queued). While they run, another
user sends ``help`` 200 times, one every 10 ms without waiting for answers (open loop), through
``Marvin.handle`` like a front end does. Prints one figure per line::

    python benchmarks/responsiveness.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from marvin import command
from marvin.bootstrap import build_table
from marvin.core.authz import FrontEnd, LocalAuthorizer
from marvin.core.model import Message, Reply, User
from marvin.logs import setup_logging
from marvin.runtime.app import Marvin
from marvin.runtime.jobs import JobSettings
from marvin.runtime.store import Store

BACKEND_URL = ""
BACKEND_SECONDS = 5.0


class SlowBackend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's naming
        time.sleep(BACKEND_SECONDS)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@command("bench.fetch", "fetch report", description="Wait on the slow backend",
         examples=["fetch report"], timeout=120)  # fmt: skip
def fetch(ctx: Any) -> str:
    with urllib.request.urlopen(BACKEND_URL, timeout=60) as resp:
        return resp.read().decode()


class Timed:
    """A responder that records when the first answer arrives."""

    def __init__(self) -> None:
        self.sent = time.perf_counter()
        self.answered: float | None = None
        self.done = threading.Event()

    def say(self, reply: str | Reply) -> None:
        if self.answered is None:
            self.answered = time.perf_counter()
        self.done.set()

    whisper = say

    def progress(self, text: str) -> None:
        pass

    def react(self, state: str) -> None:
        pass


# The benchmark's own front end: it names its users itself (as a test harness does).
BENCH = FrontEnd("bench", "cli", lambda user: user)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    global BACKEND_URL, BACKEND_SECONDS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--helps", type=int, default=200)
    ap.add_argument("--backend-seconds", type=float, default=5.0)
    args = ap.parse_args()
    BACKEND_SECONDS = args.backend_seconds
    setup_logging(json=False, level="warning")

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowBackend)
    server.daemon_threads = True
    server.request_queue_size = 256
    threading.Thread(target=server.serve_forever, daemon=True).start()
    BACKEND_URL = f"http://127.0.0.1:{server.server_address[1]}/report"

    tmp = tempfile.TemporaryDirectory()
    app = Marvin(
        build_table([fetch]),
        store=Store(Path(tmp.name) / "bench.sqlite"),
        authorizer=LocalAuthorizer(),
        frontends=[BENCH],
        settings=JobSettings(workers=128, queue=256, per_user=4),
    )
    longs = [Timed() for _ in range(args.jobs)]
    for n, responder in enumerate(longs):
        user = User(id=f"U{n:03}", email=f"user{n}@example.com", source="bench")
        app.handle(Message(text="fetch report", user=user, responder=responder))
    deadline = time.monotonic() + 10
    while app.pool.running < args.jobs:
        assert time.monotonic() < deadline, f"only {app.pool.running} jobs started"
        time.sleep(0.01)

    asker = User(id="U-help", email="helper@example.com", source="bench")
    helps = []
    for _ in range(args.helps):
        timed = Timed()
        helps.append(timed)
        app.handle(Message(text="help", user=asker, responder=timed))
        time.sleep(0.01)
    for timed in helps:
        assert timed.done.wait(10), "a help request was never answered"
    still_running = app.pool.running
    rss, threads = rss_mb(), threading.active_count()
    latencies = [(t.answered - t.sent) * 1000 for t in helps if t.answered is not None]

    for timed in longs:
        timed.done.wait(60)
    states = [r["state"] for r in app.store.recent(limit=10 * args.jobs)]
    print(f"workers={app.settings.workers}")
    print(f"long_jobs={args.jobs}")
    print(f"long_jobs_running_during_help={still_running}")
    print(f"backend_seconds={args.backend_seconds:g}")
    print(f"help_requests={len(latencies)}")
    print(f"help_p50_ms={statistics.median(latencies):.2f}")
    print(f"help_p99_ms={percentile(latencies, 0.99):.2f}")
    print(f"help_max_ms={max(latencies):.2f}")
    print(f"rss_mb={rss:.1f}")
    print(f"threads_during_load={threads}")
    print(f"long_jobs_succeeded={states.count('succeeded')}")
    app.shutdown(timeout=5)
    server.shutdown()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
