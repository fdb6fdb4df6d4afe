"""Shared set-up for the HTTP API's end-to-end tests: a real LDAP directory (slapd), the
loopback fake Slack, ``marvin serve --api-port`` as a subprocess, and keys made with the real
``marvin keys create``. Talks to the API with httpx, a real HTTP client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.slapd import Slapd

ROOT = Path(__file__).resolve().parent.parent
LDAP_PW_ENV = "TEST_API_LDAP_PASSWORD"

COMMANDS = """
from marvin import ENVIRONMENT, Integer, command


@command("test.fast", "fast( {{ word }})?", description="A quick test command",
         examples=["fast", "fast hello"])
def fast(ctx, word=None):
    return f"fast done {word or ''}".strip()


@command("test.steps", "steps {{ count }}", description="Reports progress",
         examples=["steps 3"], params={"count": Integer(min=1, max=10)}, ack="Stepping")
def steps(ctx, count):
    for i in range(1, count + 1):
        ctx.progress(f"step {i} of {count}")
        ctx.sleep(0.4)
    return "steps done"


@command("test.slow", "slow {{ seconds }}", description="Sleeps", examples=["slow 3"],
         params={"seconds": Integer(min=0, max=60)})
def slow(ctx, seconds):
    ctx.sleep(seconds)
    return "slow done"


@command("test.hold", "hold {{ environment }} for {{ seconds }}", description="Holds a lock",
         examples=["hold demo01 for 2"], lock="environment",
         params={"environment": ENVIRONMENT, "seconds": Integer(min=0, max=60)})
def hold(ctx, environment, seconds):
    ctx.sleep(seconds)
    return f"held {environment}"


@command("test.wipe", "wipe test {{ target }}", description="Command line only",
         examples=["wipe test web1"])
def wipe(ctx, target):
    return f"wiped {target}"
"""

RBAC = """
rules:
  - name: production
    commands: [test.hold]
    targets: {environment: ["prod*"]}
    groups: [ops]
    confirm: true
  - name: cli-only
    commands: [test.wipe]
    groups: [ops, developers]
    via: [cli]
  - name: tests
    commands: ["test.*"]
    groups: [ops, developers]
"""


def write_config(root: Path, slapd: Slapd) -> Path:
    (root / "commands").mkdir(parents=True, exist_ok=True)
    (root / "commands" / "apicmds.py").write_text(COMMANDS)
    (root / "rbac.yaml").write_text(RBAC)
    config = root / "marvin.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            commands: {{paths: [commands], lint: "off"}}
            vocabulary: {ROOT / "config" / "vocabulary.yaml"}
            state: {{sqlite: state.sqlite3}}
            jobs: {{workers: 8, grace_seconds: 2, per_user: 4}}
            security:
              policy: rbac.yaml
              auditors_group: ops
              directory:
                backend: ldap
                url: {slapd.url}
                bind_dn: {slapd.root_dn}
                bind_password_env: {LDAP_PW_ENV}
                user_base: {slapd.people}
                group_base: {slapd.groups}
                cache_ttl: 1
            slack:
              ping_interval: 1
            api:
              max_body_bytes: 4096
              rate_per_minute: 60
              burst: 50
            logging: {{level: info}}
            """
        )
    )
    return config


def env_for(slapd: Slapd, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}), LDAP_PW_ENV: slapd.root_pw, "PYTHONPATH": str(ROOT)}


def marvin_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "marvin", "--config", str(config), *args]


def create_keys(config: Path, env: dict[str, str], specs: dict[str, tuple[str, ...]]) -> dict:
    """``marvin keys create`` for each name -> (owner, extra args...), concurrently."""
    procs = {
        name: subprocess.Popen(
            marvin_cmd(config, "keys", "create", "--owner", owner, "--name", name, *extra),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (owner, *extra) in specs.items()
    }
    keys = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        keys[name] = out.strip()
        assert keys[name].startswith("mrv_") and "\n" not in keys[name], out
    return keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def run(client: httpx.Client, key: str, **body: Any) -> httpx.Response:
    return client.post("/api/v1/executions", json=body, headers=auth(key))


def wait_state(client: httpx.Client, key: str, ex_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/v1/executions/{ex_id}", headers=auth(key))
        assert r.status_code == 200, r.text
        body = r.json()
        if body["state"] not in ("queued", "running"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def events(client: httpx.Client, key: str, ex_id: str, timeout: float = 30) -> list[tuple]:
    """The event stream until its final state: [(kind, data, id)]."""
    out: list[tuple] = []
    path = f"/api/v1/executions/{ex_id}/events"
    with client.stream("GET", path, headers=auth(key), timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind, eid = None, None
        for line in r.iter_lines():
            if line.startswith("id: "):
                eid = int(line[4:])
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                out.append((kind, data, eid))
                kind, eid = None, None
                if out[-1][0] == "state" and data["state"] != "accepted":
                    break
    return out


class Serve:
    def __init__(
        self, config: Path, env: dict[str, str], *args: str, log_dir: Path | None = None
    ) -> None:
        self.log = (log_dir or config.parent) / f"serve-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                marvin_cmd(config, *args), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the API did not come up:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"marvin did not stop:\n{self.output()[-3000:]}") from None


@contextmanager
def started_slapd(workdir: Path) -> Iterator[Slapd]:
    server = Slapd(workdir)
    try:
        server.start()
        server.seed()
        yield server
    finally:
        server.cleanup()
