"""Running the out-of-band checks (``marvin.core.checks``) of one execution.

``execution`` calls ``run(job.checks, ctx, record)`` on the job thread at the start of the
execution, before the handler: after authorisation, after any confirmation or second factor,
so what is checked is what runs, minutes later or not. The checks are the command's own
(``@command(checks=[...])``) followed by those of the policy rule that decides for it
(``checks:`` in rbac.yaml), each run once, in that order, stopping at the first refusal.

Every verdict is audited with the execution (``check_passed`` / ``check_refused``); the
evidence is said in the thread. A check that raises, returns something other than a
``Verdict``, or is not loaded refuses the execution: checks fail closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from marvin.config import load_section_owners
from marvin.core.checks import Verdict, lookup, problems
from marvin.core.model import Cancelled
from marvin.core.registry import Command, TableError

if TYPE_CHECKING:
    from marvin.runtime.execution import Context

__all__ = ["run", "validate"]

log = structlog.get_logger("marvin.checks")


def validate(table: Iterable[Command]) -> None:
    """Start-up: every check a command names exists and can read what it needs."""
    load_section_owners()  # the action library defines shared checks (e.g. marvin.actions.release)
    found: list[str] = []
    for cmd in table:
        found += problems(cmd.ref, cmd.spec.checks, cmd.params)
    if found:
        raise TableError("\n".join(found))


def run(
    names: Iterable[str], ctx: Context, record: Callable[[str, str], None]
) -> tuple[str, str] | None:
    """Run the execution's checks (the command's, then its policy rule's: ``Job.checks``),
    stopping at the first refusal; ``record(event, detail)`` audits each verdict. Returns
    None to go on, or (text for the requester, reason for the record). ``Cancelled``
    propagates (a cancel or timeout meanwhile)."""
    cmd, params = ctx.command, ctx.params
    evidence: list[str] = []
    for name in names:
        verdict = _run_one(ctx, cmd, name, params)
        ctx.check()  # cancelled or timed out while checking: not a verdict
        event = "check_passed" if verdict.passed else "check_refused"
        record(event, f"{name}: {verdict.record or verdict.text}"[:1000])
        ctx.log.info("check", check=name, passed=verdict.passed, detail=verdict.text[:300])
        if not verdict.passed:
            return verdict.text, f"check {name}: {verdict.text}"[:500]
        evidence.append(f"✓ {name}: {verdict.text}")
    if evidence:
        ctx.reply("\n".join(evidence))
    return None


def _run_one(ctx: Context, cmd: Command, name: str, params: Mapping[str, Any]) -> Verdict:
    found = lookup(name)
    if found is None:  # start-up validation makes this unlikely; still never run unchecked
        return Verdict.refuse(f"the check {name!r} is not loaded, so I won't run it")
    spec, fn = found
    if spec.any_params:
        kwargs = dict(params)
    else:
        kwargs = {k: params[k] for k in spec.params if k in params}
    try:
        verdict = fn(ctx, **kwargs)
    except Cancelled:
        raise
    except Exception as exc:
        ctx.check()
        ctx.log.warning("check raised", check=name, exc_info=True)
        what = cmd.mask(f"{type(exc).__name__}: {exc}", params)[:300]
        return Verdict.refuse(f"the check {name} could not be completed ({what}), so I refuse")
    if not isinstance(verdict, Verdict):
        return Verdict.refuse(f"the check {name} gave no verdict, so I refuse")
    return verdict
