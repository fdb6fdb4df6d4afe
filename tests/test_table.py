"""The decorator, the table's start-up checks, matching and dispatch through marvin_bot."""

from __future__ import annotations

import pytest

from marvin import ENVIRONMENT, Choice, Integer, command
from marvin.bootstrap import build_table
from marvin.core.authz import LocalAuthorizer
from marvin.core.loader import load_handlers
from marvin.core.registry import SPEC_ATTR, TableError


@command(
    "widget.scale",
    "scale widget group {{ group }} to {{ count }}( in {{ region='us-east-1' }})",
    description="Scale a widget group",
    examples=["scale widget group web to 3", "scale widget group web to 3 in eu-west-1"],
    params={"count": Integer(min=0, max=20), "region": Choice(choices=("us-east-1", "eu-west-1"))},
)
def scale(ctx, group: str, count: int, region: str = "us-east-1") -> str:  # noqa: ANN001
    return f"scaled {group} to {count} in {region} as {ctx.user.email}"


@command(
    "widget.restart",
    "restart widget {{ environment }}",
    description="Restart widgets",
    examples=["restart widget demo01"],
    params={"environment": ENVIRONMENT},
)
def restart(ctx, environment: str) -> None:  # noqa: ANN001
    raise RuntimeError("boom: secret internals")


def test_decorator_returns_function_unchanged() -> None:
    assert scale.__name__ == "scale"
    (spec,) = getattr(scale, SPEC_ATTR)
    assert spec.ref == "widget.scale" and spec.family == "widget"
    with pytest.raises(AttributeError):
        spec.ref = "x.y"  # type: ignore[misc]


def test_duplicate_ref_is_a_startup_error() -> None:
    def other(ctx, group, count):  # noqa: ANN001, ANN202
        return None

    command(
        "widget.scale", "resize {{ group }} {{ count }}", description="d", examples=["resize a 1"]
    )(other)
    with pytest.raises(TableError, match="duplicate command ref 'widget.scale'"):
        build_table([scale, other])


def test_example_matching_another_command_names_both() -> None:
    def greedy(ctx, anything):  # noqa: ANN001, ANN202
        return None

    command(
        "widget.any",
        "scale widget {{ anything }}",
        description="d",
        examples=["scale widget everything"],
    )(greedy)
    with pytest.raises(TableError, match=r"widget\.(scale|any).*also matches widget\.(any|scale)"):
        build_table([scale, greedy])


def test_example_must_match_own_format_and_exist() -> None:
    def f(ctx, x):  # noqa: ANN001, ANN202
        return None

    command("a.b", "show a {{ x }}", description="d", examples=["show b 1"])(f)
    with pytest.raises(TableError, match="does not match its formats"):
        build_table([f])

    def g(ctx, x):  # noqa: ANN001, ANN202
        return None

    command("a.c", "show c {{ x }}", description="d", examples=[])(g)
    with pytest.raises(TableError, match="at least one example"):
        build_table([g])


def test_format_parameter_must_exist_in_handler() -> None:
    def f(ctx):  # noqa: ANN001, ANN202
        return None

    command("a.b", "show {{ x }}", description="d", examples=["show 1"])(f)
    with pytest.raises(TableError, match="no parameter 'x'"):
        build_table([f])


def test_bad_ref_and_unknown_option() -> None:
    with pytest.raises(TableError, match="family.name"):
        command("NoDot", "x", description="d", examples=["x"])
    with pytest.raises(TableError, match="unknown option"):
        command("a.b", "x", description="d", examples=["x"], colour="red")


def test_table_is_frozen() -> None:
    table = build_table([scale])
    with pytest.raises(TypeError):
        table._frozen["x.y"] = None  # type: ignore[index]


def test_loader_reads_folder(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "ops.py").write_text(
        "from marvin import command\n"
        "@command('ops.ping', 'ping ops', description='d', examples=['ping ops'])\n"
        "def ping(ctx):\n    return 'pong'\n"
    )
    (tmp_path / "_private.py").write_text("raise SystemExit('must not be imported')\n")
    fns = load_handlers([tmp_path])
    assert [f.__name__ for f in fns] == ["ping"]
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    with pytest.raises(TableError, match="broken.py: failed to import"):
        load_handlers([tmp_path])


def test_dispatch_runs_on_job_thread_with_types(marvin_bot) -> None:  # noqa: ANN001
    import threading

    seen = {}

    @command("probe.thread", "run probe", description="d", examples=["run probe"])
    def probe(ctx) -> str:  # noqa: ANN001
        seen["thread"] = threading.current_thread().name
        seen["id"] = ctx.execution_id
        return "ok"

    bot = marvin_bot(scale, probe)
    r = bot.send("scale widget group web to 3 in EU-WEST-1")
    assert r.said[-1].startswith("scaled web to 3 in eu-west-1 as tester@example.com")
    r2 = bot.send("run probe")
    assert (
        seen["thread"].startswith("marvin-job")
        and seen["thread"] != threading.current_thread().name
    )
    assert seen["id"] == r2.execution_id and r2.execution_id.startswith("ex-")


