"""The Duo push as the application's ``SecondFactor``: runs on the job thread, so a push waiting
for an answer holds only that command; every other outcome than an explicit approval refuses."""

from __future__ import annotations

import threading

import structlog

from marvin.core.model import Message
from marvin.core.registry import Command
from marvin.runtime.audit import Attempt, Recorder
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
    """A ``core.authz.SecondFactor``; audits the Duo outcome with the user's email."""

    def __init__(self, push: DuoPush, recorder: Recorder) -> None:
        self.push = push
        self.recorder = recorder

    def __call__(self, msg: Message, cmd: Command, ex_id: str, cancelled: threading.Event) -> bool:
        try:
            return self._verify(msg, cmd, ex_id, cancelled)
        except Exception as exc:  # never let a bug in here count as an approval
            log.exception("second factor failed", execution_id=ex_id)
            self._audit("mfa_refused", msg, cmd, ex_id, f"error: {type(exc).__name__}: {exc}")
            return False

    def _verify(self, msg: Message, cmd: Command, ex_id: str, cancelled: threading.Event) -> bool:
        user = msg.user
        if not user.email:
            self._audit("mfa_refused", msg, cmd, ex_id, "no email to derive the Duo username")
            return False

        def status(text: str) -> None:
            if text == "Sent a Duo push":
                msg.responder.say(
                    f"Sent a Duo push for `{cmd.ref}` (`{ex_id}`); approve it on your phone."
                )
            elif text in _SAY:
                msg.responder.say(_SAY[text].format(ref=cmd.ref))

        result = self.push.verify(user.email, on_status=status, cancelled=cancelled)
        event = "mfa_approved" if result.status is DuoStatus.ALLOW else "mfa_refused"
        self._audit(event, msg, cmd, ex_id, f"duo {result.status}: {result.reason}"[:300])
        return result.allowed

    def _audit(self, event: str, msg: Message, cmd: Command, ex_id: str, detail: str) -> None:
        self.recorder.record(event, Attempt.of(msg, cmd.ref), execution_id=ex_id, detail=detail)
