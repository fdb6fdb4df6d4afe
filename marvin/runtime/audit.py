"""The one audit recorder: every attempt and every outcome goes through here.

An ``Attempt`` is who asked for what, where (the fields every row of one request shares);
``Recorder.record`` writes one audit row for it, and ``Recorder.outcome`` records an
execution's one final state together with its audit row. Refusals, admission, second
factors, finishes, recovery, confirmation presses and the built-ins all use these two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marvin.core.model import Message, User
from marvin.runtime.store import Store

__all__ = ["Attempt", "Recorder"]


@dataclass(frozen=True)
class Attempt:
    user: User
    ref: str | None = None
    channel: str | None = None
    params: Mapping[str, Any] | None = None  # as shown: secret values already redacted

    @classmethod
    def of(
        cls, msg: Message, ref: str | None = None, params: Mapping[str, Any] | None = None
    ) -> Attempt:
        return cls(msg.user, ref, msg.channel, params)

    @property
    def email(self) -> str | None:
        # A refused identity may still have told us whose account it was.
        return self.user.email or self.user.extra.get("refused_email") or None


class Recorder:
    def __init__(
        self,
        store: Store,
        observe: Callable[[str, str | None, str | None], None] | None = None,
    ) -> None:
        self.store = store
        self.observe = observe  # sees (event, ref, execution id) of every row: the metrics

    def record(
        self,
        event: str,
        attempt: Attempt,
        *,
        execution_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.store.audit(
            event,
            execution_id=execution_id,
            user_id=_text(attempt.user.id),
            email=_text(attempt.email),
            channel=_text(attempt.channel),
            ref=_text(attempt.ref),
            params=_clean(attempt.params),
            detail=_text(detail),
        )
        if self.observe is not None:
            self.observe(event, attempt.ref, execution_id)

    def outcome(
        self,
        execution_id: str,
        state: str,
        attempt: Attempt,
        reason: str | None,
        *,
        at: float,
        only_from: tuple[str, ...] | None = None,
    ) -> bool:
        """Record the execution's final ``state`` and its audit row. With ``only_from`` the
        state changes only if it still is one of those (False: someone recorded it first)."""
        fields = {"state": state, "reason": reason, "finished_at": at}
        if only_from is not None:
            if not self.store.transition(execution_id, only_from, **fields):
                return False
        else:
            self.store.update(execution_id, **fields)
        self.record(state, attempt, execution_id=execution_id, detail=reason)
        return True


def _text(value: str | None) -> str | None:
    """Text the store can encode, whatever arrived: a lone surrogate (``"x\\udfffy"``, which
    UTF-8 cannot encode) is kept as its escape, so every attempt is recorded."""
    if value is None:
        return None
    value = str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
