"""Command packs end to end: the example pack (examples/marvin-pack-example) and the test packs
(tests/packs/marvin-pack-testing) are built as real wheels once per session, installed into a
temporary virtual environment, and Marvin runs there as ``python -m marvin`` (check, packs,
run, shell) with packs enabled or not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.consul import FakeConsul

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "marvin-pack-example"
TESTING = ROOT / "tests" / "packs" / "marvin-pack-testing"
pytestmark = pytest.mark.timeout(120)

DIRECTORY = """\
users:
  dev@example.com: {groups: [developers]}
  admin@example.com: {groups: [platform-admins]}
  guest@example.com: {groups: [visitors]}
  operator@example.com: {groups: [ops]}
groups: {}
"""


@dataclass
class PackEnv:
    python: Path
    root: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MARVIN_", "SLACK_"))}
        # This checkout's marvin, whatever else is installed; the packs come from the venv.
        env["PYTHONPATH"] = str(ROOT)
        return {**env, **extra}

    def config(self, name: str, packs: list[str], rules: str, extra: str = "") -> Path:
        where = self.root / name
        where.mkdir()
        (where / "commands").mkdir()
        (where / "directory.yaml").write_text(DIRECTORY)
        (where / "rbac.yaml").write_text(textwrap.dedent(rules))
        config = where / "marvin.yaml"
        config.write_text(
            f"commands: {{paths: [commands], packs: {packs}}}\n"
            f"vocabulary: {ROOT / 'config' / 'vocabulary.yaml'}\n"
            "state: {sqlite: state.sqlite3}\n"
            "jobs: {workers: 4, grace_seconds: 1}\n"
            "security: {policy: rbac.yaml, directory: {backend: static, path: directory.yaml}}\n"
            + textwrap.dedent(extra)
        )
        return config

    def marvin(
        self, config: Path, *args: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), "-m", "marvin", "--config", str(config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,  # not the checkout: the packs must come from the venv's metadata
            env=self.env(**env),
        )


def _wheel(source: Path, build: Path, out: Path) -> None:
    shutil.copytree(source, build, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(out), str(build)],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def packs(tmp_path_factory: pytest.TempPathFactory) -> PackEnv:
    """Both wheels built (in parallel, offline) and installed into one venv."""
    root = tmp_path_factory.mktemp("packs")
    wheels = root / "wheels"
    with ThreadPoolExecutor(2) as pool:
        for f in [
            pool.submit(_wheel, EXAMPLE, root / "example", wheels),
            pool.submit(_wheel, TESTING, root / "testing", wheels),
        ]:
            f.result()
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=60,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        + ["--no-index", *map(str, sorted(wheels.glob("*.whl")))],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return PackEnv(python, root)


INCLUDE_EXAMPLE = """\
rules:
  - include: example
