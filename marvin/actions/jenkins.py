"""Jenkins builds through python-jenkins: only allow-listed jobs, parameters checked against the
job's own definitions before anything is queued, then queue -> build number -> running ->
result with progress, and a cancel that removes the queue item or stops the build.

The client is owned here (``ctx.services.jenkins``); credentials come from the environment
through ``config/marvin.yaml`` (``${JENKINS_URL:-}`` ...), so Marvin starts without them and a
Jenkins command says clearly what is missing. python-jenkins fetches the CSRF crumb itself and
sends the API token with HTTP basic auth on every request.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from typing import Any

from marvin.actions import ActionError, wait_until
from marvin.actions.clients import client
from marvin.actions.redact import looks_secret, mask
from marvin.config import Config, Setting, declare
from marvin.core.model import Cancelled

__all__ = ["BuildFailed", "Build", "run_build", "check_parameters", "allowed", "jenkins_call"]


def _strings(default: Any, what: str) -> Setting:
    return Setting(list, default, lambda v: all(isinstance(x, str) for x in v), what)


declare(
    "jenkins",
    {
        "url": Setting(str, "", None, "the Jenkins URL, e.g. https://jenkins.example.com/"),
        "user": Setting(str, "", None, "the Jenkins user Marvin acts as"),
        "api_token": Setting(str, "", None, "that user's API token (from the environment)"),
        "jobs": _strings([], "a list of job name globs, e.g. [deploy-*, team/*]"),
        "poll_seconds": Setting(
            (int, float),
            10,
            lambda v: 0 < v <= 300,
            "seconds between 0 and 300 (the longest pause)",
        ),
        "timeout": Setting((int, float), 3600, lambda v: v > 0, "seconds > 0"),
        "console_lines": Setting(int, 40, lambda v: 1 <= v <= 500, "a whole number 1-500"),
        "request_timeout": Setting((int, float), 15, lambda v: 0 < v <= 120, "seconds 0-120"),
        "workers_group": Setting(str, "", None, "the agents' auto-scaling group name"),
        "workers_nodes": Setting(str, "*", None, "a glob of agent node names"),
        "workers_timeout": Setting((int, float), 900, lambda v: v > 0, "seconds > 0"),
    },
)

_NEEDED = (("url", "JENKINS_URL"), ("user", "JENKINS_USER"), ("api_token", "JENKINS_API_TOKEN"))


@client("jenkins")
def _jenkins(config: Config) -> Any:
    missing = [f"jenkins.{key} ({env})" for key, env in _NEEDED if not config.get(f"jenkins.{key}")]
    if missing:
        raise ActionError("Jenkins is not configured: set " + ", ".join(missing))
    import jenkins  # here, not at import: Marvin starts without Jenkins

    return jenkins.Jenkins(
        config.get("jenkins.url"),
        username=config.get("jenkins.user"),
        password=config.get("jenkins.api_token"),
        timeout=float(config.get("jenkins.request_timeout")),
    )


class BuildFailed(ActionError):
    """The build ran and did not succeed; ``tail`` is the end of its console, secrets masked."""

    def __init__(self, message: str, *, url: str, tail: str) -> None:
        super().__init__(message)
        self.url, self.tail = url, tail


@dataclass(frozen=True)
class Build:
    job: str
    number: int
    url: str
    result: str
    seconds: float


def allowed(job: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(job, g) for g in globs)


def jenkins_call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """One python-jenkins call; its failures become ActionErrors that say what was tried."""
    import jenkins
    import requests

    try:
        return fn(*args, **kwargs)
    except jenkins.NotFoundException:
        raise ActionError(f"Jenkins has no {what}") from None
    except jenkins.JenkinsException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "does not exist" in first:
            raise ActionError(f"Jenkins has no {what}") from None
        raise ActionError(f"Jenkins refused to {what}: {first}") from None
    except requests.RequestException as exc:
        raise ActionError(f"can't reach Jenkins to {what}: {type(exc).__name__}") from None


# -- parameters ----------------------------------------------------------------------------

_SUPPORTED = {"String", "Text", "Choice", "Boolean"}


def _kind(d: dict[str, Any]) -> str:
    raw = d.get("type") or d.get("_class", "").rsplit(".", 1)[-1]
    return raw.removesuffix("ParameterDefinition")


def _default(d: dict[str, Any]) -> Any:
    return (d.get("defaultParameterValue") or {}).get("value")


def _required(d: dict[str, Any]) -> bool:
    """A text parameter with no default must be given; the others always have a value."""
    return _kind(d) in ("String", "Text") and _default(d) in (None, "")


def _describe(d: dict[str, Any]) -> str:
    kind, default = _kind(d), _default(d)
    if kind == "Choice":
        return f"{d['name']} (one of {', '.join(map(str, d.get('choices', [])))})"
    if kind == "Boolean":
        return f"{d['name']} (true/false, default {str(bool(default)).lower()})"
    if kind == "Password":
        return f"{d['name']} (password: set in Jenkins, not through Marvin)"
    if kind not in _SUPPORTED:
        return f"{d['name']} ({kind}: not supported through Marvin)"
    return f"{d['name']} (required)" if _required(d) else f"{d['name']} (default {default!r})"


def definitions(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameter definitions in ``get_job_info``'s answer (properties, or older actions)."""
    for holder in [*(info.get("property") or []), *(info.get("actions") or [])]:
        if isinstance(holder, dict) and holder.get("parameterDefinitions"):
            return list(holder["parameterDefinitions"])
    return []


