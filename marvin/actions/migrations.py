"""Database migrations as a one-off ECS task: the environment's migration task definition,
run once with the version as the container's image tag (a new revision of the definition) or
as a command override, followed until it stops. Success is exit code 0 of the migration
container and nothing else; on failure the stopped reason and the end of the task's
CloudWatch log stream (secrets masked) explain why.

Names are templates in the ``migrations:`` section, with ``{environment}`` and ``{version}``.
The ECS and CloudWatch Logs clients are the shared ones (``marvin.actions.aws``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until
from marvin.actions.redact import mask
from marvin.config import Setting, declare
from marvin.core.model import Cancelled

__all__ = ["Migration", "MigrationFailed", "run_migrations", "with_tag"]


def _strings(default: list[str], what: str) -> Setting:
    return Setting(list, default, lambda v: all(isinstance(x, str) for x in v), what)


declare(
    "migrations",
    {
        "cluster": Setting(str, "{environment}", None, "an ECS cluster name template"),
        "task_definition": Setting(
            str, "{environment}-migrations", None, "a task definition family template"
        ),
        "container": Setting(str, "migrations", None, "the migration container's name"),
        "version_as": Setting(
            str, "image", lambda v: v in ("image", "command"), "image (tag) or command"
        ),
        "command": _strings(["bin/migrate", "{version}"], "a command as a list of words"),
        "launch_type": Setting(
            str, "FARGATE", lambda v: v in ("FARGATE", "EC2", "EXTERNAL"), "FARGATE, EC2"
        ),
        "subnets": _strings([], "a list of subnet ids"),
        "security_groups": _strings([], "a list of security group ids"),
        "assign_public_ip": Setting(bool, False, None, "true or false"),
        "poll_seconds": Setting(
            (int, float), 10, lambda v: 0 < v <= 300, "seconds between 0 and 300 (the cap)"
        ),
        "timeout": Setting((int, float), 3600, lambda v: v > 0, "seconds > 0"),
        "log_lines": Setting(int, 30, lambda v: 1 <= v <= 500, "a whole number 1-500"),
    },
)

# What register_task_definition accepts back from describe_task_definition.
_REGISTER_KEYS = (
    "family taskRoleArn executionRoleArn networkMode containerDefinitions volumes "
    "placementConstraints requiresCompatibilities cpu memory pidMode ipcMode "
    "proxyConfiguration inferenceAccelerators ephemeralStorage runtimePlatform"
).split()


class MigrationFailed(ActionError):
    """The task ran and did not exit 0; ``tail`` is the end of its log, secrets masked."""

    def __init__(self, message: str, *, tail: str) -> None:
        super().__init__(message)
        self.tail = tail


@dataclass(frozen=True)
class Migration:
    cluster: str
    task_id: str
    definition: str  # family:revision
    seconds: float


def _fill(template: str, environment: str, version: str | None) -> str:
    # Plain replacement, not str.format: a template is configuration, not code.
    return template.replace("{environment}", environment).replace("{version}", version or "")


def with_tag(image: str, tag: str) -> str:
    """``repo/app:1.0`` -> ``repo/app:<tag>``; keeps a registry port (``host:5000/app``)."""
    image = image.split("@", 1)[0]
    head, _, last = image.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}/{name}:{tag}" if head else f"{name}:{tag}"


def _aws(exc: ClientError) -> str:
    err = exc.response.get("Error", {})
    return err.get("Message") or err.get("Code") or str(exc)


def run_migrations(ctx: Any, *, environment: str, version: str | None) -> Migration:
    """Run the environment's migrations once and wait for the task to stop."""
    cfg, ecs = ctx.services.config, ctx.services.ecs
    get = lambda key: cfg.get(f"migrations.{key}")  # noqa: E731
    cluster = _fill(get("cluster"), environment, version)
    family = _fill(get("task_definition"), environment, version)
    container = get("container")
    try:
        definition = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    except ClientError as exc:
        raise ActionError(f"no migration task definition {family}: {_aws(exc)}") from None
    spec = next((c for c in definition["containerDefinitions"] if c["name"] == container), None)
    if spec is None:
        raise ActionError(f"task definition {family} has no container named {container}")
    overrides: dict[str, Any] = {}
    if version and get("version_as") == "image":
        definition = _register(ecs, definition, container, with_tag(spec["image"], version))
    elif version:
        command = [_fill(word, environment, version) for word in get("command")]
        overrides = {"containerOverrides": [{"name": container, "command": command}]}
    revision = f"{definition['family']}:{definition['revision']}"
    task_arn = _start(ctx, ecs, cluster, definition["taskDefinitionArn"], overrides)
    task_id = task_arn.rsplit("/", 1)[-1]
    ctx.log.info("migration task started", cluster=cluster, task=task_id, definition=revision)
    started = time.monotonic()
    try:
        task = _wait(ctx, ecs, cluster, task_arn, revision, started)
    except Cancelled:
        try:
            ecs.stop_task(cluster=cluster, task=task_arn, reason=f"cancelled ({ctx.execution_id})")
            ctx.progress(f"{revision}: task {task_id} stopped")
        except Exception:
            ctx.log.warning("could not stop the migration task", task=task_id, exc_info=True)
        raise
    box = next((c for c in task.get("containers", []) if c.get("name") == container), {})
    code = box.get("exitCode")
    seconds = time.monotonic() - started
    if code == 0:
        return Migration(cluster, task_id, revision, seconds)
    why = "; ".join(x for x in (task.get("stoppedReason"), box.get("reason")) if x)
    ended = f"exit code {code}" if code is not None else "no exit code"
    raise MigrationFailed(
        f"migrations on {environment} failed ({revision}, task {task_id}): {ended}"
        + (f": {why}" if why else ""),
        tail=_log_tail(ctx, spec, container, task_id, int(get("log_lines"))),
    )