def test_validation_messages_name_parameter(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(scale)
    r = bot.send("scale widget group web to 99")
    assert "count: '99' is out of range; expected a whole number from 0 to 20" in r.whispered[0]
    r = bot.send("scale widget group web to many")
    assert "count: 'many' is not a whole number" in r.whispered[0]
    r = bot.send("scale widget group web to 3 colour=red")
    assert (
        "colour: is not a parameter of widget.scale; valid parameters: group, count, region"
        in (r.whispered[0])
    )
    assert all(row["event"] == "invalid" for row in bot.app.store.audit_rows())


def test_unknown_and_did_you_mean(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(scale, restart)
    r = bot.send("scale widgt group web to 3 please")
    assert r.whispered[0].startswith("I don't know that command")
    assert "scale widget group <group> to <count>" in r.whispered[0]
    assert "help" in r.whispered[0]
    r = bot.send("what is the meaning of life")
    assert "Did you mean" not in r.whispered[0]


def test_ambiguous_text_is_refused(marvin_bot) -> None:  # noqa: ANN001
    @command("x.one", "show thing {{ a }}", description="d", examples=["show thing 1 2 3"])
    def one(ctx, a):  # noqa: ANN001, ANN202
        return "one"

    @command("x.two", "show thing {{ a }} {{ b }}", description="d", examples=["show thing a b"])
    def two(ctx, a, b):  # noqa: ANN001, ANN202
        return "two"

    with pytest.raises(TableError, match="also matches"):
        build_table([one, two])


def test_handler_exception_is_short_and_logged(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(restart)
    r = bot.send("restart widget demo01")
    assert r.reactions == ["accepted", "failed"]
    assert "widget.restart` failed" in r.said[-1] and r.execution_id in r.said[-1]
    assert "Traceback" not in r.text
    row = bot.app.store.get(r.execution_id)
    assert row["state"] == "failed" and "boom" in row["reason"]


def test_help_and_whoami(marvin_bot) -> None:  # noqa: ANN001
    bot = marvin_bot(scale, restart, user="alice@example.com")
    r = bot.send("help")
    text = r.said[0]
    assert text.index("*marvin*") < text.index("*widget*")
    assert "`scale widget group <group> to <count> [in <region=us-east-1>]`" in text
    assert r.blocks and r.blocks[0][0]["type"] == "section"
    r = bot.send("help restart")
    assert "widget.restart" in r.said[0] and "widget.scale" not in r.said[0]
    r = bot.send("help widget.scale")
    assert "`count` (required): a whole number from 0 to 20" in r.said[0]
    assert "`region` (default `us-east-1`)" in r.said[0]
    assert "scale widget group web to 3 in eu-west-1" in r.said[0]
    r = bot.send("whoami")
    assert "alice@example.com" in r.said[0] and "ops" in r.said[0]


def test_big_help_falls_back_to_text_and_reply_blocks_carry_id(marvin_bot) -> None:  # noqa: ANN001
    from marvin.core.help import overview
    from marvin.core.model import Reply

    handlers = []
    for i in range(60):

        def h(ctx):  # noqa: ANN001, ANN202
            return None

        h.__module__ = "bighelp"
        command(
            f"fam{i}.show", f"show fam{i} things", description="d", examples=[f"show fam{i} things"]
        )(h)
        handlers.append(h)
    reply = overview(build_table(handlers))
    assert reply.blocks is None and "fam59.show" in reply.text

    @command("x.rich", "show rich", description="d", examples=["show rich"])
    def rich(ctx):  # noqa: ANN001, ANN202
        return Reply("rich", [{"type": "section", "text": {"type": "mrkdwn", "text": "rich"}}])

    r = marvin_bot(rich).send("show rich")
    assert r.execution_id in str(r.blocks[-1][-1])


def test_invalid_secret_is_never_echoed(marvin_bot) -> None:  # noqa: ANN001
    from marvin import Text

    @command(
        "vault.set",
        "set vault token to {{ token }}",
        description="d",
        examples=["set vault token to abcdef123456"],
        params={"token": Text(pattern=r"^[a-z0-9]{12}$", secret=True)},
    )
    def set_token(ctx, token):  # noqa: ANN001, ANN202
        return "ok"

    bot = marvin_bot(set_token)
    r = bot.send("set vault token to Hunter2-Secret")
    assert "token: the value given is not valid" in r.whispered[0]
    assert "Hunter2" not in r.text
    assert all("Hunter2" not in str(row) for row in bot.app.store.audit_rows())
    ok = bot.send("set vault token to abcdef123456")
    assert ok.reactions[-1] == "succeeded"
    rows = [row for row in bot.app.store.audit_rows() if row["event"] == "accepted"]
    assert "abcdef123456" not in str(rows) and "***" in rows[0]["params"]


def test_pair_for_a_required_placeholder_never_becomes_its_value(marvin_bot) -> None:  # noqa: ANN001
    @command(
        "app.deploy",
        "deploy app {{ environment }}",
        description="d",
        examples=["deploy app demo01"],
        params={"environment": ENVIRONMENT},
    )
    def deploy(ctx, environment):  # noqa: ANN001, ANN202
        return f"deployed [{environment}]"

    bot = marvin_bot(deploy)
    r = bot.send("deploy app environment=prod")
    assert r.execution_id is None and "I don't know that command" in r.whispered[0]
    assert bot.send("deploy app demo01").said[-1].startswith("deployed [demo01]")


def test_two_forms_of_one_command_reading_differently_are_ambiguous(marvin_bot) -> None:  # noqa: ANN001
    @command(
        "app.ship",
        "ship {{ environment }}",
        "ship {{ service }} to {{ environment }}",
        description="d",
        examples=["ship demo01", "ship api to demo01"],
    )
    def ship(ctx, environment, service="all"):  # noqa: ANN001, ANN202
        return f"{service} -> {environment}"

    with pytest.raises(TableError, match="matches two of its formats with different values"):
        build_table([ship])
    from marvin.core.matcher import Ambiguous, Matcher
    from marvin.core.registry import CommandTable

    result = Matcher(CommandTable.build([ship])).match("ship api to prod")
    assert isinstance(result, Ambiguous) and "more than one form of app.ship" in result.message()


def test_environment_rejects_a_trailing_newline() -> None:
    from marvin.core.params import ParamError

    with pytest.raises(ParamError):
        ENVIRONMENT.convert("environment", "demo01\n")
    assert ENVIRONMENT.convert("environment", "demo01") == "demo01"


class _FlipAuthorizer(LocalAuthorizer):
    """Allows (asking for confirmation) until ``revoked``; refuses ``stranger`` outright."""

    def __init__(self) -> None:
        from marvin.testing import TestDirectory

        self.inner = LocalAuthorizer(TestDirectory({"tester@example.com": ["ops"]}))
        self.revoked = False

    def identify(self, user, *, fresh=False):  # noqa: ANN001, ANN201
        from marvin.core.authz import Refused

        if user.email and user.email.startswith("stranger"):
            raise Refused("You're not from this workspace.")
        return self.inner.identify(user, fresh=fresh)

    def decide(self, user, cmd, params):  # noqa: ANN001, ANN201
        from marvin.core.authz import Decision

        if cmd.spec.family == "marvin":
            return Decision(True)
        return Decision(False, "revoked") if self.revoked else Decision(True, confirm=True)

    def visible(self, user, cmd) -> bool:  # noqa: ANN001
        return True


def test_strangers_get_no_usage_and_confirmation_rechecks(marvin_bot) -> None:  # noqa: ANN001
    authz = _FlipAuthorizer()
    bot = marvin_bot(scale, authorizer=authz)
    r = bot.send("scale widget group web to lots", user="stranger@example.com")
    assert r.whispered == ["You're not from this workspace."]
    assert bot.app.store.audit_rows()[-1]["event"] == "refused"

    class Later:  # a confirmation answered after the user lost their rights
        def __init__(self, replies) -> None:  # noqa: ANN001
            self.r = replies
            self.say, self.whisper, self.react = replies.say, replies.whisper, replies.react
            self.progress = replies.progress_

        def confirm(self, prompt, on_result) -> None:  # noqa: ANN001
            authz.revoked = True
            on_result(True)

    from marvin.core.model import Message
    from marvin.testing import Replies

    replies = Replies()
    msg = Message("scale widget group web to 3", bot.user, Later(replies), channel="C1")
    assert bot.app.process(msg) is None
    assert replies.whispered == ["revoked"]
    events = [row["event"] for row in bot.app.store.audit_rows()]
    assert events[-3:] == ["confirm_requested", "confirmed", "refused"]


def test_failure_text_hides_secret_values(marvin_bot) -> None:  # noqa: ANN001
    from marvin import Text

    @command(
        "vault.login",
        "login to vault with {{ token }}",
        description="d",
        examples=["login to vault with abc"],
        params={"token": Text(secret=True)},
    )
    def login(ctx, token):  # noqa: ANN001, ANN202
        raise ValueError(f"bad token {token!r}")

    bot = marvin_bot(login)
    r = bot.send("login to vault with s3cr3t-value")
    assert r.reactions[-1] == "failed" and "bad token '***'" in r.said[-1]
    assert "s3cr3t" not in r.text and "s3cr3t" not in str(bot.app.store.get(r.execution_id))