def check_parameters(job: str, defs: list[dict[str, Any]], given: dict[str, str]) -> dict[str, str]:
    """The parameters to queue ``job`` with, or ActionError naming what is wrong and listing the
    job's parameters. Nothing is queued unless every name and value is valid."""
    valid = "; ".join(_describe(d) for d in defs) or "none: the job takes no parameters"
    by_name = {d["name"]: d for d in defs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise ActionError(f"{job} has no parameter {', '.join(unknown)}. Its parameters: {valid}")
    out: dict[str, str] = {}
    for name, value in given.items():
        d, kind = by_name[name], _kind(by_name[name])
        if kind == "Password":
            raise ActionError(
                f"{name} is a password parameter: it is set in Jenkins, never in chat"
            )
        if kind not in _SUPPORTED:
            raise ActionError(f"{name} is a {kind} parameter, which Marvin cannot pass")
        if kind == "Choice" and value not in d.get("choices", []):
            raise ActionError(f"{name}={value} is not one of {', '.join(d.get('choices', []))}")
        if kind == "Boolean":
            if value.lower() not in ("true", "false"):
                raise ActionError(f"{name} must be true or false, not {value!r}")
            value = value.lower()
        out[name] = value
    missing = [d["name"] for d in defs if _required(d) and d["name"] not in out]
    if missing:
        raise ActionError(f"{job} needs {', '.join(missing)}. Its parameters: {valid}")
    if defs and not out:
        # buildWithParameters needs at least one value; send the first default explicitly.
        first = next((d for d in defs if _kind(d) in _SUPPORTED), None)
        if first is not None:
            value = _default(first)
            out[first["name"]] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


# -- the build -----------------------------------------------------------------------------


def _took(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60:02d} s"


def run_build(ctx: Any, *, job: str, parameters: dict[str, str]) -> Build:
    """Queue ``job`` and follow it to its result. Raises ActionError before queueing (not
    allowed, unknown job, bad parameters) and BuildFailed when the build does not succeed."""
    config = ctx.services.config
    if not allowed(job, config.get("jenkins.jobs")):
        raise ActionError(f"job {job} is not on Marvin's Jenkins allow-list (jenkins.jobs)")
    server = ctx.services.jenkins
    info = jenkins_call(f"job {job}", server.get_job_info, job)
    params = check_parameters(job, definitions(info), parameters)
    every = float(config.get("jenkins.poll_seconds"))
    timeout = float(config.get("jenkins.timeout"))
    queue_id = jenkins_call(f"queue {job}", server.build_job, job, params or None)
    ctx.log.info("jenkins build queued", job=job, queue_id=queue_id)
    number: int | None = None
    try:
        number = _wait_queue(ctx, server, job, queue_id, every, timeout)
        build = _wait_build(ctx, server, job, number, every, timeout)
    except Cancelled:
        _stop(ctx, server, job, queue_id, number)
        raise
    url, result = build.get("url", ""), build.get("result")
    seconds = (build.get("duration") or 0) / 1000
    if result == "SUCCESS":
        return Build(job, number, url, result, seconds)
    console = jenkins_call(f"read {job} #{number}", server.get_build_console_output, job, number)
    secrets = [config.get("jenkins.api_token")]
    secrets += [v for k, v in params.items() if looks_secret(k)]
    tail = "\n".join(console.rstrip("\n").splitlines()[-int(config.get("jenkins.console_lines")) :])
    raise BuildFailed(
        f"{job} #{number} ended {result} after {_took(seconds)}: {url}",
        url=url,
        tail=mask(tail, secrets),
    )


def _wait_queue(
    ctx: Any, server: Any, job: str, queue_id: int, every: float, timeout: float
) -> int:
    since = time.monotonic()

    def check() -> int | None:
        item = jenkins_call(f"read queue item {queue_id}", server.get_queue_item, queue_id)
        if item.get("cancelled"):
            raise ActionError(f"{job} was taken out of Jenkins' queue by someone else")
        number = (item.get("executable") or {}).get("number")
        if number is not None:
            return int(number)
        why = item.get("why") or "waiting"
        ctx.progress(f"{job}: queued for {_took(time.monotonic() - since)}: {why}")
        return None

    return wait_until(
        ctx, check, every=every, timeout=timeout, what=lambda: f"{job} still queued in Jenkins"
    )


def _wait_build(
    ctx: Any, server: Any, job: str, number: int, every: float, timeout: float
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        build = jenkins_call(f"read {job} #{number}", server.get_build_info, job, number)
        if not build.get("building") and build.get("result"):
            return build
        elapsed = time.time() - build.get("timestamp", time.time() * 1000) / 1000
        estimate = (build.get("estimatedDuration") or -1) / 1000
        of = f" of about {_took(estimate)}" if estimate > 0 else ""
        ctx.progress(f"{job} #{number}: running for {_took(elapsed)}{of} {build.get('url', '')}")
        return None

    return wait_until(
        ctx, check, every=every, timeout=timeout, what=lambda: f"{job} #{number} still running"
    )


def _stop(ctx: Any, server: Any, job: str, queue_id: int, number: int | None) -> None:
    """Cancelled in Marvin: cancel on the Jenkins side too, best effort (the Cancelled that
    brought us here is what the requester must see, so failures here are only logged)."""
    try:
        if number is None:
            server.cancel_queue(queue_id)
            number = (server.get_queue_item(queue_id).get("executable") or {}).get("number")
            if number is None:
                ctx.progress(f"{job}: taken out of Jenkins' queue")
                return
        server.stop_build(job, number)  # it left the queue meanwhile: stop the build itself
        ctx.progress(f"{job} #{number}: stopped in Jenkins")
    except Exception:
        ctx.log.warning(
            "could not stop the Jenkins side", job=job, queue_id=queue_id, exc_info=True
        )
