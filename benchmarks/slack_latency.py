"""Slack front-end latency against the loopback fake Slack (tests/fakes/slack.py).

Both bots run as SUBPROCESSES (so they do not share the GIL with the fake): Marvin is the real
``python -m marvin --config <tmp> serve`` (Bolt App + ack-first Socket Mode handler, the
security chain's authorizer with users.info, the built-in ``help``); next to it, in the same
run, a bare Bolt app on the stock SocketModeHandler whose listener only echoes. For each: time
from an envelope written to the socket to its acknowledgement, and to the first
``chat.postMessage`` (for Marvin: the ``help`` reply), p50 and p99, over N events one at a time
and over a burst of B sent back to back.

    python benchmarks/slack_latency.py [--events 1000] [--burst 200]

Targets: ack p99 < 5 ms, first reply p99 < 20 ms. One ``name=value`` figure per line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slack_bolt import App  # noqa: E402
from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from tests.fakes.slack import FakeSlack  # noqa: E402

USER, EMAIL = "U0BENCH01", "alice@example.com"


def _config(tmp: Path) -> Path:
    (tmp / "commands").mkdir()
    (tmp / "commands" / "bench.py").write_text(
        "from marvin import command\n\n"
        "@command('bench.noop', 'noop', description='Does nothing', examples=['noop'])\n"
        "def noop(ctx):\n    return 'ok'\n"
    )
    (tmp / "rbac.yaml").write_text("rules:\n  - commands: ['bench.*']\n    everyone: true\n")
    (tmp / "directory.yaml").write_text(f"users:\n  {EMAIL}: {{groups: [ops]}}\n")
    cfg = tmp / "marvin.yaml"
    cfg.write_text(
        "commands: {paths: [commands], lint: 'off'}\n"
        f"vocabulary: {ROOT / 'config' / 'vocabulary.yaml'}\n"
        "state: {sqlite: state.sqlite3}\n"
        "security: {policy: rbac.yaml, directory: {backend: static, path: directory.yaml}}\n"
        "logging: {level: warning}\n"
    )
    return cfg


@contextmanager
def subprocess_bot(fake: FakeSlack, argv: list[str]) -> Iterator[None]:
    env = {**os.environ, **fake.env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        fake.wait_connected(timeout=20)
        yield
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"# {argv[-1]} exited {proc.returncode}: {err[-2000:]}", file=sys.stderr)


def echo_bot() -> int:
    """The bare Bolt app (run as a child): echo every mention in its thread."""
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(client=client)

    @app.event("app_mention")
    def echo(event: dict, say: Callable[..., object]) -> None:
        say(text=event["text"], thread_ts=event["ts"])

    logging.getLogger("slack_bolt").setLevel(logging.ERROR)
    SocketModeHandler(app, os.environ["SLACK_APP_TOKEN"]).start()
    return 0


def _measure(fake: FakeSlack, n: int, burst: bool) -> tuple[list[float], list[float]]:
    """Send n `help` mentions (one at a time, or all at once); ms to ack and to first reply."""
    since = len(fake.calls)
    events = [fake.app_mention("help", user=USER) for _ in range(n)]
    sent: list[str] = []
    for ev in events:
        sent.append(fake.send_event(ev))
        if not burst:
            fake.wait_ack(sent[-1], timeout=10)
            fake.wait_for("chat.postMessage", _in_thread(ev["ts"]), timeout=10, since=since)
    acks, replies = [], []
    for ev, env_id in zip(events, sent, strict=True):
        env = fake.wait_ack(env_id, timeout=30)
        call = fake.wait_for("chat.postMessage", _in_thread(ev["ts"]), timeout=30, since=since)
        assert env.sent_at is not None and env.acked_at is not None
        acks.append((env.acked_at - env.sent_at) * 1000)
        replies.append((call.received_at - env.sent_at) * 1000)
    assert not fake.errors, fake.errors
    return acks, replies


def _in_thread(ts: str) -> Callable[..., bool]:
    return lambda call: call.args.get("thread_ts") == ts


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def run(name: str, fake: FakeSlack, events: int, burst: int) -> None:
    fake.wait_connected(timeout=10)
    _measure(fake, 20, burst=False)  # warm-up: imports, caches (users.info), the first session
    for mode, n, is_burst in (("seq", events, False), ("burst", burst, True)):
        acks, replies = _measure(fake, n, is_burst)
        for label, values in (("ack", acks), ("reply", replies)):
            for p in (50, 99):
                print(f"{name}_{mode}_{label}_p{p}_ms={_pct(values, p):.2f}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--burst", type=int, default=200)
    p.add_argument("--echo-bot", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo_bot:
        return echo_bot()
    print(f"# subprocess bots; {args.events} sequential events, then a burst of {args.burst}")
    with FakeSlack.start() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.add_user(USER, email=EMAIL)
        argv = [sys.executable, "-m", "marvin", "--config", str(_config(Path(tmp))), "serve"]
        with subprocess_bot(fake, argv):
            run("marvin", fake, args.events, args.burst)
    with FakeSlack.start() as fake:
        with subprocess_bot(fake, [sys.executable, __file__, "--echo-bot"]):
            run("bolt_echo", fake, args.events, args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
