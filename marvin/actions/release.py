"""The GA check: production takes only packages promoted to the GA yum repository.

A fact Marvin verifies itself against the repository (``marvin.actions.yum``: repomd, then the
primary data checked against repomd's checksum), never something the requester asserts.
Other environments take only packages in the repository they install from (staging).
"""

from __future__ import annotations

from typing import Any

from marvin import Verdict, check
from marvin.actions.deploy import is_production, repository_for
from marvin.actions.rpm import parse_evr
from marvin.actions.yum import RepoError, redact_url

__all__ = ["ga_repository"]

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
