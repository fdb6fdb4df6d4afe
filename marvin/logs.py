"""structlog set-up: JSON lines for ``serve``, readable lines for the console and CLI."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["setup_logging", "SECRET_KEYS", "SECRETS_KEY", "Secrets", "mask_values"]

# Values under these keys never reach a log line, whoever logs them.
SECRET_KEYS = ("token", "password", "secret", "skey", "authorization", "cookie")


# An execution binds its secret parameter values under this key (structlog contextvars on its
# job thread, and on ``ctx.log``); ``_mask`` replaces them in every rendered field, the
# exception text and traceback included, and never renders the key itself.
SECRETS_KEY = "_marvin_mask"  # no word _scrub acts on


class Secrets:
    """The values to mask, carried in the event under ``SECRETS_KEY``; shows as ``***`` if a
    processor chain other than ours (a test's ``capture_logs``) ever renders it."""

    __slots__ = ("values",)

    def __init__(self, values: Any) -> None:
        self.values = tuple(str(v) for v in values if str(v))

    def __iter__(self) -> Any:
        return iter(self.values)

    def __bool__(self) -> bool:
        return bool(self.values)

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(s in key.lower() for s in SECRET_KEYS):
            event[key] = "***"
    return event


def mask_values(text: str, secrets: Any) -> str:
    """``text`` with each secret value (longest first, so a prefix never leaves a tail) masked."""
    for value in sorted({str(s) for s in secrets or () if str(s)}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _mask_any(value: Any, secrets: Any) -> Any:
    if isinstance(value, str):
        return mask_values(value, secrets)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _mask_any(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_mask_any(v, secrets) for v in value]
    return mask_values(repr(value), secrets)  # anything else is rendered as text anyway


def _mask(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    secrets = event.pop(SECRETS_KEY, None)
    if secrets:
        for key in list(event):
            event[key] = _mask_any(event[key], secrets)
    return event


def _rename_stack(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``stack`` is structlog's key for a rendered stack trace: a command logging
    ``stack=name`` (a CloudFormation stack) keeps its value under ``stack_name``."""
    if "stack" in event:
        event["stack_name" if "stack_name" not in event else "stack_"] = event.pop("stack")
    return event


class _MaskFilter(logging.Filter):
    """The same masking for standard-library log records emitted on an execution's thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = structlog.contextvars.get_contextvars().get(SECRETS_KEY)
        if secrets:
            record.msg = mask_values(record.getMessage(), secrets)
            record.args = None
            if record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg}\n{mask_values(text, secrets)}"
        return True


def setup_logging(*, json: bool, level: str = "info", stream: Any = None) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _rename_stack,
            _scrub,
            structlog.processors.StackInfoRenderer(),
            # Exceptions become text before masking, so secrets in tracebacks are masked too.
            structlog.processors.format_exc_info,
            _mask,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=max(lvl, logging.WARNING),
        stream=stream or sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _MaskFilter) for f in handler.filters):
            handler.addFilter(_MaskFilter())
