"""Out-of-band checks: facts Marvin verifies itself, against an independent system, before a
command runs (is this package in the GA repository?), never something the requester asserts.

A check is a function declared like a command::

    @check("ga_repository", description="production takes only packages promoted to GA")
    def ga_repository(ctx, app: str, version: str, environment: str) -> Verdict:
        ...
        return Verdict.ok("orders-api 1.4.1-1.el9 is in GA (sha256 c160…)")

A command names its checks (``@command(..., checks=["ga_repository"])``) and so can a policy
rule (``checks: [...]`` in rbac.yaml). They run after authorisation, on the job thread just
before the handler (so after any confirmation or second factor); each returns
``Verdict.ok(evidence)`` or ``Verdict.refuse(reason)``. Anything else (an exception, a wrong
return value) refuses: checks fail closed. This module only declares and validates (no I/O);
``marvin.runtime.checks`` runs them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["check", "CheckSpec", "Verdict", "CHECKS", "CHECK_ATTR", "lookup", "problems"]

CHECK_ATTR = "__marvin_check__"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CheckSpec:
    """What ``@check`` records: the name commands and rules use, and what it verifies."""

    name: str
    description: str
    params: tuple[str, ...]  # the command parameters the check reads (its signature after ctx)
    required: tuple[str, ...]  # those without a default: the command must have them
    any_params: bool = False  # it takes **params: it receives all of them


@dataclass(frozen=True)
class Verdict:
    """One check's answer. ``text`` is the evidence when it passed, the reason when not."""

    passed: bool
    text: str
    record: str = ""  # fuller evidence for the audit trail (full digests, revisions)

    @classmethod
    def ok(cls, evidence: str, *, record: str = "") -> Verdict:
        return cls(True, evidence, record)

    @classmethod
    def refuse(cls, reason: str, *, record: str = "") -> Verdict:
        return cls(False, reason, record)


# name -> the decorated function (with its CheckSpec under CHECK_ATTR). Filled on import of the
# module that defines the check, like the action library's clients (marvin.actions.clients).
CHECKS: dict[str, Callable[..., Any]] = {}


def check(name: str, *, description: str) -> Callable[[F], F]:
    """Declare ``fn(ctx, **some command params) -> Verdict`` as the check ``name``; returns
    the function unchanged. Two different functions under one name are an error."""
    if not _NAME.match(name):
        raise ValueError(f"check name {name!r} must be lowercase letters, digits and _")
    if not description.strip():
        raise ValueError(f"check {name!r}: a description is required (help shows it)")

    def register(fn: F) -> F:
        args = list(inspect.signature(fn).parameters.values())
        if not args or args[0].name != "ctx":
            raise ValueError(f"check {name!r}: the first parameter must be 'ctx'")
        named = [a for a in args[1:] if a.kind not in (a.VAR_POSITIONAL, a.VAR_KEYWORD)]
        spec = CheckSpec(
            name,
            description.strip(),
            tuple(a.name for a in named),
            tuple(a.name for a in named if a.default is inspect.Parameter.empty),
            any(a.kind is a.VAR_KEYWORD for a in args),
        )
        owner = CHECKS.get(name)
        if owner is not None and owner.__qualname__ != fn.__qualname__:
            raise ValueError(f"check {name!r} is already defined in {owner.__module__}")
        setattr(fn, CHECK_ATTR, spec)
        CHECKS[name] = fn
        return fn

    return register


def lookup(name: str) -> tuple[CheckSpec, Callable[..., Any]] | None:
    fn = CHECKS.get(name)
    return None if fn is None else (getattr(fn, CHECK_ATTR), fn)


def problems(where: str, names: Iterable[str], params: Iterable[str]) -> list[str]:
    """Why ``names`` can't guard a command with ``params`` (empty: they can). Start-up runs
    this for every command and policy rule: a check that could never run would refuse every
    time, or, worse, be skipped by mistake."""
    out = []
    have = set(params)
    for name in names:
        found = lookup(name)
        if found is None:
            known = ", ".join(sorted(CHECKS)) or "none"
            out.append(f"{where}: no check named {name!r} (known: {known})")
            continue
        spec = found[0]
        lacking = [p for p in spec.required if p not in have]
        if lacking:
            out.append(
                f"{where}: check {name!r} reads {', '.join(lacking)}, which the command lacks"
            )
    return out
