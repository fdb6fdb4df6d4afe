"""The whole chain through the app: Slack users.info (fake Slack) -> email -> LDAP groups (real
slapd) -> policy -> Duo push (fake Duo) -> handler, and the audit row every attempt leaves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from marvin import Param, command
from marvin.config import Config, ConfigError, load_config
from marvin.core.model import User
from marvin.frontends.slack.serve import front_end
from marvin.runtime.execution import Context
from marvin.security import build_authorizer
from marvin.security.settings import build_directory, build_second_factor, build_slack_identity
from marvin.testing import Bot, Replies
from tests.fakes.duo import FakeDuo, fake_duo_fixture  # noqa: F401  (fixture "fake_duo")
from tests.fakes.slack import FakeSlack
from tests.fakes.slapd import Slapd, slapd_fixture  # noqa: F401  (fixture "slapd")

pytestmark = pytest.mark.timeout(60)


@command("test.deploy", "deploy {{ environment }}", description="Deploy",
         examples=["deploy demo01"])  # fmt: skip
def deploy(ctx: Context, environment: str) -> str:
    return f"deployed {environment}"


@command("test.destroy", "destroy {{ environment }}", description="Destroy",
         examples=["destroy demo01"])  # fmt: skip
def destroy(ctx: Context, environment: str) -> str:
    return f"destroyed {environment}"


@command("test.admin", "admin thing", description="Admins only", examples=["admin thing"])
def admin_thing(ctx: Context) -> str:
    return "admin thing done"


@command("test.deep", "deep thing", description="Four levels of nesting",
         examples=["deep thing"])  # fmt: skip
def deep_thing(ctx: Context) -> str:
    return "deep thing done"


@command("test.secret", "store {{ name }} as {{ value }}", description="Stores a secret",
         examples=["store token as abc"], params={"value": Param(secret=True)})  # fmt: skip
def store_secret(ctx: Context, name: str, value: str) -> str:
    return f"stored {name}"


HANDLERS = [deploy, destroy, admin_thing, deep_thing, store_secret]

POLICY = """
rules:
  - name: production
    commands: [test.deploy]
    targets: {environment: ["prod*"]}
    groups: [platform-admins]
    mfa: true
  - name: production-destroy
    commands: [test.destroy]
    targets: {environment: ["prod*"]}
    groups: [platform-admins]
    chat: false
    confirm: true
  - {commands: [test.admin], groups: [platform-admins]}
  - {commands: [test.deep], groups: [level4]}
  - {commands: ["test.*"], groups: [developers, ops]}
"""

SECURITY = """
security:
  policy: rbac.yaml
  auditors_group: auditors
  directory:
    backend: ldap
    url: {url}
    bind_dn: "{bind_dn}"
    bind_password_env: TEST_LDAP_PASSWORD
    user_base: "{people}"
    group_base: "{groups}"
  slack:
    team_ids: [{team}]
  duo:
    enabled: true
    ikey: {ikey}
    skey_env: TEST_DUO_SKEY
    host: "{host}"
    ca_certs: "{ca}"
    timeout: 2
