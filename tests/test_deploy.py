"""app.deploy through the pipeline: the GA check against real yum repositories (served on
loopback), then SSM Run Command against moto in server mode; botocore's Stubber for the
outcomes moto can't produce (Failed, TimedOut, InProgress)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

import commands.app
from marvin.config import DEFAULT_CONFIG, Config, load_config
from marvin.security import build_authorizer
from marvin.testing import Bot
from tests.fakes import aws
from tests.fakes.yum import RC, YumRepos

moto_server = aws.moto_server
aws_env = aws.aws_env
pytestmark = pytest.mark.timeout(60)


def launch(env: str, app: str, count: int) -> list[str]:
    ec2 = boto3.client("ec2")
    tags = [{"Key": "Environment", "Value": env}, {"Key": "App", "Value": app}]
    got = ec2.run_instances(
        ImageId="ami-12c6146b",  # any id: moto does not insist on a registered image
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return sorted(i["InstanceId"] for i in got["Instances"])


@pytest.fixture
def estate(aws_env: str) -> dict[str, list[str]]:
    return {
        "prod": launch("prod", "orders-api", 3),
        "qa01": launch("qa01", "orders-api", 2),
        "billing": launch("prod", "billing", 1),
    }


def config_for(tmp_path: Any, env: dict[str, str], **deploy: Any) -> Config:
    cfg = load_config(
        DEFAULT_CONFIG, env={**os.environ, "MARVIN_STATE": str(tmp_path / "s.db"), **env}
    )
    cfg.data["deploy"].update({"poll_seconds": 0.05, **deploy})
    return cfg


class Sent:
    """What this process asked SSM to do: moto itself runs a command on every instance in
    the region, so the instances targeted are read from the requests."""

    def __init__(self, bot: Bot) -> None:
        self.commands: list[dict[str, Any]] = []
        self.asked: list[str] = []
        events = bot.app.rt.services.ssm.meta.events
        events.register("provide-client-params.ssm.SendCommand", self._send)
        events.register("provide-client-params.ssm.GetCommandInvocation", self._get)

    def _send(self, params: dict[str, Any], **_: Any) -> None:
        self.commands.append(params)

    def _get(self, params: dict[str, Any], **_: Any) -> None:
        self.asked.append(params["InstanceId"])

    def batches(self) -> list[list[str]]:
        return [c["InstanceIds"] for c in self.commands]


@pytest.fixture
def deployer(
    marvin_bot: Callable[..., Bot], yum_repos: YumRepos, estate: dict, tmp_path: Any
) -> Callable[..., tuple[Bot, Sent]]:
    def make(env: dict[str, str] | None = None, **deploy: Any) -> tuple[Bot, Sent]:
        cfg = config_for(tmp_path, {**yum_repos.env(), **(env or {})}, **deploy)
        bot = marvin_bot(commands.app, user="alice@example.com", config=cfg)
        return bot, Sent(bot)

    return make


def sha256(path: Any) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def audit(bot: Bot, ex_id: str, event: str) -> list[str]:
    return [r["detail"] for r in bot.app.store.audit_rows(ex_id) if r["event"] == event]


def test_ga_version_to_production_rolls_out_in_batches(
    deployer: Callable, yum_repos: YumRepos, estate: dict
) -> None:
    bot, sent = deployer()
    r = bot.send("deploy orders-api 1.4.1-1.el9 to prod")
    assert r.reactions == ["accepted", "succeeded"], r.text
    digest = sha256(yum_repos.rpms[("orders-api", "1.4.1-1.el9")])
    assert f"✓ ga_repository: orders-api 1.4.1-1.el9 is in GA (sha256 {digest[:12]}…)" in r.said
    assert (
        "Deployed orders-api 1.4.1-1.el9 from GA to prod: 3 instance(s) in 2 batch(es)."
        in (r.said[-1])
    )
    prod = estate["prod"]
    assert sent.batches() == [prod[:2], prod[2:]]  # only prod's orders-api instances
    assert set(sent.asked) == set(prod)
    script = "\n".join(sent.commands[0]["Parameters"]["commands"])
    assert yum_repos.server.template("ga").replace("{app}", "orders-api") in script
    assert "install orders-api-0:1.4.1-1.el9" in script
    assert sent.commands[0]["DocumentName"] == "AWS-RunShellScript"
    assert r.execution_id in sent.commands[0]["Comment"]
    assert any("batch 2/2 done (3/3)" in p for p in r.progress), r.progress
    # The audit keeps the full evidence with the execution.
    (record,) = audit(bot, r.execution_id, "check_passed")
    assert digest in record and "orders-api-1.4.1-1.el9.noarch.rpm" in record


def test_release_candidate_to_production_is_refused(deployer: Callable) -> None:
    bot, sent = deployer()
    r = bot.send(f"deploy orders-api {RC} to prod")
    assert bot.app.store.get(r.execution_id)["state"] == "refused"
    assert f"orders-api {RC} is not in GA (production takes only GA packages)" in r.said[-1]
    assert "GA has 1.4.1-1.el9, 1.4.0-1.el9." in r.said[-1]  # newest first
    assert sent.commands == []
    assert audit(bot, r.execution_id, "check_refused")


def test_staging_version_to_a_test_environment(
    deployer: Callable, yum_repos: YumRepos, estate: dict
) -> None:
    bot, sent = deployer()
    r = bot.send(f"deploy orders-api {RC} to qa01")
    assert r.reactions[-1] == "succeeded", r.text
    assert any(f"orders-api {RC} is in staging" in s for s in r.said)
    assert sent.batches() == [estate["qa01"]]
    script = "\n".join(sent.commands[0]["Parameters"]["commands"])
    assert yum_repos.server.template("staging").replace("{app}", "orders-api") in script


def test_version_in_no_repository_is_refused(deployer: Callable) -> None:
    bot, sent = deployer()
    r = bot.send("deploy orders-api 9.9.9-1.el9 to qa01")
    assert bot.app.store.get(r.execution_id)["state"] == "refused"
    assert f"staging has {RC}, 1.4.1-1.el9, 1.4.0-1.el9" in r.said[-1]
    nothing = bot.send("deploy payments 1.0-1 to prod")
    assert "can't verify payments 1.0-1 against GA" in nothing.said[-1]
    assert "answered HTTP 404" in nothing.said[-1]  # no repository for that app at all
    assert sent.commands == []


def test_epoch_is_part_of_the_match(deployer: Callable, estate: dict) -> None:
    bot, sent = deployer()
    wrong = bot.send("deploy billing 3.0.0-1.el9 to prod")  # epoch 0 is not epoch 2
    assert bot.app.store.get(wrong.execution_id)["state"] == "refused"
    assert "GA has 2:3.0.0-1.el9, 1:3.1.0-1.el9." in wrong.said[-1]  # epoch orders first
    right = bot.send("deploy billing 2:3.0.0-1.el9 to prod")
    assert right.reactions[-1] == "succeeded", right.text
    assert sent.batches() == [estate["billing"]]
    assert "install billing-2:3.0.0-1.el9" in "\n".join(sent.commands[0]["Parameters"]["commands"])


def test_tampered_repository_is_refused(deployer: Callable, yum_repos: YumRepos) -> None:
    bot, sent = deployer({"GA_REPO_URL": yum_repos.server.template("tampered")})
    r = bot.send("deploy orders-api 1.4.1-1.el9 to prod")
    assert bot.app.store.get(r.execution_id)["state"] == "refused"
    assert "does not match its checksum in repomd.xml" in r.said[-1]
    assert sent.commands == []


def test_unreachable_repository_fails_closed(deployer: Callable) -> None:
    bot, sent = deployer({"GA_REPO_URL": "http://127.0.0.1:9/ga/{app}"}, http_timeout=2)
    r = bot.send("deploy orders-api 1.4.1-1.el9 to prod")
    assert bot.app.store.get(r.execution_id)["state"] == "refused"
    assert "I can't verify orders-api 1.4.1-1.el9 against GA: can't reach" in r.said[-1]
    assert sent.commands == []


def test_unconfigured_repository_is_refused_clearly(deployer: Callable) -> None:
    bot, sent = deployer({"GA_REPO_URL": "", "STAGING_REPO_URL": ""})
    r = bot.send("deploy orders-api 1.4.1-1.el9 to qa01")
    assert "no GA repository is configured for orders-api" in r.said[-1]
    assert "GA_REPO_URL" in r.said[-1] and sent.commands == []


def test_verify_rpm_checks_the_package_itself(deployer: Callable, yum_repos: YumRepos) -> None:
    bot, _ = deployer({"GA_REPO_URL": yum_repos.server.template("badrpm")}, verify_rpm=True)
    bad = bot.send("deploy orders-api 1.4.1-1.el9 to prod")
    assert bot.app.store.get(bad.execution_id)["state"] == "refused"
    assert "can't be trusted" in bad.said[-1]
    good_bot, _ = deployer(verify_rpm=True)
    good = good_bot.send("deploy orders-api 1.4.1-1.el9 to prod")
    assert any("RPM verified" in s for s in good.said), good.text


def test_no_tagged_instances_fails_after_the_check(deployer: Callable) -> None:
    bot, sent = deployer()
    r = bot.send("deploy orders-api 1.4.1-1.el9 to prod-eu")
    assert r.reactions[-1] == "failed"
    assert "no running instances are tagged Environment=prod-eu, App=orders-api" in r.said[-1]
    assert sent.commands == []


def test_help_shows_the_check(deployer: Callable) -> None:
    bot, _ = deployer()
    text = bot.send("help app.deploy").text
    assert "`ga_repository`: production environments take only packages in the GA" in text
    assert "one at a time per `environment`" in text


def test_production_needs_admins_duo_and_confirmation(tmp_path: Any, yum_repos: YumRepos) -> None:
    cfg = config_for(tmp_path, yum_repos.env())
    authz = build_authorizer(cfg)
    from marvin.bootstrap import build_table
    from marvin.core.loader import handlers_in
    from marvin.runtime.app import local_user

    table = build_table(handlers_in(commands.app))
    authz.check_table(table, strict=False)
    deploy = table["app.deploy"]
    params = {"app": "orders-api", "version": "1.4.1-1.el9"}
    from marvin.bootstrap import CONSOLE
    from marvin.core.authz import FrontEnds

    console = FrontEnds([CONSOLE])  # the chain resolves through the front end, then groups
    alice = authz.identify(console.resolve(local_user("alice@example.com")))
    bob = authz.identify(console.resolve(local_user("bob@example.com")))
    prod = authz.decide(alice, deploy, {**params, "environment": "prod"})
    assert prod.allowed and prod.mfa and prod.confirm
    assert not authz.decide(bob, deploy, {**params, "environment": "production-eu"}).allowed
    test = authz.decide(bob, deploy, {**params, "environment": "qa01"})
    assert test.allowed and not test.mfa and not test.confirm


def planned(bot: Bot, text: str) -> str:
    """Send ``plan ...`` and return what the plan's execution said once it ended."""
    before = {row["id"] for row in bot.app.store.recent(None, 50)}
    replies = bot.send(text)
    deadline = time.monotonic() + 20
    while True:
        new = [row for row in bot.app.store.recent(None, 50) if row["id"] not in before]
        if new and bot.app.wait(new[0]["id"], 20)["state"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, replies.text
        time.sleep(0.02)
    time.sleep(0.1)  # the result is said just after the state is recorded
    return replies.text


def test_plan_shows_the_check_and_the_batches_and_changes_nothing(
    deployer: Callable, estate: dict
) -> None:
    bot, sent = deployer()
    text = planned(bot, "plan deploy orders-api 1.4.1-1.el9 to prod")
    assert "✓ ga_repository: orders-api 1.4.1-1.el9 is in GA" in text, text
    prod = estate["prod"]
    assert f"Batch 1/2: {', '.join(prod[:2])}" in text and f"Batch 2/2: {prod[2]}" in text
    assert sent.commands == []  # a plan sends no SSM command
    # The command's checks run before its planner too: a plan of what production refuses
    # says why, and still sends nothing.
    refused = planned(bot, f"plan deploy orders-api {RC} to prod")
    assert f"orders-api {RC} is not in GA (production takes only GA packages)" in refused
    assert sent.commands == []
