"""Authorisation cost: 1,000 commands from 50 users through the real security chain.

Starts a real slapd (``python -m tests.fakes.slapd``, a subprocess: benchmarks never import the
tests' helpers) seeded with 50 extra users spread over flat,
nested (ops -> platform-admins -> everyone-admin) and deep (level1..level4) groups, and the fake
Slack Web API for ``users.info``. Each command goes through ``identify`` (SlackIdentity +
LdapDirectory) and ``decide`` (policy). Prints one figure per line:

* ``directory_searches``: LDAP searches over the first 1,000 commands, starting cold. One user
  search per person (50) plus the nested-group walk, which is cached per group set and shared
  between users, so it costs a few extra searches once: reported separately, honestly.
* ``directory_searches_warm``: LDAP searches over a second 1,000 commands (cache warm).
* ``users_info_calls``: Slack ``users.info`` requests over both runs.
* ``authz_median_us`` / ``authz_p99_us``: identify + decide per command, cache warm.
* ``authz_cold_median_us``: the same over the first run (includes LDAP and Slack round trips).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slack_sdk import WebClient  # noqa: E402

from benchmarks.fakeproc import FakeProcess  # noqa: E402
from marvin import command  # noqa: E402
from marvin.bootstrap import build_table  # noqa: E402
from marvin.core.authz import FrontEnd, FrontEnds, Refused  # noqa: E402
from marvin.core.model import User  # noqa: E402
from marvin.logs import setup_logging  # noqa: E402
from marvin.security.authorizer import PolicyAuthorizer  # noqa: E402
from marvin.security.ldap import LdapConfig, LdapDirectory  # noqa: E402
from marvin.security.policy import load_policy  # noqa: E402
from marvin.security.slack_identity import SlackIdentity  # noqa: E402

USERS = 50
COMMANDS = 1000
GROUPS = [["ops"], ["developers"], ["level1"], []]  # nested, flat, deep, none (refused)
POLICY = """
rules:
  - name: production
    commands: [bench.deploy]
    targets: {environment: ["prod*"]}
    groups: [platform-admins]
    mfa: true
  - {commands: ["bench.*"], groups: [developers, ops, level4]}
"""


@command("bench.deploy", "deploy {{ environment }}", description="b", examples=["deploy x1"])
def deploy(ctx, environment):
    return None


@command("bench.status", "bench status", description="b", examples=["bench status"])
def status(ctx):
    return None


def run(
    authz: PolicyAuthorizer, front: FrontEnds, table, users: list[User], rng: random.Random
) -> list[float]:
    cmds = [table["bench.deploy"], table["bench.status"]]
    times = []
    for _ in range(COMMANDS):
        who, cmd = rng.choice(users), rng.choice(cmds)
        params = {"environment": rng.choice(["demo01", "prod-eu"])} if cmd.params else {}
        t0 = time.perf_counter()
        try:
            # The chain as Marvin.identify runs it: the front end's resolver, then groups.
            authz.decide(authz.identify(front.resolve(who)), cmd, params)
        except Refused:
            pass  # people in no group are refused: that is part of the cost too
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def main() -> None:
    # As `marvin serve` logs (JSON at info), written nowhere: the cost counts, the noise not.
    setup_logging(json=True, level="info", stream=open(os.devnull, "w"))
    work = Path(tempfile.mkdtemp(prefix="authz-bench-"))
    with (
        FakeProcess("tests.fakes.slapd") as slapd,
        FakeProcess("tests.fakes.slack") as slack,
    ):
        ldap, team = slapd.info, slack.info["team_id"]
        users = []
        for i in range(USERS):
            uid, mail = f"bench{i:02d}", f"bench{i:02d}@example.com"
            slapd.call("add_user", uid=uid, mail=mail, groups=GROUPS[i % len(GROUPS)])
            slack.call("add_user", id=f"U0BENCH{i:02d}", email=mail)
            users.append(User(f"U0BENCH{i:02d}", None, source="slack", team_id=team))
        (work / "rbac.yaml").write_text(POLICY)
        table = build_table([deploy, status])
        directory = LdapDirectory(
            LdapConfig(
                url=ldap["url"],
                bind_dn=ldap["root_dn"],
                bind_password=ldap["root_pw"],
                user_base=ldap["people"],
                group_base=ldap["groups"],
            )
        )
        env = slack.info["env"]
        client = WebClient(token=env["SLACK_BOT_TOKEN"], base_url=env["SLACK_API_URL"], timeout=5)
        identity = SlackIdentity(client, team_ids={team})
        front = FrontEnds([FrontEnd("slack", "chat", identity, fresh=identity.fresh)])
        authz = PolicyAuthorizer(load_policy(work / "rbac.yaml"), directory)
        authz.check_table(table)
        rng = random.Random(4)
        cold = run(authz, front, table, users, rng)
        cold_searches = directory.searches
        warm = run(authz, front, table, users, rng)
        warm_searches = directory.searches - cold_searches
        people = len({u.id for u in users})
        print(f"directory_searches={cold_searches}")
        print(f"directory_user_searches={people}")
        print(f"directory_nested_walk_searches={cold_searches - people}")
        print(f"directory_searches_warm={warm_searches}")
        print(f"users_info_calls={identity.calls}")
        print(f"authz_median_us={statistics.median(warm):.1f}")
        print(f"authz_p99_us={sorted(warm)[int(len(warm) * 0.99)]:.1f}")
        print(f"authz_cold_median_us={statistics.median(cold):.1f}")
        directory.close()


if __name__ == "__main__":
    main()
