"""jenkins.build through the real pipeline and the real python-jenkins against the loopback
fake: progress, results, failures with the console tail, parameter errors that queue nothing,
and cancel on both sides of the queue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import commands.jenkins
from marvin.actions import ActionError
from marvin.actions.jenkins import check_parameters
from marvin.config import DEFAULT_CONFIG, load_config
from tests.fakes.jenkins import FakeJenkins, boolean, choice, password, string

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-api-token-1234"
PARAMS = [
    string("VERSION"),
    choice("TARGET", ["dev", "qa"]),
    boolean("DRY_RUN"),
    password("DB_PASS"),
]


@pytest.fixture
def jenkins() -> Iterator[FakeJenkins]:
    with FakeJenkins.start(user="marvin", token=TOKEN) as fake:
        fake.add_node("agent-1")
        yield fake


def config(tmp_path: Path, fake: FakeJenkins | None):  # noqa: ANN201
    env = {"MARVIN_STATE": str(tmp_path / "state.sqlite3")}
    if fake is not None:
        env |= {"JENKINS_URL": fake.url, "JENKINS_USER": "marvin", "JENKINS_API_TOKEN": TOKEN}
    cfg = load_config(DEFAULT_CONFIG, env=env)
    cfg.data["jenkins"].update(jobs=["deploy-*", "team/*"], poll_seconds=0.1)
    return cfg


@pytest.fixture
def bot(marvin_bot, jenkins, tmp_path):  # noqa: ANN001, ANN201
    return marvin_bot(commands.jenkins, user="dev@example.com", config=config(tmp_path, jenkins))


def wait_for(pred, timeout: float = 10) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_successful_build_reports_queue_and_running_progress(bot, jenkins) -> None:  # noqa: ANN001
    jenkins.add_job("deploy-app", PARAMS, duration=0.6, estimated=90)
    r = bot.send("run jenkins job deploy-app VERSION=1.2 TARGET=qa dry_run=x", timeout=20)
    assert r.reactions == ["accepted", "failed"]  # names are case-sensitive, as in Jenkins
    assert "has no parameter dry_run" in r.said[-1] and jenkins.posts("build") == []

    r = bot.send("run jenkins job deploy-app VERSION=1.2 TARGET=qa DRY_RUN=TRUE", timeout=20)
    assert r.reactions == ["accepted", "succeeded"], r.text
    assert r.said[0].startswith("Starting Jenkins job deploy-app (`ex-")
    assert f"deploy-app #1 succeeded in 1 s: {jenkins.url}job/deploy-app/1/" in r.said[-1]
    assert any("running for" in p and "of about 90 s" in p for p in r.progress), r.progress
    build = jenkins.builds[("deploy-app", 1)]
    assert build.params == {"VERSION": "1.2", "TARGET": "qa", "DRY_RUN": "true"}
    assert build.result == "SUCCESS"


def test_queued_progress_says_why(bot, jenkins) -> None:  # noqa: ANN001
    jenkins.add_job("deploy-app", PARAMS, duration=0.2)
    jenkins.add_job("deploy-blocker", duration=1.0)
    blocker = bot.send("run jenkins job deploy-blocker", wait=False)
    wait_for(lambda: ("deploy-blocker", 1) in jenkins.builds)
    r = bot.send("run jenkins job deploy-app VERSION=2", timeout=20)
    assert r.reactions[-1] == "succeeded", r.text
    assert any("queued for" in p and "Waiting for next available executor" in p for p in r.progress)
    bot.app.wait(blocker.execution_id, 10)


def test_failed_build_shows_masked_console_tail_and_url(bot, jenkins) -> None:  # noqa: ANN001
    console = [f"step {i}" for i in range(60)]
    console += [f"curl -u marvin:{TOKEN} https://x", "export API_KEY=abcd1234efgh", "boom"]
    jenkins.add_job("deploy-app", PARAMS, duration=0.2, result="FAILURE", console=console)
    r = bot.send("run jenkins job deploy-app VERSION=9", timeout=20)
    assert r.reactions == ["accepted", "failed"]
    tail, failure = r.said[-2], r.said[-1]
    url = f"{jenkins.url}job/deploy-app/1/"
    assert url in tail and "boom" in tail and "Finished: FAILURE" in tail
    assert "step 59" in tail and "step 0\n" not in tail  # only the last jenkins.console_lines
    assert TOKEN not in tail and "abcd1234efgh" not in tail and "API_KEY=****" in tail
    assert "deploy-app #1 ended FAILURE" in failure and url in failure


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("run jenkins job deploy-app TARGET=qa", "deploy-app needs VERSION"),
        ("run jenkins job deploy-app VERSION=1 TARGET=prod", "TARGET=prod is not one of dev, qa"),
        ("run jenkins job deploy-app VERSION=1 DB_PASS=x", "DB_PASS is a password parameter"),
        ("run jenkins job deploy-app VERSION=1 DRY_RUN=maybe", "DRY_RUN must be true or false"),
        ("run jenkins job deploy-app VERSION=1 COLOUR=red", "has no parameter COLOUR"),
        ("run jenkins job deploy-missing", "Jenkins has no job deploy-missing"),
        ("run jenkins job secret-job", "not on Marvin's Jenkins allow-list"),
    ],
)
def test_bad_requests_queue_nothing(bot, jenkins, text: str, error: str) -> None:  # noqa: ANN001
    jenkins.add_job("deploy-app", PARAMS)
    jenkins.add_job("secret-job")
    r = bot.send(text, timeout=20)
    assert r.reactions == ["accepted", "failed"] and error in r.said[-1], r.text
    if "needs" in error or "has no parameter" in error:  # the valid ones are listed
        assert "VERSION (required); TARGET (one of dev, qa); DRY_RUN (true/false" in r.said[-1]
    assert jenkins.posts("build") == [] and jenkins.queue == {}


def test_cancel_while_queued_removes_the_queue_item(bot, jenkins) -> None:  # noqa: ANN001
    jenkins.nodes["agent-1"].connected = False  # nowhere to run: it stays queued
    jenkins.add_job("deploy-app", PARAMS)
    r = bot.send("run jenkins job deploy-app VERSION=1", wait=False)
    wait_for(lambda: jenkins.queue)
    bot.send(f"cancel {r.execution_id}")
    bot.app.wait(r.execution_id, 10)
    assert bot.app.store.get(r.execution_id)["state"] == "cancelled"
    assert jenkins.posts("/queue/cancelItem") and jenkins.queue[1].cancelled
    assert "taken out of Jenkins' queue" in r.progress[-1]
    jenkins.nodes["agent-1"].connected = True
    time.sleep(0.2)
    assert jenkins.builds == {}  # it never ran


def test_cancel_while_running_stops_the_build(bot, jenkins) -> None:  # noqa: ANN001
    jenkins.add_job("deploy-app", PARAMS, duration=None)  # runs until stopped
    r = bot.send("run jenkins job deploy-app VERSION=1", wait=False)
    wait_for(lambda: ("deploy-app", 1) in jenkins.builds)
    wait_for(lambda: any("running for" in p for p in r.progress))
    bot.send(f"cancel {r.execution_id}")
    bot.app.wait(r.execution_id, 10)
    assert bot.app.store.get(r.execution_id)["state"] == "cancelled"
    assert jenkins.posts("/job/deploy-app/1/stop")
    assert jenkins.builds[("deploy-app", 1)].result == "ABORTED"
    assert "deploy-app #1: stopped in Jenkins" in r.progress[-1]


def test_folder_jobs_and_jobs_without_parameters(bot, jenkins) -> None:  # noqa: ANN001
    jenkins.add_job("team/nightly", duration=0.1)
    r = bot.send("run jenkins job team/nightly", timeout=20)
    assert r.reactions[-1] == "succeeded", r.text
    assert jenkins.posts("/job/team/job/nightly/build")
    jenkins.add_job("deploy-defaults", [choice("TARGET", ["dev", "qa"])], duration=0.1)
    r = bot.send("run jenkins job deploy-defaults", timeout=20)
    assert r.reactions[-1] == "succeeded", r.text
    assert jenkins.builds[("deploy-defaults", 1)].params == {"TARGET": "dev"}


def test_unconfigured_jenkins_is_refused_clearly(marvin_bot, tmp_path) -> None:  # noqa: ANN001
    bot = marvin_bot(commands.jenkins, config=config(tmp_path, None))
    r = bot.send("run jenkins job deploy-app")
    assert r.reactions == ["accepted", "failed"]
    assert "Jenkins is not configured: set jenkins.url (JENKINS_URL)" in r.said[-1]


def test_check_parameters_lists_valid_ones() -> None:
    with pytest.raises(ActionError) as err:
        check_parameters("j", [], {"A": "1"})
    assert "none: the job takes no parameters" in str(err.value)
    assert check_parameters("j", PARAMS, {"VERSION": "1"}) == {"VERSION": "1"}


def test_fake_is_strict_like_jenkins(jenkins) -> None:  # noqa: ANN001
    jenkins.add_job("deploy-app", PARAMS)
    url, auth = jenkins.url, ("marvin", TOKEN)
    assert requests.get(f"{url}job/deploy-app/api/json", timeout=5).status_code == 401
    wrong = requests.get(f"{url}job/deploy-app/api/json", auth=("marvin", "nope"), timeout=5)
    assert wrong.status_code == 401
    post = f"{url}job/deploy-app/buildWithParameters?VERSION=1"
    no_crumb = requests.post(post, auth=auth, timeout=5)
    assert no_crumb.status_code == 403 and "crumb" in no_crumb.text
    crumb = requests.get(f"{url}crumbIssuer/api/json", auth=auth, timeout=5).json()
    headers = {crumb["crumbRequestField"]: crumb["crumb"]}
    ok = requests.post(post, auth=auth, headers=headers, timeout=5)
    assert ok.status_code == 201 and ok.headers["Location"] == f"{url}queue/item/1/"
    plain = requests.post(f"{url}job/deploy-app/build", auth=auth, headers=headers, timeout=5)
    assert plain.status_code == 400  # a parameterized job needs buildWithParameters
    missing = requests.get(f"{url}job/nope/api/json", auth=auth, timeout=5)
    assert missing.status_code == 404
