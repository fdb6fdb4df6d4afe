"""``python -m tests.fakes.slack``: the fake Slack as a process of its own, for benchmarks
(which must not import the tests' helpers). It prints one JSON line with what a bot needs
(``env``: SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_API_URL; ``team_id``), then answers one JSON
command per stdin line with one JSON line, and stops at end of input:

* ``{"op": "add_user", "id": "U0X", "email": "x@example.com"}``
* ``{"op": "wait_connected", "timeout": 20}``
* ``{"op": "measure", "text": "help", "user": "U0X", "n": 200, "burst": true}``: send ``n``
  mentions (one at a time; or all at once, back to back on the wire; or, with
  ``"interval": 0.002``, one every 2 ms on the fake's clock) and answer the milliseconds
  from each envelope written to its acknowledgement (``acks``) and to the first
  ``chat.postMessage`` in its thread (``replies``), as the fake's own clock saw them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tests.fakes.slack import FakeSlack

__all__ = ["main"]


def measure(
    fake: FakeSlack, text: str, user: str, n: int, burst: bool, interval: float = 0.0
) -> dict[str, Any]:
    since = len(fake.calls)
    events = [fake.app_mention(text, user=user) for _ in range(n)]
    sent: list[str] = []
    seen = _Replies(fake, since)
    if burst:
        sent = fake.send_events(events, interval)  # one burst on the wire (or a steady stream)
    else:
        for ev in events:
            sent.append(fake.send_event(ev))
            fake.wait_ack(sent[-1], timeout=10)
            seen.wait({ev["ts"]}, timeout=10)
    # A burst is collected by polling, not by waking on every call and ack: the measuring
    # thread must not compete with the fake's own work while the replies are arriving.
    replied = seen.wait({ev["ts"] for ev in events}, timeout=30, poll=0.005)
    acks, replies, times = [], [], []
    for ev, env_id in zip(events, sent, strict=True):
        env = fake.wait_ack(env_id, timeout=30)
        assert env.sent_at is not None and env.acked_at is not None
        acks.append((env.acked_at - env.sent_at) * 1000)
        replies.append((replied[ev["ts"]] - env.sent_at) * 1000)
        times.append([ev["ts"], env.sent_at, env.acked_at, replied[ev["ts"]]])
    # times: per event, its ts and when (time.monotonic) it was sent, acknowledged, answered
    return {"acks": acks, "replies": replies, "times": times, "errors": fake.errors}


class _Replies:
    """When the first ``chat.postMessage`` in each thread arrived, reading each call once."""

    def __init__(self, fake: FakeSlack, since: int) -> None:
        self.store, self.next = fake.store, since
        self.first: dict[str, float] = {}

    def wait(
        self, threads: set[str], timeout: float, poll: float | None = None
    ) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            with self.store.cond:
                calls = self.store.calls
                for call in calls[self.next :]:
                    ts = call.args.get("thread_ts")
                    if call.method == "chat.postMessage" and ts and ts not in self.first:
                        self.first[ts] = call.received_at
                self.next = len(calls)
                if threads <= self.first.keys():
                    return self.first
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(threads - self.first.keys())} threads unanswered")
                if poll is None:
                    self.store.cond.wait(left)
            if poll is not None:
                time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.slack", description=__doc__)
    p.add_argument("--user", action="append", default=[], metavar="UID=EMAIL")
    args = p.parse_args(argv)
    with FakeSlack.start() as fake:
        for item in args.user:
            uid, _, email = item.partition("=")
            fake.add_user(uid, email=email)
        print(json.dumps({"env": fake.env(), "team_id": fake.team_id}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd.pop("op")
            try:
                if op == "add_user":
                    fake.add_user(cmd["id"], email=cmd["email"])
                    out: dict[str, Any] = {"ok": True}
                elif op == "wait_connected":
                    out = {"connections": fake.wait_connected(timeout=cmd.get("timeout", 20))}
                elif op == "measure":
                    args = (cmd["text"], cmd["user"], cmd["n"], cmd["burst"])
                    out = measure(fake, *args, cmd.get("interval", 0.0))
                else:
                    out = {"error": f"unknown op {op!r}"}
            except Exception as exc:  # answer it; the caller decides
                out = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(out), flush=True)
    return 0
