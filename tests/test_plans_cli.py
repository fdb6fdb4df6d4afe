"""Plans from the command line, when Slack is down: ``marvin run REF ... --plan`` keeps a plan
and changes nothing; ``marvin run apply execution=<id>`` does exactly it, once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving import ROOT, marvin_yaml

pytestmark = pytest.mark.timeout(120)

COMMANDS = """
from pathlib import Path
from marvin import command
from marvin.runtime.plans import Plan, plans

VALUE = Path(__file__).parent.parent / "value.txt"


def plan_bump(ctx, to):
    old = VALUE.read_text()
    return Plan(f"value {old} → {to}", basis={"value": old})


@plans(plan_bump)
@command("test.bump", "bump to {{ to }}", description="Set the value", examples=["bump to 5"])
def bump(ctx, to):
    VALUE.write_text(to)
    return f"value is now {to}"
"""


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    return subprocess.run(
        [sys.executable, "-m", "marvin", "--config", str(config), *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plan_then_apply_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "bumping.py").write_text(COMMANDS)
    (tmp_path / "rbac.yaml").write_text("rules:\n  - commands: ['test.*']\n    everyone: true\n")
    (tmp_path / "value.txt").write_text("1")
    config = marvin_yaml(
        tmp_path,
        directory="users:\n  alice@example.com: {groups: [developers]}\n",
        commands={"paths": ["commands"], "lint": "off"},
        security={"policy": "rbac.yaml"},
    )
    as_alice = ("--as", "alice@example.com")
    planned = cli(config, "run", "test.bump", "to=5", "--plan", *as_alice)
    assert planned.returncode == 0, planned.stderr
    assert "value 1 → 5" in planned.stdout
    assert (tmp_path / "value.txt").read_text() == "1"  # a plan changes nothing
    plan_id = re.search(r"ex-[0-9a-f]{6}", planned.stdout)
    assert plan_id, planned.stdout

    applied = cli(config, "run", "apply", f"execution={plan_id.group(0)}", *as_alice)
    assert applied.returncode == 0, applied.stderr + applied.stdout
    assert (tmp_path / "value.txt").read_text() == "5"

    again = cli(config, "run", "apply", f"execution={plan_id.group(0)}", *as_alice)
    assert "applied already" in again.stdout + again.stderr
    assert again.returncode == 1  # nothing was done: scripts can tell
    assert (tmp_path / "value.txt").read_text() == "5"
