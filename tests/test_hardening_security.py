"""Issue 9, security: each failure the outside trials found, with the regression test for it."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from slack_sdk import WebClient

from marvin import Param, command
from marvin.config import Config, load_config
from marvin.core.authz import Refused
from marvin.core.model import Message, Reply
from marvin.frontends.slack.serve import front_end
from marvin.logs import setup_logging
from marvin.runtime.execution import Context
from marvin.security import build_authorizer
from marvin.security.slack_identity import SlackIdentity
from marvin.testing import Bot
from tests.fakes.slack import FakeSlack
from tests.fakes.slapd import Slapd, group_dn, slapd_fixture, user_dn  # noqa: F401  (fixture)
from tests.test_security_chain import on_slack, write_config

pytestmark = pytest.mark.timeout(60)

SECRET = "hunter2-swordfish"


@command("test.store", "store {{ name }} as {{ value }}", description="Stores a secret",
         examples=["store token as abc"], params={"value": Param(secret=True)})  # fmt: skip
def store_secret(ctx: Context, name: str, value: str) -> str:
    ctx.log.info("storing", name=name, note=f"about to send {value}")
    structlog.get_logger("elsewhere").warning("library line", got=[value, {"v": value}])
    logging.getLogger("some.library").warning("stdlib line with %s", value)
    try:
        raise ValueError(f"backend rejected value {value!r}")
    except ValueError:
        ctx.log.exception("backend call failed")
    raise ValueError(f"backend rejected value {value!r}")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    yield io.StringIO()
    structlog.reset_defaults()
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("json", [True, False])
def test_secret_values_are_masked_in_every_log_line_and_traceback(
    marvin_bot: Callable[..., Bot], captured: io.StringIO, json: bool
) -> None:
    for handler in list(logging.getLogger().handlers):  # basicConfig only acts on a bare root
        logging.getLogger().removeHandler(handler)
    setup_logging(json=json, stream=captured)
    bot = marvin_bot(store_secret)
    r = bot.send(f"store db as {SECRET}")
    assert r.reactions[-1] == "failed"
    logged = captured.getvalue()
    assert "backend call failed" in logged and "Traceback" in logged  # the lines were written
    assert "stdlib line with ***" in logged and "library line" in logged
    assert SECRET not in logged, logged
    assert SECRET not in r.text and SECRET not in repr(bot.app.store.audit_rows())


# -- the security chain on real slapd and the fake Slack ----------------------------------------


RAN: list[str] = []


@command("test.deploy", "deploy {{ environment }}", description="Deploy",
         examples=["deploy demo01"])  # fmt: skip
def deploy(ctx: Context, environment: str) -> str:
    RAN.append(f"deploy {environment}")
    return f"deployed {environment}"


@command("test.destroy", "destroy {{ environment }}", description="Destroy",
         examples=["destroy demo01"])  # fmt: skip
def destroy(ctx: Context, environment: str) -> str:
    RAN.append(f"destroy {environment}")
    return f"destroyed {environment}"


POLICY = """
rules:
  - {name: prod, commands: [test.deploy], targets: {environment: ["prod*"]}, groups: [developers],
     mfa: true, confirm: true}
  - {name: destroy, commands: [test.destroy], groups: [developers], confirm: true}
  - {commands: ["test.*"], groups: [developers, ops]}
"""

SECURITY = """
security:
  policy: rbac.yaml
  directory:
    backend: ldap
    url: {url}
    bind_dn: "{bind_dn}"
    bind_password_env: TEST_LDAP_PASSWORD
    user_base: "{people}"
    group_base: "{groups}"
  slack:
    team_ids: [{team}]
"""


class Deferred:
    """A responder that keeps the confirmation question open until the test answers it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.answer: Callable[[bool], None] | None = None

    def say(self, reply: str | Reply) -> None:
        self.lines.append(reply.text if isinstance(reply, Reply) else reply)

    def whisper(self, text: str) -> None:
        self.lines.append(text)

    def progress(self, text: str) -> None:
        pass

    def react(self, state: str) -> None:
        pass

    def confirm(self, prompt: str, on_result: Callable[[bool], None]) -> None:
        self.lines.append(prompt)
        self.answer = on_result

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.start() as fake:
        fake.add_user("U0BOB", email="bob@example.com")
        fake.add_user("U0GONE", email="alice@example.com", deleted=True)
        fake.add_user("U0NEW", email="newbie@example.com")
        yield fake


@pytest.fixture
def chain(tmp_path: Any, slapd: Slapd, slack: FakeSlack, monkeypatch: Any, marvin_bot: Any) -> Bot:
    monkeypatch.setenv("TEST_LDAP_PASSWORD", slapd.root_pw)
    security = SECURITY.format(
        url=slapd.url, bind_dn=slapd.root_dn, people=slapd.people, groups=slapd.groups,
        team=slack.team_id,
    )  # fmt: skip
    config: Config = load_config(write_config(tmp_path, security, POLICY), env={})
    client = WebClient(token=slack.bot_token, base_url=slack.api_url, timeout=5)
    RAN.clear()
    return marvin_bot(
        deploy, destroy, authorizer=build_authorizer(config), config=config,
        frontends=[front_end(config, client)],
    )  # fmt: skip


def ask(bot: Bot, text: str, uid: str = "U0BOB") -> tuple[Deferred, str | None]:
    responder = Deferred()
    msg = Message(text=text, user=on_slack(uid), responder=responder, channel="C-test")
    return responder, bot.app.process(msg)


def drop_from_developers(slapd: Slapd, uid: str) -> None:
    conn = slapd.admin()
    conn.modify(group_dn("developers"), {"member": [("MODIFY_DELETE", [user_dn(uid)])]})
    assert conn.result["result"] == 0, conn.result
    conn.unbind()


def test_group_removal_is_seen_at_confirm(chain: Bot, slapd: Slapd) -> None:
    asked, _ = ask(chain, "destroy demo01")
    assert asked.answer is not None, asked.text  # the question is open
    drop_from_developers(slapd, "bob")  # removed while the buttons wait
    asked.answer(True)
    assert "not allowed" in asked.text and RAN == []
    events = [r["event"] for r in chain.app.store.audit_rows() if r["user_id"] == "U0BOB"]
    assert events == ["confirm_requested", "confirmed", "refused"]


def test_a_command_needing_confirm_reads_groups_fresh_the_first_time(
    chain: Bot, slapd: Slapd
) -> None:
    ask(chain, "deploy demo01")  # groups now cached for 300 s
    chain.app.wait(warm_id(chain), 10)
    drop_from_developers(slapd, "bob")
    ask(chain, "deploy demo02")  # not sensitive: the cached groups still decide
    chain.app.wait(warm_id(chain), 10)
    assert RAN == ["deploy demo01", "deploy demo02"]
    asked, _ = ask(chain, "destroy demo01")  # sensitive: read past the cache
    assert asked.answer is None and "not allowed" in asked.text, asked.text


def warm_id(bot: Bot) -> str:
    return bot.app.store.recent("U0BOB", 1)[0]["id"]


def test_sensitive_commands_fail_closed_when_the_directory_is_down(
    chain: Bot, slapd: Slapd
) -> None:
    ask(chain, "deploy demo01")
    chain.app.wait(warm_id(chain), 10)
    slapd.stop()
    asked, _ = ask(chain, "destroy demo01")
    assert asked.answer is None and "can't check your groups" in asked.text, asked.text
    assert RAN == ["deploy demo01"]


def test_sensitive_commands_fail_closed_when_users_info_is_down(
    chain: Bot, slack: FakeSlack
) -> None:
    ask(chain, "deploy demo01")
    chain.app.wait(warm_id(chain), 10)
    slack.fail_next("users.info", 200, error="fatal_error", times=5)
    asked, _ = ask(chain, "destroy demo01")
    assert asked.answer is None and "can't tell who you are" in asked.text, asked.text


@pytest.mark.parametrize(
    ("uid", "email"), [("U0GONE", "alice@example.com"), ("U0NEW", "newbie@example.com")]
)
def test_identity_refusals_fill_the_audit_email(chain: Bot, uid: str, email: str) -> None:
    asked, _ = ask(chain, "deploy demo01", uid)
    rows = [r for r in chain.app.store.audit_rows() if r["user_id"] == uid]
    assert [r["event"] for r in rows] == ["refused"] and rows[0]["email"] == email, rows


def test_mfa_without_duo_is_refused_before_asking_and_names_the_setting(chain: Bot) -> None:
    asked, ex_id = ask(chain, "deploy prod-eu")
    assert asked.answer is None and ex_id is None, asked.text
    assert "security.duo" in asked.text and RAN == []
    rows = [r for r in chain.app.store.audit_rows() if r["user_id"] == "U0BOB"]
    assert [r["event"] for r in rows] == ["refused"] and "security.duo" in rows[0]["detail"]


# -- a slow users.info for one user ---------------------------------------------------------------


def slow_users_info(fake: FakeSlack, uid: str, seconds: float) -> None:
    """users.info answers ``uid`` after ``seconds``; everyone else at once."""
    _token, original = fake.web.methods["users.info"]

    def handler(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("user") == uid:
            time.sleep(seconds)
        return original(args)

    fake.register_method("users.info", handler)


def test_a_slow_users_info_refuses_after_its_timeout(slack: FakeSlack) -> None:
    slow_users_info(slack, "U0BOB", 5)
    client = WebClient(token=slack.bot_token, base_url=slack.api_url, timeout=30)
    ident = SlackIdentity(client, team_ids={slack.team_id}, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(Refused) as err:
        ident(on_slack("U0BOB"))
    assert time.monotonic() - started < 3 and "users.info failed" in err.value.log_reason
