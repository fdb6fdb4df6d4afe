"""Issue 9, operator experience: ``marvin check`` as the full gate, clean start-up errors,
``marvin run`` (--json, --version, refs, confirmation without a TTY) and the console."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    for name in ("marvin.yaml", "rbac.yaml", "directory.yaml", "vocabulary.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    shutil.copytree(ROOT / "config" / "templates", tmp_path / "templates")
    text = (tmp_path / "marvin.yaml").read_text()
    text = text.replace("paths: [../commands]", f"paths: [{ROOT / 'commands'}]")
    (tmp_path / "marvin.yaml").write_text(text)
    return tmp_path / "marvin.yaml"


def marvin(cfg: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "marvin", "--config", str(cfg), *args],
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
        env={**os.environ, "MARVIN_STATE": str(cfg.parent / "state.sqlite3"), **(env or {})},
    )  # fmt: skip


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("marvin: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("logging:\n", "slack:\n  bogus_key: 1\nlogging:\n", "slack.bogus_key: unknown setting"),
        ("enabled: ${DUO_ENABLED:-false}", "enabled: maybe", "security.duo.enabled: expected"),
        ("logging:\n", "duo:\n  enabled: true\nlogging:\n", "duo: belongs under security.duo"),
        ("logging:\n", "rbac: rbac.yaml\nlogging:\n", "rbac: belongs under security.policy"),
        ("vocabulary: vocabulary.yaml", "vocabulary: nowhere.yaml", "nowhere.yaml: cannot read"),
    ],
)
def test_check_rejects_what_serve_would(cfg: Path, old: str, new: str, says: str) -> None:
    edit(cfg, old, new)
    assert says in one_error(marvin(cfg, "check"))


def test_check_warns_about_unknown_groups_and_commands_no_rule_allows(cfg: Path) -> None:
    rbac = cfg.parent / "rbac.yaml"
    edit(rbac, "groups: [ops]\n", "groups: [developpers]\n")  # a typo
    ok = marvin(cfg, "check")
    assert ok.returncode == 0, ok.stderr
    assert "group 'developpers' is in no directory group" in ok.stderr
    assert "no rule allows" not in ok.stderr  # every shipped command has a rule
    text = rbac.read_text()
    rbac.write_text(text.replace("  - name: jenkins-scale", "  - name: jenkins-scale-x", 1))
    commands = cfg.parent / "cmds"
    commands.mkdir()
    (commands / "extra.py").write_text(
        "from marvin import command\n\n"
        "@command('zz.orphan', 'list orphans', description='No rule', examples=['list orphans'])\n"
        "def orphan(ctx):\n    return 'x'\n"
    )
    edit(cfg, f"paths: [{ROOT / 'commands'}]", f"paths: [{ROOT / 'commands'}, cmds]")
    warned = marvin(cfg, "check")
    assert warned.returncode == 0, warned.stderr
    assert "no rule allows zz.orphan" in warned.stderr


def test_check_passes_without_the_secrets_and_says_so(cfg: Path) -> None:
    edit(cfg, "enabled: ${DUO_ENABLED:-false}", "enabled: true")
    env = {"DUO_SKEY": "", "DUO_IKEY": "DIXXXXXXXXXXXXXXXXXX", "DUO_HOST": "api-x.duosecurity.com"}
    result = marvin(cfg, "check", env=env)
    assert result.returncode == 0, result.stderr
    assert "security.duo.skey_env: DUO_SKEY is not set here" in result.stderr


def test_check_warns_about_a_setting_that_no_longer_does_anything(cfg: Path) -> None:
    quiet = marvin(cfg, "check")
    assert quiet.returncode == 0 and "dedupe_max" not in quiet.stderr, quiet.stderr
    edit(cfg, "logging:\n", "slack:\n  dedupe_max: 5000\nlogging:\n")
    warned = marvin(cfg, "check")
    assert warned.returncode == 0, warned.stderr  # an old config still loads
    assert "warning: slack.dedupe_max: no longer used" in warned.stderr


@pytest.mark.parametrize("command", [["check"], ["run", "marvin.whoami"], ["shell"], ["serve"]])
def test_a_policy_that_does_not_fit_the_table_is_one_clean_line(
    cfg: Path, command: list[str]
) -> None:
    rbac = cfg.parent / "rbac.yaml"
    rbac.write_text(rbac.read_text() + "  - {commands: [nosuch.*], groups: [ops]}\n")
    line = one_error(marvin(cfg, *command, env={"SLACK_BOT_TOKEN": "", "SLACK_APP_TOKEN": ""}))
    assert "'nosuch.*' matches no command" in line and "rbac.yaml" in line


EXTRA = """
import time
from marvin import command
from marvin.actions import ActionError