def _register(ecs: Any, definition: dict[str, Any], container: str, image: str) -> dict[str, Any]:
    """A new revision of the definition whose migration container runs ``image``."""
    fields = {k: definition[k] for k in _REGISTER_KEYS if definition.get(k)}
    fields["containerDefinitions"] = [
        {**c, "image": image} if c["name"] == container else c
        for c in definition["containerDefinitions"]
    ]
    try:
        return ecs.register_task_definition(**fields)["taskDefinition"]
    except ClientError as exc:
        family = definition["family"]
        raise ActionError(f"could not register {family} with {image}: {_aws(exc)}") from None


def _start(ctx: Any, ecs: Any, cluster: str, arn: str, overrides: dict[str, Any]) -> str:
    cfg = ctx.services.config
    args: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": arn,
        "count": 1,
        "launchType": cfg.get("migrations.launch_type"),
        "startedBy": f"marvin-{ctx.execution_id}"[:36],
        "overrides": overrides,
    }
    subnets = cfg.get("migrations.subnets")
    if subnets:
        args["networkConfiguration"] = {
            "awsvpcConfiguration": {
                "subnets": subnets,
                "securityGroups": cfg.get("migrations.security_groups"),
                "assignPublicIp": "ENABLED"
                if cfg.get("migrations.assign_public_ip")
                else "DISABLED",
            }
        }
    try:
        answer = ecs.run_task(**args)
    except ClientError as exc:
        raise ActionError(f"ECS refused to start the migration on {cluster}: {_aws(exc)}") from None
    if not answer.get("tasks"):
        failure = (answer.get("failures") or [{}])[0]
        reason = failure.get("reason") or "no reason given"
        raise ActionError(f"ECS did not start the migration on {cluster}: {reason}")
    return answer["tasks"][0]["taskArn"]


def _wait(
    ctx: Any, ecs: Any, cluster: str, arn: str, revision: str, started: float
) -> dict[str, Any]:
    cfg = ctx.services.config

    def check() -> dict[str, Any] | None:
        try:
            tasks = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
        except ClientError as exc:
            raise ActionError(f"can't read the migration task: {_aws(exc)}") from None
        if not tasks:
            raise ActionError(f"the migration task {arn.rsplit('/', 1)[-1]} disappeared")
        status = tasks[0].get("lastStatus", "?")
        if status == "STOPPED":
            return tasks[0]
        elapsed = int(time.monotonic() - started)
        ctx.progress(f"{revision} on {cluster}: {status} ({elapsed} s)")
        return None

    return wait_until(
        ctx,
        check,
        every=float(cfg.get("migrations.poll_seconds")),
        timeout=float(cfg.get("migrations.timeout")),
        what=lambda: f"the migration task on {cluster} has not stopped",
    )


def _log_tail(ctx: Any, spec: dict[str, Any], container: str, task_id: str, lines: int) -> str:
    """The last lines of the task's awslogs stream (``prefix/container/task-id``)."""
    log = spec.get("logConfiguration") or {}
    options = log.get("options") or {}
    group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
    if log.get("logDriver") != "awslogs" or not group or not prefix:
        return "(the migration container does not log to CloudWatch Logs)"
    stream = f"{prefix}/{container}/{task_id}"
    try:
        events = ctx.services.logs.get_log_events(
            logGroupName=group, logStreamName=stream, limit=lines, startFromHead=False
        )["events"]
    except ClientError as exc:
        return f"(no log from {group} {stream}: {_aws(exc)})"
    return mask("\n".join(e["message"].rstrip("\n") for e in events)) or "(the log is empty)"
