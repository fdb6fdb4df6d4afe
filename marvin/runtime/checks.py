"""Running the out-of-band checks (``marvin.core.checks``) of one execution.

``execution`` calls ``passed(rt, job, ctx)`` on the job thread at the start of the
execution, before the handler: after authorisation, after any confirmation or second factor,
so what is checked is what runs, minutes later or not. The checks are the command's own
(``@command(checks=[...])``) followed by those of the policy rule that decides for it
(``checks:`` in rbac.yaml), each run once, in that order, stopping at the first refusal.

Every verdict is audited with the execution (``check_passed`` / ``check_refused``); the
evidence is said in the thread. A check that raises, returns something other than a
``Verdict``, or is not loaded refuses the execution: checks fail closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from marvin.core.checks import Verdict, lookup, problems
from marvin.core.registry import Command, TableError
from marvin.runtime import execution  # a module reference: execution imports this module too

if TYPE_CHECKING:
    from marvin.runtime.app import Runtime
    from marvin.runtime.execution import Context
    from marvin.runtime.jobs import Job

__all__ = ["passed", "validate"]

log = structlog.get_logger("marvin.checks")


def validate(table: Iterable[Command]) -> None:
    """Start-up: every check a command names exists and can read what it needs."""
    from marvin.actions.clients import discover

    discover()  # the action library defines shared checks (e.g. marvin.actions.release)
    found: list[str] = []
    for cmd in table:
        found += problems(cmd.ref, cmd.spec.checks, cmd.params)
    if found:
        raise TableError("\n".join(found))


def passed(rt: Runtime, job: Job, ctx: Context) -> bool:
    """Run the job's checks (the command's, then its policy rule's: ``Job.checks``); True to
    go on. On a refusal the execution is recorded ``refused`` and the requester told why.
    ``Cancelled`` propagates (a cancel or timeout meanwhile)."""
    cmd, params = job.command, job.params
    evidence: list[str] = []
    for name in job.checks:
        verdict = _run_one(ctx, cmd, name, params)
        ctx.check()  # cancelled or timed out while checking: not a verdict
        event = "check_passed" if verdict.passed else "check_refused"
        detail = f"{name}: {verdict.record or verdict.text}"[:1000]
        rt.recorder.record(event, job.attempt, execution_id=job.execution_id, detail=detail)
        ctx.log.info("check", check=name, passed=verdict.passed, detail=verdict.text[:300])
        if not verdict.passed:
            reason = f"check {name}: {verdict.text}"[:500]
            text = f"`{cmd.ref}` was not run (`{job.execution_id}`): {verdict.text}"
            execution.finish(rt, job, "refused", text, reason)
            return False
        evidence.append(f"✓ {name}: {verdict.text}")
    if evidence:
        ctx.reply("\n".join(evidence))
    return True


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
    except execution.Cancelled:
        raise
    except Exception as exc:
        ctx.check()
        ctx.log.warning("check raised", check=name, exc_info=True)
        what = execution.without_secrets(f"{type(exc).__name__}: {exc}", cmd, params)[:300]
        return Verdict.refuse(f"the check {name} could not be completed ({what}), so I refuse")
    if not isinstance(verdict, Verdict):
        return Verdict.refuse(f"the check {name} gave no verdict, so I refuse")
    return verdict
