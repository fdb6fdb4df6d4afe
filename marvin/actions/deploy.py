"""Deploying an RPM to an environment's instances with SSM Run Command, in rolling batches.

Which repository an environment installs from: production environments (``deploy.production``
globs) from GA, others from staging (or GA when no staging repository is configured). The
repository URLs are templates per app (``{app}``). The instances are those running with the
environment's and the app's tags; each batch gets one ``AWS-RunShellScript`` command that
installs exactly ``name-epoch:version-release`` from that repository and verifies what rpm
then reports. The rollout stops at the first batch with a failed instance.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import time
from dataclasses import dataclass
from typing import Any

from marvin.actions import ActionError
from marvin.actions.clients import client
from marvin.actions.rpm import EVR, parse_evr
from marvin.actions.yum import Repositories
from marvin.config import Config, Setting, declare

__all__ = ["deploy_package", "repository_for", "is_production", "install_script", "Invocation"]

PRODUCTION = ["prod", "prod-*", "production*", "live*"]
_URL_ENV = {"ga_repo_url": "GA_REPO_URL", "staging_repo_url": "STAGING_REPO_URL"}
_SECONDS = (int, float)
declare(
    "deploy",
    {
        "production": Setting(
            list, PRODUCTION, lambda v: all(isinstance(g, str) for g in v), "a list of globs"
        ),
        "ga_repo_url": Setting(str, None, None, "a URL template such as https://yum/ga/{app}"),
        "staging_repo_url": Setting(str, None, None, "a URL template, or empty"),
        "verify_rpm": Setting(bool, False, None, "true or false"),
        "http_timeout": Setting(_SECONDS, 10, lambda v: 0 < v <= 300, "seconds from 0 to 300"),
        "batch_size": Setting(int, 2, lambda v: 1 <= v <= 100, "a whole number from 1 to 100"),
        "poll_seconds": Setting(_SECONDS, 3, lambda v: 0 < v <= 60, "seconds from 0 to 60"),
        "command_timeout": Setting(int, 600, lambda v: 30 <= v <= 7200, "seconds, 30-7200"),
        "environment_tag": Setting(str, "Environment", None, "an EC2 tag key"),
        "app_tag": Setting(str, "App", None, "an EC2 tag key"),
    },
)
PENDING = {"Pending", "InProgress", "Delayed", "Cancelling"}


@client("yum")
def _yum(config: Config) -> Repositories:
    return Repositories(timeout=float(config.get("deploy.http_timeout")))


def is_production(config: Config, environment: str) -> bool:
    name = environment.strip().lower()
    return any(fnmatch.fnmatchcase(name, g.lower()) for g in config.get("deploy.production"))


def _url(config: Config, key: str, app: str) -> str:
    template = config.get(f"deploy.{key}")
    if template is None:  # not in the file: the documented default, ${GA_REPO_URL:-}
        template = os.environ.get(_URL_ENV[key], "")
    return str(template).strip().replace("{app}", app)


def repository_for(config: Config, app: str, environment: str) -> tuple[str, str]:
    """(label, URL) of the repository ``environment`` installs ``app`` from; the URL is empty
    when none is configured (callers refuse)."""
    if not is_production(config, environment):
        staging = _url(config, "staging_repo_url", app)
        if staging:
            return "staging", staging
    return "GA", _url(config, "ga_repo_url", app)


def install_script(name: str, evr: EVR, repo: str) -> list[str]:
    """Shell lines for AWS-RunShellScript: install exactly ``name-evr`` from ``repo`` only
    (upgrade or downgrade), then fail unless rpm reports exactly that version."""
    nevra = shlex.quote(f"{name}-{evr.epoch}:{evr.version}-{evr.release}")
    dnf = f"dnf -y --repofrompath=marvin-deploy,{shlex.quote(repo)} --repo=marvin-deploy"
    query = f"rpm -q --qf '%{{EPOCH}}:%{{VERSION}}-%{{RELEASE}}' {shlex.quote(name)}"
    want = shlex.quote(f"{evr.epoch}:{evr.version}-{evr.release}")
    return [
        "set -eu",
        f"{dnf} install {nevra} || {dnf} downgrade {nevra}",
        f'got="$({query} | sed "s/^(none):/0:/")"',
        f'if [ "$got" != {want} ]; then echo "installed $got, expected "{want} >&2; exit 1; fi',
        f'echo "{name} $got installed"',
    ]


@dataclass(frozen=True)
class Invocation:
    instance: str
    status: str
    output: str


def tagged_instances(ec2: Any, config: Config, app: str, environment: str) -> list[str]:
    filters = [
        {"Name": f"tag:{config.get('deploy.environment_tag')}", "Values": [environment]},
        {"Name": f"tag:{config.get('deploy.app_tag')}", "Values": [app]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    found: list[str] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            found += [i["InstanceId"] for i in reservation["Instances"]]
    return sorted(set(found))


def deploy_package(ctx: Any, *, app: str, version: str, environment: str) -> str:
    config = ctx.services.config
    evr = parse_evr(version)
    label, repo = repository_for(config, app, environment)
    if not repo:
        raise ActionError(f"no {label} repository is configured for {app}")
    instances = tagged_instances(ctx.services.ec2, config, app, environment)
    tags = f"{config.get('deploy.environment_tag')}={environment}, "
    tags += f"{config.get('deploy.app_tag')}={app}"
    if not instances:
        raise ActionError(f"no running instances are tagged {tags}")
    size = int(config.get("deploy.batch_size"))
    batches = [instances[i : i + size] for i in range(0, len(instances), size)]
    script = install_script(app, evr, repo)
    done: list[str] = []
    for n, batch in enumerate(batches, 1):
        ctx.check()
        where = f"batch {n}/{len(batches)}"
        ctx.progress(f"{app} {evr} to {environment}: {where} on {', '.join(batch)}…")
        results = _run_batch(ctx, batch, script, f"marvin {ctx.execution_id}: {app} {evr}")
        failed = [r for r in results if r.status != "Success"]
        if failed:
            untouched = [i for b in batches[n:] for i in b]
            lines = [f"*{where} failed*; the rollout stopped."]
            for r in failed:
                lines.append(
                    f"• {r.instance}: {r.status}" + (f"\n```{r.output}```" if r.output else "")
                )
            ok = [r.instance for r in results if r.status == "Success"]
            lines.append(
                f"Updated: {', '.join(done + ok) or 'none'}. Not touched: "
                f"{', '.join(untouched) or 'none'}."
            )
            ctx.reply("\n".join(lines))
            raise ActionError(
                f"{where} failed on {', '.join(r.instance for r in failed)}; "
                f"{len(done) + len(ok)} of {len(instances)} instance(s) updated, rollout stopped"
            )
        done += batch
        ctx.progress(f"{app} {evr} to {environment}: {where} done ({len(done)}/{len(instances)})")
    return (
        f"Deployed {app} {evr} from {label} to {environment}: {len(instances)} instance(s) "
        f"in {len(batches)} batch(es)."
    )


def _run_batch(ctx: Any, batch: list[str], script: list[str], comment: str) -> list[Invocation]:
    ssm, config = ctx.services.ssm, ctx.services.config
    timeout = int(config.get("deploy.command_timeout"))
    try:
        sent = ssm.send_command(
            InstanceIds=batch,
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": script, "executionTimeout": [str(timeout)]},
            TimeoutSeconds=timeout,
            Comment=comment[:100],
        )
    except Exception as exc:  # botocore's ClientError, endpoint errors: said, never guessed
        raise ActionError(f"SSM refused the command for {', '.join(batch)}: {exc}") from None
    command_id = sent["Command"]["CommandId"]
    results: dict[str, Invocation] = {}
    deadline = time.monotonic() + timeout + 60
    try:
        while True:
            for instance in batch:
                if instance not in results:
                    inv = _invocation(ssm, command_id, instance)
                    if inv is not None and inv.status not in PENDING:
                        results[instance] = inv
            if len(results) == len(batch):
                return [results[i] for i in batch]
            if time.monotonic() > deadline:
                return [
                    results.get(i) or Invocation(i, "still InProgress, gave up waiting", "")
                    for i in batch
                ]
            ctx.sleep(float(config.get("deploy.poll_seconds")))
    except BaseException:
        _cancel(ssm, command_id)  # cancelled or timed out: stop what SSM is still doing
        raise


def _invocation(ssm: Any, command_id: str, instance: str) -> Invocation | None:
    try:
        got = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance)
    except Exception as exc:
        if "InvocationDoesNotExist" in str(exc):
            return None  # SSM has not registered it yet, right after send_command
        raise ActionError(f"SSM could not report on {instance}: {exc}") from None
    out = (got.get("StandardOutputContent") or "").strip()
    err = (got.get("StandardErrorContent") or "").strip()
    text = "\n".join(x for x in (out[-600:], err[-600:]) if x)
    return Invocation(instance, str(got.get("Status", "?")), text.replace("```", "'''"))


def _cancel(ssm: Any, command_id: str) -> None:
    try:
        ssm.cancel_command(CommandId=command_id)
    except Exception:  # best effort: the original reason is what the requester needs
        pass
