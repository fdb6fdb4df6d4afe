import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so tests can import the project's commands/ package

pytest_plugins = ["marvin.testing", "tests.fakes.yum"]  # yum_repos: real repos, built once