"""


def test_enabled_pack_runs_from_the_command_line_with_its_config(packs: PackEnv) -> None:
    config = packs.config("run", ["example"], INCLUDE_EXAMPLE, "example: {greeting: Howdy}\n")
    run = packs.marvin(config, "run", "example.greet", "name=Ada", "--as", "dev@example.com")
    assert run.returncode == 0, run.stderr
    assert "Howdy, Ada! (from demo01)" in run.stdout
    # The pack's own rules apply where included: production needs platform-admins.
    prod = ["run", "example.greet", "name=Ada", "environment=prod", "--as", "dev@example.com"]
    refused = packs.marvin(config, *prod)
    assert refused.returncode == 1 and "pack example rule 1 (greet-production)" in (
        refused.stdout + refused.stderr
    )
    guest = packs.marvin(config, "run", "example.greet", "name=Ada", "--as", "guest@example.com")
    assert guest.returncode == 1 and "Howdy" not in guest.stdout


def test_enabled_pack_works_in_the_console_and_help_names_the_pack(packs: PackEnv) -> None:
    config = packs.config("shell", ["example"], INCLUDE_EXAMPLE)
    shell = packs.marvin(
        config,
        "shell",
        "--as",
        "dev@example.com",
        stdin="greet Ada in staging\nhelp example.greet\nhelp\n",
    )
    assert shell.returncode == 0, shell.stderr
    assert "Hello, Ada! (from staging)" in shell.stdout
    assert "From the command pack `example`" in shell.stdout
    assert "(example.greet, pack example)" in shell.stdout  # the overview too


def test_marvin_packs_lists_installed_packs_enabled_or_not(packs: PackEnv) -> None:
    config = packs.config("list", ["example"], INCLUDE_EXAMPLE)
    out = packs.marvin(config, "packs")
    text = out.stdout
    assert "example  marvin-pack-example 0.1.0  enabled" in text
    assert "kv  marvin-pack-testing 2.0.0  disabled" in text
    assert "example.greet" in text and "greet <name> [in <environment=demo01>]" in text
    assert "policy: ships 2 rule(s), included" in text
    assert "verbs: greet" in text and "configuration: example" in text
    assert "kv.show" in text and "configuration: kv" in text
    # sneaky cannot be loaded at all: listed with the reason, and the exit status says so.
    assert "sneaky  marvin-pack-testing 2.0.0  disabled\n  cannot be loaded:" in text
    assert out.returncode == 1


def test_check_validates_enabled_packs_and_warns_about_uncovered_commands(
    packs: PackEnv,
) -> None:
    config = packs.config("check", ["example"], "rules:\n  - {commands: [kv.show], deny: true}\n")
    bad = packs.marvin(config, "check")  # kv is not enabled: the rule names no command
    assert bad.returncode == 2 and "'kv.show' matches no command" in bad.stderr
    config = packs.config("check2", ["example"], "rules: []\n")
    ok = packs.marvin(config, "check")
    assert ok.returncode == 0, ok.stderr
    assert "packs: example 0.1.0" in ok.stdout
    assert "example.greet (pack example): no rule in the policy covers it" in ok.stderr


def test_disabled_pack_is_absent(packs: PackEnv) -> None:
    config = packs.config("off", [], "rules: []\n")
    run = packs.marvin(config, "run", "example.greet", "name=Ada")
    assert run.returncode == 2 and "no command 'example.greet'" in run.stderr
    shell = packs.marvin(config, "shell", stdin="greet Ada\n")
    assert "I don't know that command" in shell.stdout and "Hello" not in shell.stdout
    listed = packs.marvin(config, "commands")
    assert "example.greet" not in listed.stdout
    # Its policy and its configuration section are refused while it is disabled.
    inc = packs.config("off-include", [], INCLUDE_EXAMPLE)
    out = packs.marvin(inc, "check")
    assert out.returncode == 2 and "pack 'example' is not enabled" in out.stderr
    sec = packs.config("off-section", [], "rules: []\n", "example: {greeting: Hi}\n")
    out = packs.marvin(sec, "check")
    assert out.returncode == 2 and "example: unknown setting" in out.stderr


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("dup", "duplicate command ref 'example.greet'"),
        ("echo", "also matches"),
    ],
)
def test_two_packs_that_clash_fail_start_up_naming_both(
    packs: PackEnv, other: str, expected: str
) -> None:
    config = packs.config(f"clash-{other}", ["example", other], "rules: []\n")
    for args in (("check",), ("shell",)):
        out = packs.marvin(config, *args, stdin="")
        assert out.returncode == 2, out.stdout
        assert expected in out.stderr
        assert "(pack example)" in out.stderr and f"(pack {other})" in out.stderr


def test_a_bad_pack_section_is_caught_by_check(packs: PackEnv) -> None:
    config = packs.config("bad-section", ["example"], "rules: []\n", "example: {greeting: ''}\n")
    out = packs.marvin(config, "check")
    assert out.returncode == 2 and "example.greeting: expected a word or two" in out.stderr
    config = packs.config("bad-key", ["example"], "rules: []\n", "example: {shuot: true}\n")
    out = packs.marvin(config, "check")
    assert out.returncode == 2 and "example.shuot: unknown setting" in out.stderr
    # A section declared by config.yaml (package data) is typed by its defaults.
    config = packs.config("bad-kv", ["kv"], "rules: []\n", "kv: {prefix: 5}\n")
    out = packs.marvin(config, "check")
    assert out.returncode == 2 and "kv.prefix: expected text, got 5" in out.stderr


def test_a_pack_cannot_grant_itself_rights_or_take_marvins_settings(packs: PackEnv) -> None:
    greedy = packs.config("greedy", ["greedy", "example"], "rules:\n  - include: greedy\n")
    out = packs.marvin(greedy, "check")
    assert out.returncode == 2
    assert "pack greedy rule 1 (everything): '*.*' matches example.greet" in out.stderr
    sneaky = packs.config("sneaky", ["sneaky"], "rules: []\n")
    out = packs.marvin(sneaky, "check")
    assert out.returncode == 2
    assert "pack sneaky" in out.stderr
    assert "'consul' belongs to marvin.actions.consul" in out.stderr


def test_a_pack_uses_marvins_consul_client_and_its_config_defaults(packs: PackEnv) -> None:
    rules = "rules:\n  - include: kv\n"
    with FakeConsul.start() as consul:
        consul.put("demo01/teams/motd", "hello from consul")
        consul.put("demo01/other/motd", "overridden prefix")
        config = packs.config("kv", ["kv"], rules, "consul: {timeout: 2}\n")
        run = packs.marvin(
            config, "run", "kv.show", "key=motd", "environment=demo01",
            CONSUL_HTTP_ADDR=consul.address,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "demo01/teams/motd = hello from consul" in run.stdout
        config = packs.config("kv2", ["kv"], rules, "kv: {prefix: other}\n")
        run = packs.marvin(
            config, "run", "kv.show", "key=motd", "environment=demo01",
            CONSUL_HTTP_ADDR=consul.address,
        )  # fmt: skip
        assert "demo01/other/motd = overridden prefix" in run.stdout
        assert any("/v1/kv/demo01/other/motd" in r for r in map(str, consul.requests))


def test_the_example_packs_own_tests_pass_against_the_installed_pack(packs: PackEnv) -> None:
    tests = packs.root / "example" / "tests"  # the copy the wheel was built from
    out = subprocess.run(
        [str(packs.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tests.parent,
        env=packs.env(),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout
