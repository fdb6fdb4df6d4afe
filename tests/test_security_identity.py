"""SlackIdentity against the fake Slack Web API, through the real slack_sdk WebClient."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from marvin.core.authz import Refused
from marvin.core.model import User
from marvin.security.slack_identity import SlackIdentity
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.timeout(30)

OTHER_TEAM = "T0OTHERORG"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.start() as fake:
        fake.add_user("U0ALICE", email="alice@example.com", display_name="alice (admin)")
        fake.add_user("U0MALLORY", email="mallory@example.com", display_name="alice (admin)")
        fake.add_user("U0GUEST", email="guest@partner.com", is_restricted=True)
        fake.add_user("U0SINGLE", email="single@partner.com", is_ultra_restricted=True)
        fake.add_user("U0GONE", email="gone@example.com", deleted=True)
        fake.add_user("U0BOT", email="bot@example.com", is_bot=True)
        fake.add_user("U0APP", email="app@example.com", is_app_user=True)
        fake.add_user("U0NOMAIL")
        fake.add_user("U0CONNECT", email="x@other.com", team_id=OTHER_TEAM, is_stranger=True)
        fake.add_user("U0FOREIGN", email="y@other.com", team_id=OTHER_TEAM)
        yield fake


def identity(fake: FakeSlack, **kwargs: object) -> SlackIdentity:
    client = WebClient(token=fake.bot_token, base_url=fake.api_url, timeout=5)
    return SlackIdentity(client, team_ids={fake.team_id}, **kwargs)  # type: ignore[arg-type]


def slack_user(uid: str, team: str | None = None, **extra: str) -> User:
    # What the Slack front end builds from an event: the id and the event's team, no email.
    return User(id=uid, email=None, name="whatever they typed", source="slack", team_id=team,
                extra=dict(extra))  # fmt: skip


def refusal(ident: SlackIdentity, user: User) -> Refused:
    with pytest.raises(Refused) as err:
        ident(user)
    return err.value


def test_email_comes_from_users_info_by_id_only(fake: FakeSlack) -> None:
    ident = identity(fake)
    alice = ident(slack_user("U0ALICE", fake.team_id))
    assert alice.email == "alice@example.com" and alice.team_id == fake.team_id
    assert alice.name == "alice (admin)"  # for display
    # Same display name as alice, but the id says mallory: mallory is who it is.
    mallory = ident(slack_user("U0MALLORY", fake.team_id))
    assert mallory.email == "mallory@example.com"
    assert [c.args["user"] for c in fake.calls_to("users.info")] == ["U0ALICE", "U0MALLORY"]


@pytest.mark.parametrize(
    ("uid", "message", "reason"),
    [
        ("U0GONE", "deactivated", "deactivated"),
        ("U0BOT", "bots or apps", "bot or app"),
        ("U0APP", "bots or apps", "bot or app"),
        ("U0GUEST", "Guests", "guest"),
        ("U0SINGLE", "Guests", "guest"),
        ("U0CONNECT", "people in this workspace", "Slack Connect"),
        ("U0FOREIGN", "people in this workspace", "other workspace"),
        ("U0NOMAIL", "no email", "no email"),
        ("U0NOBODY", "can't tell who you are", "user_not_found"),
        ("alice", "can't tell who you are", "not a Slack user id"),
        ("USLACKBOT", "can't tell who you are", "user_not_found"),
    ],
)
def test_refusals(fake: FakeSlack, uid: str, message: str, reason: str) -> None:
    err = refusal(identity(fake), slack_user(uid))
    assert message in str(err) and reason in err.log_reason


def test_event_from_another_workspace_is_refused_before_any_lookup(fake: FakeSlack) -> None:
    ident = identity(fake)
    assert "this workspace" in str(refusal(ident, slack_user("U0ALICE", OTHER_TEAM)))
    assert "this workspace" in str(
        refusal(ident, slack_user("U0ALICE", fake.team_id, user_team=OTHER_TEAM))
    )
    assert fake.calls_to("users.info") == []


def test_guests_when_allowed(fake: FakeSlack) -> None:
    ident = identity(fake, allow_guests=True)
    assert ident(slack_user("U0GUEST")).email == "guest@partner.com"
    assert "Slack Connect" in refusal(ident, slack_user("U0CONNECT")).log_reason


@pytest.mark.parametrize(("status", "error"), [(500, None), (429, None), (200, "fatal_error")])
def test_slack_api_errors_refuse_and_are_not_cached(
    fake: FakeSlack, status: int, error: str | None
) -> None:
    ident = identity(fake)
    fake.fail_next("users.info", status, retry_after=0, error=error)
    err = refusal(ident, slack_user("U0ALICE"))
    assert "can't tell who you are" in str(err) and "users.info failed" in err.log_reason
    assert ident(slack_user("U0ALICE")).email == "alice@example.com"  # next time: fine


def test_slack_down_refuses() -> None:
    with FakeSlack.start() as fake:
        url = fake.api_url
    client = WebClient(token="xoxb-x", base_url=url, timeout=1)
    err = refusal(SlackIdentity(client, team_ids={"T1"}), slack_user("U0ALICE"))
    assert "users.info failed" in err.log_reason


def test_answers_are_cached_for_the_ttl(fake: FakeSlack) -> None:
    ident = identity(fake, ttl=0.3)
    for _ in range(5):
        ident(slack_user("U0ALICE"))
    assert ident.calls == 1
    fake.add_user("U0ALICE", email="alice@example.com", deleted=True)  # deactivated meanwhile
    time.sleep(0.35)
    assert "deactivated" in str(refusal(ident, slack_user("U0ALICE")))
    assert ident.calls == 2


def test_enterprise_grid_org_id_may_be_configured(fake: FakeSlack) -> None:
    fake.add_user(
        "W0GRID", email="g@example.com", team_id="T0SISTER", enterprise_user={"enterprise_id": "E1"}
    )
    client = WebClient(token=fake.bot_token, base_url=fake.api_url, timeout=5)
    assert SlackIdentity(client, team_ids={"E1"})(slack_user("W0GRID")).email == "g@example.com"


def test_needs_team_ids() -> None:
    with pytest.raises(ValueError):
        SlackIdentity(WebClient(token="x"), team_ids=set())