"""


def write_config(tmp_path: Path, security: str, policy: str = POLICY) -> Path:
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    (folder / "rbac.yaml").write_text(policy)
    (folder / "marvin.yaml").write_text(
        f"state:\n  sqlite: {tmp_path / 'state.sqlite3'}\n{security}"
    )
    return folder / "marvin.yaml"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.start() as fake:
        fake.add_user("U0ALICE", email="alice@example.com", display_name="Alice")
        fake.add_user("U0BOB", email="bob@example.com", display_name="Bob")
        fake.add_user("U0ERIN", email="erin@example.com")
        fake.add_user("U0CAROL", email="carol@example.com")
        # Mallory renamed herself to look like the admin; her id maps to carol's email.
        fake.add_user("U0MALLORY", email="carol@example.com", display_name="Alice",
                      real_name="Alice")  # fmt: skip
        fake.add_user("U0CONNECT", email="alice@example.com", team_id="T0ELSEWHERE",
                      is_stranger=True)  # fmt: skip
        fake.add_user("U0GUEST", email="bob@example.com", is_restricted=True)
        fake.add_user("U0GONE", email="alice@example.com", deleted=True)
        fake.add_user("U0ROBOT", email="alice@example.com", is_bot=True)
        fake.add_user("U0NEW", email="newbie@example.com")
        yield fake


@pytest.fixture
def config(
    tmp_path: Path, slapd: Slapd, fake_duo: FakeDuo, slack: FakeSlack, monkeypatch: Any
) -> Config:
    monkeypatch.setenv("TEST_LDAP_PASSWORD", slapd.root_pw)
    monkeypatch.setenv("TEST_DUO_SKEY", fake_duo.skey)
    security = SECURITY.format(
        url=slapd.url,
        bind_dn=slapd.root_dn,
        people=slapd.people,
        groups=slapd.groups,
        team=slack.team_id,
        ikey=fake_duo.ikey,
        host=fake_duo.host,
        ca=fake_duo.ca_certs,
    )
    return load_config(write_config(tmp_path, security), env={})


@pytest.fixture
def bot(marvin_bot: Callable[..., Bot], config: Config, slack: FakeSlack) -> Bot:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url, timeout=5)
    return marvin_bot(
        *HANDLERS,
        authorizer=build_authorizer(config),
        config=config,
        frontends=[front_end(config, client)],
    )


def on_slack(uid: str, team: str = "T0FAKETEAM") -> User:
    return User(id=uid, email=None, source="slack", team_id=team)


def refused_rows(bot: Bot, user_id: str) -> list[dict[str, Any]]:
    return [r for r in bot.app.store.audit_rows() if r["user_id"] == user_id and r["event"] in
            ("refused", "mfa_refused")]  # fmt: skip


def assert_refused(bot: Bot, replies: Replies, user_id: str, says: str, logged: str) -> None:
    assert replies.execution_id is None or bot.app.store.get(replies.execution_id)["state"] == (
        "refused"
    )
    assert says in "\n".join(replies.whispered + replies.said), replies
    rows = refused_rows(bot, user_id)
    assert rows and logged in rows[-1]["detail"], rows


# -- allowed ----------------------------------------------------------------------------------


def test_right_group_and_nested_groups_are_allowed(bot: Bot) -> None:
    bob = bot.send("deploy demo01", user=on_slack("U0BOB"))
    assert "deployed demo01" in bob.text
    alice = bot.send("admin thing", user=on_slack("U0ALICE"))  # ops -> platform-admins
    assert "admin thing done" in alice.text
    erin = bot.send("deep thing", user=on_slack("U0ERIN"))  # level1 -> ... -> level4
    assert "deep thing done" in erin.text
    rows = bot.app.store.audit_rows(alice.execution_id)
    assert [r["event"] for r in rows] == ["accepted", "succeeded"]
    assert {(r["user_id"], r["email"], r["channel"], r["ref"]) for r in rows} == {
        ("U0ALICE", "alice@example.com", "C-test", "test.admin")
    }


# -- refused ----------------------------------------------------------------------------------


def test_display_name_of_an_admin_does_not_make_an_admin(bot: Bot) -> None:
    r = bot.send("admin thing", user=on_slack("U0MALLORY"))
    assert_refused(bot, r, "U0MALLORY", "not allowed to run `test.admin`", "platform-admins")
    assert refused_rows(bot, "U0MALLORY")[-1]["email"] == "carol@example.com"


@pytest.mark.parametrize(
    ("uid", "says", "logged"),
    [
        ("U0CONNECT", "people in this workspace", "Slack Connect"),
        ("U0GUEST", "Guests can't run commands", "guest"),
        ("U0GONE", "deactivated", "deactivated"),
        ("U0ROBOT", "bots or apps", "bot"),
        ("U0UNKNOWN", "can't tell who you are", "user_not_found"),
        ("U0NEW", "You're not in the directory", "not in directory"),
    ],
)
def test_identity_refusals_are_audited(bot: Bot, uid: str, says: str, logged: str) -> None:
    r = bot.send("deploy demo01", user=on_slack(uid))
    assert_refused(bot, r, uid, says, logged)
    row = refused_rows(bot, uid)[-1]
    assert row["ref"] == "test.deploy" and row["channel"] == "C-test"


def test_user_from_another_workspace_in_the_event(bot: Bot) -> None:
    r = bot.send("deploy demo01", user=on_slack("U0ALICE", team="T0ELSEWHERE"))
    assert_refused(bot, r, "U0ALICE", "people in this workspace", "T0ELSEWHERE")


def test_directory_down_refuses_everyone(bot: Bot, slapd: Slapd) -> None:
    slapd.stop()
    r = bot.send("deploy demo01", user=on_slack("U0BOB"))
    assert_refused(bot, r, "U0BOB", "can't check your groups right now", "directory error")
    help_ = bot.send("help", user=on_slack("U0BOB"))  # even built-ins: nobody is identified
    assert "can't check your groups" in help_.text


def test_no_rule_means_no(bot: Bot) -> None:
    r = bot.send("admin thing", user=on_slack("U0CAROL"))  # in the directory, in no group
    assert_refused(bot, r, "U0CAROL", "not allowed", "platform-admins")
    r = bot.send("deploy demo01", user=on_slack("U0CAROL"))
    assert_refused(bot, r, "U0CAROL", "not allowed", "developers, ops")


# -- chat: false, confirm ---------------------------------------------------------------------


def test_production_destroy_never_from_chat(bot: Bot) -> None:
    r = bot.send("destroy prod1", user=on_slack("U0ALICE"))
    assert_refused(bot, r, "U0ALICE", "can't be run from chat", "marvin run test.destroy")
    cli = User("local:alice@example.com", "alice@example.com", source="cli")
    refused = bot.send("destroy prod1", user=cli, confirm=False)
    assert "Cancelled" in refused.text and refused.execution_id is None
    ok = bot.send("destroy prod1", user=cli, confirm=True)
    assert "destroyed prod1" in ok.text
    events = [r["event"] for r in bot.app.store.audit_rows() if r["user_id"] == cli.id]
    assert events == [
        "confirm_requested",
        "cancelled",
        "confirm_requested",
        "confirmed",
        "accepted",
        "succeeded",
    ]


# -- Duo --------------------------------------------------------------------------------------


def test_duo_approved(bot: Bot, fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("alice", "allow")
    r = bot.send("deploy prod-eu", user=on_slack("U0ALICE"))
    assert r.said[0].startswith("Sent a Duo push") and "approved" in r.said[1]
    assert "deployed prod-eu" in r.text
    events = [(a["event"], a["email"]) for a in bot.app.store.audit_rows(r.execution_id)]
    assert events == [
        ("accepted", "alice@example.com"),
        ("mfa_approved", "alice@example.com"),
        ("succeeded", "alice@example.com"),
    ]


@pytest.mark.parametrize(
    ("mode", "says", "logged"),
    [("deny", "denied", "duo deny"), ("error", "couldn't complete", "duo error")],
)
def test_duo_denied_or_failing_refuses(
    bot: Bot, fake_duo: FakeDuo, mode: str, says: str, logged: str
) -> None:
    fake_duo.set_mode("alice", mode)
    r = bot.send("deploy prod-eu", user=on_slack("U0ALICE"))
    assert "deployed" not in r.text
    assert any(says in line for line in r.said) and "not run" in r.text
    assert bot.app.store.get(r.execution_id)["state"] == "refused"
    events = [(a["event"], a["detail"] or "") for a in bot.app.store.audit_rows(r.execution_id)]
    assert events[1][0] == "mfa_refused" and events[1][1].startswith(logged)
    assert events[2][0] == "refused"


def test_duo_timeout_refuses(bot: Bot, fake_duo: FakeDuo) -> None:
    fake_duo.set_mode("alice", "timeout")
    r = bot.send("deploy prod-eu", user=on_slack("U0ALICE"))
    assert any("not answered in time" in line for line in r.said)
    assert bot.app.store.get(r.execution_id)["state"] == "refused"


# -- help and whoami --------------------------------------------------------------------------


def test_help_lists_only_what_you_may_run(bot: Bot) -> None:
    bob = bot.send("help", user=on_slack("U0BOB")).text
    alice = bot.send("help", user=on_slack("U0ALICE")).text
    assert "test.deploy" in bob and "test.admin" not in bob and "test.deep" not in bob
    assert "test.admin" in alice and "history" in alice and "test.destroy" in alice


def test_whoami_shows_email_groups_and_mfa(bot: Bot) -> None:
    text = bot.send("whoami", user=on_slack("U0ALICE")).text
    assert "alice@example.com" in text and "U0ALICE" in text
    assert "everyone-admin, ops, platform-admins" in text
    assert "Needs a Duo push: test.deploy (environment=prod*)" in text
    assert "Command line only, never from chat: test.destroy (environment=prod*)" in text


# -- configuration ----------------------------------------------------------------------------


def test_secrets_come_only_from_the_environment(config: Config, monkeypatch: Any) -> None:
    monkeypatch.delenv("TEST_LDAP_PASSWORD")
    with pytest.raises(ConfigError, match="bind_password_env: environment variable"):
        build_directory(config)
    monkeypatch.delenv("TEST_DUO_SKEY")
    with pytest.raises(ConfigError, match="skey_env: environment variable TEST_DUO_SKEY"):
        build_second_factor(config, None)


@pytest.mark.parametrize(
    ("security", "message"),
    [
        ("security:\n  polcy: rbac.yaml\n", "security.polcy: unknown setting"),
        ("security:\n  directory: {backend: nis}\n", "expected static or ldap"),
        ("security:\n  directory: {backend: ldap, url: x}\n", "security.directory.group_base"),
        ("security:\n  directory: {backend: static, url: x}\n", "static takes only `path`"),
        ("security:\n  duo: {enabled: true, ikey: i, host: h}\n", "security.duo.skey_env"),
        ("security:\n  slack: {allow_guests: maybe}\n", "security.slack.allow_guests"),
        ("security:\n  policy: missing.yaml\n", "cannot read the policy"),
    ],
)
def test_configuration_errors_name_the_key(tmp_path: Path, security: str, message: str) -> None:
    path = write_config(tmp_path, security)
    (path.parent / "directory.yaml").write_text("users: {}\n")
    cfg = load_config(path, env={})
    with pytest.raises(ConfigError) as err:
        build_authorizer(cfg)
        build_second_factor(cfg, None)
    assert message in str(err.value)


def test_team_ids_default_to_the_bots_workspace(tmp_path: Path, slack: FakeSlack) -> None:
    path = write_config(tmp_path, "security:\n  directory: {backend: static}\n")
    (path.parent / "directory.yaml").write_text("users: {}\n")
    client = WebClient(token=slack.bot_token, base_url=slack.api_url, timeout=5)
    identity = build_slack_identity(load_config(path, env={}), client)
    assert identity.team_ids == {slack.team_id}


def test_refusal_after_users_info_names_the_account_in_the_audit(bot: Bot) -> None:
    bot.send("deploy demo01", user=on_slack("U0GONE"))
    row = refused_rows(bot, "U0GONE")[-1]
    assert row["detail"] == "slack identity: deactivated (alice@example.com)"