@command("zz.nap", "nap for {{ seconds }}", description="Sleeps", examples=["nap for 1"])
def nap(ctx, seconds):
    ctx.progress("napping")
    ctx.sleep(float(seconds))
    return f"*napped* {seconds}"


@command("zz.clash", "make a clash", description="Fails as expected", examples=["make a clash"])
def clash(ctx):
    raise ActionError("stack demo01 already exists")


@command("zz.risky", "risky thing", description="Asks first", examples=["risky thing"],
         confirm=True)
def risky(ctx):
    return "risky done"
"""


@pytest.fixture
def extra(cfg: Path) -> Path:
    (cfg.parent / "cmds").mkdir()
    (cfg.parent / "cmds" / "zz.py").write_text(EXTRA)
    edit(cfg, f"paths: [{ROOT / 'commands'}]", f"paths: [{ROOT / 'commands'}, cmds]")
    edit(cfg, "lint: strict", "lint: 'off'")
    rbac = cfg.parent / "rbac.yaml"
    rbac.write_text(rbac.read_text() + "  - {commands: ['zz.*'], groups: [ops]}\n")
    return cfg


def test_run_json_is_one_object_for_other_programs(extra: Path) -> None:
    result = marvin(extra, "run", "--json", "zz.nap", "seconds=0")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert got["state"] == "succeeded" and got["execution_id"].startswith("ex-")
    assert got["result"].startswith("napped 0") and got["ref"] == "zz.nap"
    assert [r["kind"] for r in got["replies"]] == ["progress", "say"]
    failed = json.loads(marvin(extra, "run", "--json", "zz.clash").stdout)
    assert failed["state"] == "failed" and "already exists" in failed["reason"]


def test_run_version_refs_and_confirmation_without_a_terminal(extra: Path) -> None:
    version = marvin(extra, "--version")
    assert version.returncode == 0 and version.stdout.startswith("marvin ")
    who = marvin(extra, "run", "whoami")
    assert who.returncode == 0 and "You are operator@example.com" in who.stdout
    typo = marvin(extra, "run", "platfrom.create")
    assert typo.returncode == 2 and "Did you mean: platform.create" in typo.stderr
    asked = marvin(extra, "run", "zz.risky")
    assert asked.returncode == 1 and "--yes" in asked.stderr and "risky done" not in asked.stdout
    assert "risky done" in marvin(extra, "run", "zz.risky", "--yes").stdout


def test_console_shows_plain_text_without_log_lines_or_tracebacks(extra: Path) -> None:
    out = marvin(extra, "shell", stdin="nap for 0\nmake a clash\n")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "napped 0" in text and "*napped*" not in text  # Slack markup shown plainly
    assert "already exists" in text
    assert "Traceback" not in text and "audit" not in text and "[info" not in text
    log = (extra.parent / "marvin.log").read_text()  # the log lines went to the log file
    assert "audit" in log and "execution failed" in log and "Traceback" not in log


def test_ctrl_c_in_the_console_cancels_the_running_command(extra: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "marvin", "--config", str(extra), "shell"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "MARVIN_STATE": str(extra.parent / "state.sqlite3")},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("nap for 30\n")
    proc.stdin.flush()
    while "napping" not in (line := proc.stdout.readline()):
        assert line, "the shell ended early"
    proc.send_signal(signal.SIGINT)
    proc.stdin.write("whoami\n")
    proc.stdin.flush()
    proc.stdin.close()
    rest = proc.stdout.read()
    assert proc.wait(20) == 0, rest
    assert "Cancelled `ex-" in rest and "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert "You are operator@example.com" in rest  # the console carried on


def test_a_pattern_is_not_shown_where_the_help_says_it() -> None:
    from marvin.core.params import ENVIRONMENT, ParamError

    with pytest.raises(ParamError) as err:
        ENVIRONMENT.convert("environment", "Demo 01!")
    assert "lowercase letter" in str(err.value) and "[a-z]" not in str(err.value)
