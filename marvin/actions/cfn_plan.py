"""What a stack change would do, from a CloudFormation change set: create it, describe it,
delete it (and the empty REVIEW_IN_PROGRESS stack a CREATE change set leaves behind).

"No changes" comes three ways: AWS creates a change set that goes FAILED with "didn't contain
changes", older moto raised a ValidationError at creation, and a change set may complete with
no changes at all. All three are a plan that changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from marvin.actions import ActionError, wait_until

__all__ = ["StackPlan", "plan_stack", "stack_status", "template_digest"]

_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_SYMBOL = {"Add": "+", "Modify": "~", "Remove": "-", "Import": "→", "Dynamic": "?"}


@dataclass(frozen=True)
class StackPlan:
    stack: str
    kind: str  # CREATE | UPDATE
    changes: tuple[tuple[str, str, str, str], ...]  # (action, logical id, type, replacement)

    def lines(self) -> list[str]:
        out = []
        for action, logical, rtype, replacement in self.changes:
            repl = ""
            if replacement == "True":
                repl = " — REPLACEMENT (a new resource; the old one is deleted)"
            elif replacement == "Conditional":
                repl = " — may be replaced"
            out.append(f"{_SYMBOL.get(action, '?')} {action} {logical} ({rtype}){repl}")
        return out

    def summary(self) -> str:
        if not self.changes:
            return f"Stack {self.stack}: no changes."
        counts: dict[str, int] = {}
        for action, *_ in self.changes:
            counts[action] = counts.get(action, 0) + 1
        head = ", ".join(f"{n} to {a.lower()}" for a, n in counts.items())
        verb = "create" if self.kind == "CREATE" else "update"
        return f"Stack {self.stack} ({verb}): {head}\n" + "\n".join(self.lines())


def stack_status(client: Any, name: str) -> str | None:
    """The stack's status, or None when there is no such (live) stack."""
    try:
        stacks = client.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        message = exc.response.get("Error", {}).get("Message", exc)
        raise ActionError(f"CloudFormation: {message}") from None
    status = stacks[0]["StackStatus"] if stacks else None
    return None if status in (None, "DELETE_COMPLETE") else status


def plan_stack(
    ctx: Any,
    client: Any,
    *,
    name: str,
    template_body: str,
    parameters: Mapping[str, str | None],
    kind: str,
    poll_seconds: float = 5.0,
    timeout: float = 600.0,
) -> StackPlan:
    """The changes a CREATE or UPDATE of stack ``name`` would make; changes nothing."""
    change_set = f"marvin-plan-{ctx.execution_id}"
    try:
        client.create_change_set(
            StackName=name,
            ChangeSetName=change_set,
            TemplateBody=template_body,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v}
                for k, v in parameters.items()
                if v is not None
            ],
            ChangeSetType=kind,
        )
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", exc))
        if any(text in message for text in _NO_CHANGES):
            return StackPlan(name, kind, ())
        raise ActionError(f"CloudFormation refused a change set for {name}: {message}") from None
    try:
        described = _wait(ctx, client, name, change_set, poll_seconds, timeout)
        if described["Status"] == "FAILED":
            reason = described.get("StatusReason") or "no reason given"
            if any(text in reason for text in _NO_CHANGES):
                return StackPlan(name, kind, ())
            raise ActionError(f"the change set for {name} failed: {reason}")
        return StackPlan(name, kind, tuple(_changes(client, name, change_set, described)))
    finally:
        _clean_up(ctx, client, name, change_set, kind)


def template_digest(template_body: str) -> str:
    return hashlib.sha256(template_body.encode()).hexdigest()[:16]


def _wait(
    ctx: Any, client: Any, name: str, change_set: str, poll: float, timeout: float
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = client.describe_change_set(StackName=name, ChangeSetName=change_set)
        return found if found["Status"] in ("CREATE_COMPLETE", "FAILED") else None

    return wait_until(
        ctx, check, every=poll, timeout=timeout, what=lambda: f"change set for {name}"
    )


def _changes(
    client: Any, name: str, change_set: str, described: Mapping[str, Any]
) -> list[tuple[str, str, str, str]]:
    out = []
    page: Mapping[str, Any] | None = described
    while page is not None:  # large change sets come in pages
        for change in page.get("Changes") or []:
            rc = change.get("ResourceChange") or {}
            out.append(
                (
                    str(rc.get("Action", "?")),
                    str(rc.get("LogicalResourceId", "?")),
                    str(rc.get("ResourceType", "?")),
                    str(rc.get("Replacement") or ""),
                )
            )
        token = page.get("NextToken")
        page = (
            client.describe_change_set(StackName=name, ChangeSetName=change_set, NextToken=token)
            if token
            else None
        )
    return sorted(out, key=lambda c: (c[1], c[0]))


def _clean_up(ctx: Any, client: Any, name: str, change_set: str, kind: str) -> None:
    """A plan leaves nothing behind: the change set, and for CREATE the empty stack, but only
    while it is still the REVIEW_IN_PROGRESS shell (never a stack someone created since)."""
    try:
        client.delete_change_set(StackName=name, ChangeSetName=change_set)
        if kind == "CREATE" and stack_status(client, name) == "REVIEW_IN_PROGRESS":
            client.delete_stack(StackName=name)
    except (ClientError, ActionError):
        ctx.log.warning("could not clean up a plan's change set", stack=name, exc_info=True)
