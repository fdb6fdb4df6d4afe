"""docs/api.md's curl examples, run as written against ``marvin api`` alone (no Slack) with
the default configuration and commands, boto3 pointed at moto in server mode."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import api_world as w
from tests.fakes import aws
from tests.fakes.ports import free_port

moto_server = aws.moto_server
aws_env = aws.aws_env
DOC = w.ROOT / "docs" / "api.md"
pytestmark = pytest.mark.timeout(120)


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)


def test_the_docs_have_curl_examples() -> None:
    blocks = shell_blocks()
    assert len(blocks) >= 8 and all("curl" in b for b in blocks)


def test_curl_examples_run_as_written(aws_env: str, tmp_path: Path) -> None:
    assert shutil.which("curl"), "curl is needed (.ci/run installs it)"
    env = {
        **w.os.environ,
        "MARVIN_STATE": str(tmp_path / "state.sqlite3"),
        "PYTHONPATH": str(w.ROOT),
    }
    config = w.ROOT / "config" / "marvin.yaml"
    key = w.create_keys(config, env, {"docs": ("operator@example.com",)})["docs"]
    port = free_port()
    api = w.Serve(config, env, "api", "--port", str(port), log_dir=tmp_path)  # not in config/
    url = f"http://127.0.0.1:{port}"
    try:
        api.wait_http(url)
        script = "set -euo pipefail\n" + "\n".join(shell_blocks())
        out = subprocess.run(
            ["bash", "-c", script],
            env={**env, "MARVIN_URL": url, "MARVIN_KEY": key},
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert out.returncode == 0, out.stdout + out.stderr + api.output()[-3000:]
    finally:
        assert api.stop() == 0, api.output()[-3000:]
    text = out.stdout
    assert text.startswith('{"status":"ok"}')
    assert "marvin.whoami" in text and "platform.create" in text  # GET /commands
    assert re.search(r"started ex-[0-9a-f]{6}", text)
    # The event stream ran to the end: platform.create against moto succeeded.
    assert "event: progress" in text or "event: reply" in text
    assert '"state": "succeeded"' in text and "Your requested workflow is complete." in text
    assert '"state":"accepted"' in text  # the text form and the confirmed restore: 202
    assert "is not running: it succeeded" in text  # cancelling what has ended: 409
    assert 'marvin_commands_total{outcome="succeeded",ref="platform.create"} 1.0' in text
    assert key.split("_", 2)[2] not in api.output()
