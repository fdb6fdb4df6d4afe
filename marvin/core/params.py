"""Typed, validated command parameters.

Values arrive as text (from chat or ``key=value`` on the CLI); a ``Param`` turns text into the
value the handler receives, or raises ``ParamError`` saying which parameter and what was expected.
Shared types such as ``ENVIRONMENT`` keep one vocabulary across command families.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ParamError",
    "Param",
    "Text",
    "Integer",
    "Choice",
    "Boolean",
    "Json",
    "Pairs",
    "ENVIRONMENT",
    "VERSION",
    "EXECUTION_ID",
]


class ParamError(ValueError):
    """A parameter value is missing or invalid; the message is fit to show the user."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Param:
    """Base type: any text. ``secret`` values are redacted in logs, audit and help."""

    help: str = ""
    secret: bool = False

    def convert(self, name: str, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw  # a Python default from the handler signature
        if not raw.strip():
            raise ParamError(name, f"is empty; expected {self.expected()}")
        return raw

    def expected(self) -> str:
        return self.help or "some text"

    def show(self, value: Any) -> str:
        """How an invalid value is quoted back: never for a secret (it would reach chat,
        the audit trail and the log)."""
        return "the value given" if self.secret else _show(value)


@dataclass(frozen=True)
class Text(Param):
    pattern: str | None = None
    max_length: int = 500

    def __post_init__(self) -> None:
        if self.pattern is not None:
            re.compile(self.pattern)  # fail at import time, not on the first message

    def convert(self, name: str, raw: Any) -> Any:
        value = super().convert(name, raw)
        if not isinstance(value, str):
            return value
        if len(value) > self.max_length:
            raise ParamError(name, f"is longer than {self.max_length} characters")
        # fullmatch: with search, "$" also matches before a final newline ("demo01\n").
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ParamError(name, f"{self.show(value)} is not valid; expected {self.expected()}")
        return value

    def expected(self) -> str:
        if self.help:  # the help says it in words; a regex helps nobody who reads it
            return self.help
        return f"text matching {self.pattern}" if self.pattern else "some text"


@dataclass(frozen=True)
class Integer(Param):
    min: int | None = None
    max: int | None = None

    def convert(self, name: str, raw: Any) -> Any:
        value = super().convert(name, raw)
        if isinstance(value, str):
            try:
                value = int(value.strip().replace("_", ""), 10)
            except ValueError:
                raise ParamError(name, f"{self.show(raw)} is not a whole number") from None
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise ParamError(
                name, f"{self.show(value)} is out of range; expected {self.expected()}"
            )
        return value

    def expected(self) -> str:
        lo = "" if self.min is None else str(self.min)
        hi = "" if self.max is None else str(self.max)
        rng = (
            f" from {lo} to {hi}" if lo and hi else f" >= {lo}" if lo else f" <= {hi}" if hi else ""
        )
        return (self.help + ": " if self.help else "") + "a whole number" + rng


@dataclass(frozen=True)
class Choice(Param):
    choices: tuple[str, ...] = ()

    def convert(self, name: str, raw: Any) -> Any:
        value = super().convert(name, raw)
        if isinstance(value, str):
            for choice in self.choices:
                if value.lower() == choice.lower():
                    return choice
            raise ParamError(name, f"{self.show(value)} is not one of {', '.join(self.choices)}")
        return value

    def expected(self) -> str:
        return "one of " + ", ".join(self.choices)


_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


@dataclass(frozen=True)
class Boolean(Param):
    def convert(self, name: str, raw: Any) -> Any:
        value = super().convert(name, raw)
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ParamError(name, f"{self.show(value)} is not yes/no (true/false, on/off)")
        return value

    def expected(self) -> str:
        return "yes or no"


@dataclass(frozen=True)
class Json(Param):
    def convert(self, name: str, raw: Any) -> Any:
        value = super().convert(name, raw)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ParamError(name, f"is not valid JSON ({exc.msg})") from None
        return value

    def expected(self) -> str:
        return "a JSON value"


@dataclass(frozen=True)
class Pairs(Param):
    """The ``key=value`` pairs after a command that are not its own parameters, as a dict:
    ``run jenkins job deploy-app VERSION=1.2`` gives ``{"VERSION": "1.2"}`` (for commands that
    pass another system's parameters on, such as a Jenkins job's). At most one per command.
    Without it, such a pair is an error. A name that is also one of the command's own
    parameters goes in a JSON object instead: ``parameters={"job": "x"}``. The receiver
    validates the names and values; this type only bounds them."""

    key_pattern: str = r"[A-Za-z_][A-Za-z0-9_.-]{0,63}"
    max_pairs: int = 50

    def convert(self, name: str, raw: Any) -> Any:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raw = None
            if not isinstance(raw, dict):
                raise ParamError(name, 'expected a JSON object such as {"VERSION": "1.2"}')
        if not isinstance(raw, dict):
            return raw  # a Python default (None)
        if len(raw) > self.max_pairs:
            raise ParamError(name, f"more than {self.max_pairs} pairs")
        out: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not re.fullmatch(self.key_pattern, key):
                raise ParamError(name, f"{_show(key)} is not a valid name")
            if isinstance(value, (dict, list)) or value is None:
                raise ParamError(f"{name}.{key}", "expected a single value")
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if len(text) > 2000:
                raise ParamError(f"{name}.{key}", "is longer than 2000 characters")
            out[key] = text
        return out

    def expected(self) -> str:
        return self.help or "NAME=value pairs after the command"


def _show(value: Any) -> str:
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


ENVIRONMENT = Text(
    pattern=r"^[a-z][a-z0-9-]{1,30}$",
    help="an environment name: a lowercase letter, then 1-30 lowercase letters, digits or dashes",
)
VERSION = Text(
    pattern=r"^(latest|[0-9][0-9A-Za-z.+-]{0,40})$", help="a version such as 4.3 or latest"
)
EXECUTION_ID = Text(pattern=r"^(?i:ex-[0-9a-f]{6})$", help="an execution id such as ex-7f3a2c")
