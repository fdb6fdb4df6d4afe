"""The GA check: production takes only packages promoted to the GA yum repository.

A fact Marvin verifies itself against the repository (``marvin.actions.yum``: repomd, then the
primary data checked against repomd's checksum), never something the requester asserts.
Other environments take only packages in the repository they install from (staging).
"""

from __future__ import annotations

from typing import Any

from marvin.actions.deploy import is_production, repository_for, tagged_instances
from marvin.actions.rpm import parse_evr
from marvin.actions.yum import RepoError, redact_url
from marvin.core.checks import Verdict, check
from marvin.runtime.plans import Plan

__all__ = ["ga_repository", "plan_rollout"]

_SHOWN_VERSIONS = 10


@check(
    "ga_repository",
    description="production environments take only packages in the GA yum repository; "
    "others only packages in their own repository (staging)",
)
def ga_repository(ctx: Any, app: str, version: str, environment: str) -> Verdict:
    config = ctx.services.config
    try:
        evr = parse_evr(version)
    except ValueError as exc:
        return Verdict.refuse(str(exc))
    label, url = repository_for(config, app, environment)
    if not url:  # repository_for falls back to GA when staging is not configured
        return Verdict.refuse(
            f"no {label} repository is configured for {app}, so I can't verify "
            f"{app} {evr}: set deploy.ga_repo_url (or GA_REPO_URL)"
        )
    yum = ctx.services.yum
    try:
        index = yum.index(url)
    except RepoError as exc:
        return Verdict.refuse(f"I can't verify {app} {evr} against {label}: {exc}")
    matches = [p for p in index.named(app) if p.evr == evr]  # name + epoch + version + release
    if not matches:
        versions = sorted({p.evr for p in index.named(app)}, reverse=True)
        shown = ", ".join(str(v) for v in versions[:_SHOWN_VERSIONS])
        if len(versions) > _SHOWN_VERSIONS:
            shown += f" and {len(versions) - _SHOWN_VERSIONS} older"
        has = f"{label} has {shown}" if versions else f"{label} has no {app} package at all"
        why = " (production takes only GA packages)" if is_production(config, environment) else ""
        return Verdict.refuse(f"{app} {evr} is not in {label}{why}. {has}.")
    package = matches[0]
    verified = ""
    if config.get("deploy.verify_rpm"):
        try:
            yum.verify(package)
        except RepoError as exc:
            return Verdict.refuse(f"{app} {evr} in {label} can't be trusted: {exc}")
        verified = ", RPM verified"
    digest = f"{package.checksum_type} {package.checksum}"
    return Verdict.ok(
        f"{app} {evr} is in {label} ({package.checksum_type} {package.checksum[:12]}…{verified})",
        record=f"{app} {evr} is in {label} {redact_url(index.url)} revision {index.revision}: "
        f"{package.location.rsplit('/', 1)[-1]} {digest}{verified}",
    )


def plan_rollout(ctx: Any, *, app: str, version: str, environment: str) -> Plan:
    """What ``app.deploy`` would do, changing nothing: the GA check's verdict and the batches
    of instances in the order they would be updated. ``basis`` is what apply compares."""
    config = ctx.services.config
    verdict = ga_repository(ctx, app=app, version=version, environment=environment)
    instances = tagged_instances(ctx.services.ec2, config, app, environment)
    size = int(config.get("deploy.batch_size"))
    batches = [instances[i : i + size] for i in range(0, len(instances), size)]
    lines = [("✓" if verdict.passed else "✗") + f" ga_repository: {verdict.text}"]
    if not instances:
        tags = f"{config.get('deploy.environment_tag')}={environment}, "
        lines.append(f"No running instances are tagged {tags}{config.get('deploy.app_tag')}={app}.")
    for n, batch in enumerate(batches, 1):
        lines.append(f"Batch {n}/{len(batches)}: {', '.join(batch)}")
    if not verdict.passed:
        lines.append("The check refuses it: applying this plan would not install anything.")
    basis = {"check": verdict.passed, "instances": instances, "batch_size": size}
    return Plan("\n".join(lines), basis=basis, changes=bool(instances) and verdict.passed)
