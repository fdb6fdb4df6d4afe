"""The Duo push as ``Marvin.second_factor``: runs on the job thread, so a push waiting for an
answer holds only that command; every other outcome than an explicit approval refuses."""

from __future__ import annotations

from typing import Any

import structlog

from marvin.core.model import Message
from marvin.core.registry import Command
from marvin.security.duo import DuoPush, DuoStatus

__all__ = ["DuoSecondFactor"]

log = structlog.get_logger("marvin.security.mfa")

_SAY = {
    "approved": "Duo push approved; going ahead.",
    "denied": "Duo push denied; `{ref}` will not run.",
    "timed out": "The Duo push was not answered in time; `{ref}` will not run.",
    "error": "I couldn't complete the Duo check; `{ref}` will not run.",
}


class DuoSecondFactor:
    """``(msg, cmd, execution_id) -> bool``; audits the Duo outcome with the user's email."""

    def __init__(self, push: DuoPush, app: Any) -> None:
        self.push = push
        self.app = app  # for the store (audit) and the job's cancel event

    def __call__(self, msg: Message, cmd: Command, ex_id: str) -> bool:
        user = msg.user
        try:
            return self._verify(msg, cmd, ex_id)
        except Exception as exc:  # never let a bug in here count as an approval
            log.exception("second factor failed", execution_id=ex_id)
            self._audit("mfa_refused", user, cmd, ex_id, f"error: {type(exc).__name__}: {exc}")
            return False

    def _verify(self, msg: Message, cmd: Command, ex_id: str) -> bool:
        user = msg.user
        if not user.email:
            self._audit("mfa_refused", user, cmd, ex_id, "no email to derive the Duo username")
            return False
        job = self.app.jobs.get(ex_id) if getattr(self.app, "jobs", None) else None
        cancelled = getattr(job, "cancel_event", None)

        def status(text: str) -> None:
            if text == "Sent a Duo push":
                msg.responder.say(
                    f"Sent a Duo push for `{cmd.ref}` (`{ex_id}`); approve it on your phone."
                )
            elif text in _SAY:
                msg.responder.say(_SAY[text].format(ref=cmd.ref))

        result = self.push.verify(user.email, on_status=status, cancelled=cancelled)
        event = "mfa_approved" if result.status is DuoStatus.ALLOW else "mfa_refused"
        self._audit(event, user, cmd, ex_id, f"duo {result.status}: {result.reason}"[:300])
        return result.allowed

    def _audit(self, event: str, user: Any, cmd: Command, ex_id: str, detail: str) -> None:
        self.app.store.audit(
            event,
            execution_id=ex_id,
            user_id=user.id,
            email=user.email,
            ref=cmd.ref,
            detail=detail,
        )
