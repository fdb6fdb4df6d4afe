"""app.deploy end to end, with the project's own commands, rbac.yaml and directory: through
``marvin serve`` against the loopback fake Slack, and through ``marvin run``. Behind it: real
yum repositories on loopback, moto in server mode, the strict fake Duo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.fakes import aws
from tests.fakes.duo import FakeDuo, fake_duo_fixture  # noqa: F401  (fixture "fake_duo")
from tests.fakes.slack import FakeSlack
from tests.fakes.yum import RC, YumRepos
from tests.serving import ROOT, Serve, marvin_yaml
from tests.test_deploy import launch

ALICE, BOB = "U0ALICE", "U0BOB"  # config/directory.yaml: alice is ops (platform-admins), bob not
moto_server = aws.moto_server
aws_env = aws.aws_env
pytestmark = pytest.mark.timeout(90)


def write_config(folder: Path, repos: YumRepos, duo: FakeDuo) -> Path:
    """The shape of config/marvin.yaml, with the project's commands, policy and directory."""
    return marvin_yaml(
        folder,
        deploy={
            "ga_repo_url": repos.server.template("ga"),
            "staging_repo_url": repos.server.template("staging"),
            "poll_seconds": 0.05,
            "batch_size": 2,
        },
        security={
            "directory": {"path": str(ROOT / "config" / "directory.yaml")},
            "duo": {
                "enabled": True,
                "ikey": duo.ikey,
                "skey_env": "TEST_DUO_SKEY",
                "host": duo.host,
                "ca_certs": str(duo.ca_certs),
                "timeout": 10,
            },
        },
    )


@pytest.fixture
def setup(
    tmp_path: Path, yum_repos: YumRepos, fake_duo: FakeDuo, aws_env: str, monkeypatch
) -> tuple[Path, dict[str, list[str]]]:
    monkeypatch.setenv("TEST_DUO_SKEY", fake_duo.skey)
    for name in ("GA_REPO_URL", "STAGING_REPO_URL"):
        monkeypatch.delenv(name, raising=False)  # the configuration file says where
    fake_duo.set_mode("alice", "allow")
    estate = {"prod": launch("prod", "orders-api", 3), "qa01": launch("qa01", "orders-api", 2)}
    return write_config(tmp_path, yum_repos, fake_duo), estate


def commands_sent() -> list[dict]:
    return boto3.client("ssm").list_commands()["Commands"]


def in_thread(fake: FakeSlack, ts: str, since: int) -> list[str]:
    return [
        str(c.args.get("text", ""))
        for c in fake.calls[since:]
        if c.method == "chat.postMessage" and c.args.get("thread_ts") == ts
    ]


def confirm(fake: FakeSlack, event: dict, user: str, since: int) -> None:
    ask = fake.wait_for(
        "chat.postMessage",
        lambda c: "blocks" in c.args and c.args.get("thread_ts") == event["ts"],
        timeout=15,
        since=since,
    )
    token = ask.args["blocks"][1]["elements"][0]["value"]
    fake.send_interactive(
        fake.block_actions("marvin_confirm", token, user=user, message_ts=ask.response["ts"])
    )


def test_deploy_through_slack(
    setup: tuple[Path, dict], yum_repos: YumRepos, fake_duo: FakeDuo
) -> None:
    config, _estate = setup
    with FakeSlack.start() as fake:
        fake.add_user(ALICE, email="alice@example.com")
        fake.add_user(BOB, email="bob@example.com")
        serve = Serve(fake, config)
        try:
            fake.wait_connected(timeout=20)
            # A developer deploys a release candidate to a test environment: from staging.
            n = len(fake.calls)
            qa = fake.app_mention(f"deploy orders-api {RC} to qa01", user=BOB)
            fake.send_event(qa)
            fake.wait_for(
                "chat.postMessage", lambda c: "Deployed" in c.args["text"], timeout=20, since=n
            )
            said = in_thread(fake, qa["ts"], n)
            assert any(f"orders-api {RC} is in staging (sha256 " in s for s in said), said
            assert f"Deployed orders-api {RC} from staging to qa01: 2 instance(s)" in said[-1]

            # The same candidate to production: confirmed, Duo approved, then refused by the
            # GA check, which runs after both.
            n = len(fake.calls)
            rc = fake.app_mention(f"deploy orders-api {RC} to prod", user=ALICE)
            fake.send_event(rc)
            confirm(fake, rc, ALICE, n)
            fake.wait_for(
                "chat.postMessage", lambda c: "was not run" in c.args["text"], timeout=20, since=n
            )
            refused = in_thread(fake, rc["ts"], n)[-1]
            assert f"orders-api {RC} is not in GA" in refused
            assert "GA has 1.4.1-1.el9, 1.4.0-1.el9." in refused
            assert len(commands_sent()) == 1  # only the qa01 batch so far

            # A GA version to production.
            n = len(fake.calls)
            ga = fake.app_mention("deploy orders-api 1.4.1-1.el9 to prod", user=ALICE)
            fake.send_event(ga)
            confirm(fake, ga, ALICE, n)
            fake.wait_for(
                "chat.postMessage", lambda c: "Deployed" in c.args["text"], timeout=20, since=n
            )
            said = in_thread(fake, ga["ts"], n)
            assert any("orders-api 1.4.1-1.el9 is in GA (sha256 " in s for s in said), said
            assert "3 instance(s) in 2 batch(es)" in said[-1]
        finally:
            assert serve.stop() == 0, serve.output()[-3000:]
    sent = commands_sent()
    assert len(sent) == 3  # qa01: one batch; prod: two; the refused deploy: none
    staging = yum_repos.server.template("staging").replace("{app}", "orders-api")
    ga_url = yum_repos.server.template("ga").replace("{app}", "orders-api")
    scripts = ["\n".join(c["Parameters"]["commands"]) for c in sent]
    assert staging in scripts[0] and f"orders-api-0:{RC}" in scripts[0]
    assert all(ga_url in s and "orders-api-0:1.4.1-1.el9" in s for s in scripts[1:])
    assert fake_duo.paths().count("/auth/v2/auth") == 2  # a push for each prod deploy only


def run(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "marvin", "--config", str(config), "run", "app.deploy", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_deploy_through_marvin_run(setup: tuple[Path, dict], fake_duo: FakeDuo) -> None:
    config, _estate = setup
    args = ["app=orders-api", "environment=prod", "--as", "alice@example.com", "--yes"]
    refused = run(config, f"version={RC}", *args)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    out = refused.stdout + refused.stderr
    assert f"orders-api {RC} is not in GA" in out and "GA has 1.4.1-1.el9, 1.4.0-1.el9" in out
    assert commands_sent() == []
    ok = run(config, "version=1.4.1-1.el9", *args)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "orders-api 1.4.1-1.el9 is in GA (sha256 " in ok.stdout
    assert "Deployed orders-api 1.4.1-1.el9 from GA to prod: 3 instance(s)" in ok.stdout
    assert len(commands_sent()) == 2
    assert fake_duo.paths().count("/auth/v2/auth") == 2  # each production deploy: a push
    bob = run(config, "version=1.4.1-1.el9", "app=orders-api", "environment=prod",
              "--as", "bob@example.com", "--yes")  # fmt: skip
    assert bob.returncode == 1 and "platform-admins" in bob.stdout + bob.stderr
