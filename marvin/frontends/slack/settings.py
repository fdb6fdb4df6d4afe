"""The ``slack:`` section of marvin.yaml and the two tokens from the environment.

config.py leaves the section "open", so it is validated here, with errors that name the file
and the key like the rest of the configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from marvin.config import Config, check_keys

__all__ = ["SlackSettings", "TokenError", "check_tokens", "retired", "DEFAULT_API_URL"]

DEFAULT_API_URL = "https://slack.com/api/"
_EMOJI = re.compile(r"[a-z0-9_+'\-]+")
_STATES = ("accepted", "succeeded", "failed", "cancelled", "interrupted")
# Keys that did something once: still accepted (a config from then keeps working), warned
# about by `marvin check` and at start, so nobody tunes a setting that does nothing.
_RETIRED = {
    "dedupe_max": "no longer used (event claims live in the store; slack.dedupe_seconds is "
    "how long they are kept): remove it",
}


def _default_reactions() -> dict[str, str]:
    return {
        "accepted": "eyes",
        "succeeded": "white_check_mark",
        "failed": "x",
        "cancelled": "no_entry_sign",
        "interrupted": "warning",
    }


@dataclass(frozen=True)
class SlackSettings:
    ping_interval: float = 10.0  # seconds between pings; how fast a silent dead socket shows
    reactions: dict[str, str] = field(default_factory=_default_reactions)
    max_message_chars: int = 3500  # longer replies are split at line boundaries
    file_threshold_chars: int = 20000  # longer than this: attached as a file instead
    confirm_timeout: float = 300.0  # Confirm/Cancel buttons expire after this
    dedupe_seconds: float = 900.0  # remember event ids and (channel, ts) this long
    health_host: str = "0.0.0.0"  # the probe comes from outside the container

    @classmethod
    def from_config(cls, config: Config) -> SlackSettings:
        known = [*(f.name for f in fields(cls)), *_RETIRED]
        raw = check_keys(config.error, "slack", config.get("slack"), known)
        values: dict[str, Any] = {}
        checks: dict[str, tuple[Any, str]] = {
            "ping_interval": (lambda v: _num(v) and 0 < v <= 60, "seconds between 0 and 60"),
            "max_message_chars": (
                lambda v: _int(v) and 500 <= v <= 39000,
                "a whole number from 500 to 39000",
            ),
            "file_threshold_chars": (lambda v: _int(v) and v >= 1000, "a whole number >= 1000"),
            "confirm_timeout": (lambda v: _num(v) and v > 0, "seconds > 0"),
            "dedupe_seconds": (lambda v: _num(v) and v >= 900, "seconds >= 900 (15 minutes)"),
            "health_host": (lambda v: isinstance(v, str) and v != "", "a host name or address"),
        }
        for key, (check, expected) in checks.items():
            if key in raw:
                if not check(raw[key]):
                    raise config.error(f"slack.{key}", f"expected {expected}, got {raw[key]!r}")
                values[key] = raw[key]
        if "reactions" in raw:
            values["reactions"] = _reactions(config, raw["reactions"])
        out = cls(**values)
        if out.file_threshold_chars < out.max_message_chars:
            raise config.error(
                "slack.file_threshold_chars", "must be at least slack.max_message_chars"
            )
        return out


def retired(config: Config) -> list[str]:
    """Warnings for the retired keys this configuration still sets."""
    raw = config.get("slack")
    given = raw if isinstance(raw, Mapping) else {}
    return [f"slack.{key}: {why}" for key, why in _RETIRED.items() if key in given]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _reactions(config: Config, raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise config.error("slack.reactions", "expected a mapping of state to emoji name")
    out = _default_reactions()
    for state, name in raw.items():
        if state not in _STATES:
            raise config.error(f"slack.reactions.{state}", f"expected one of {', '.join(_STATES)}")
        if not isinstance(name, str) or not _EMOJI.fullmatch(name.strip(":")):
            raise config.error(
                f"slack.reactions.{state}", f"expected an emoji name such as eyes, got {name!r}"
            )
        out[state] = name.strip(":")
    return out


class TokenError(Exception):
    """A token is missing, malformed or rejected; the message says which and how to fix it."""


_BOT_HELP = (
    "install the app to your workspace and copy the Bot User OAuth Token (xoxb-...) from "
    "OAuth & Permissions; see docs/slack.md"
)
_APP_HELP = (
    "create an app-level token with the connections:write scope under Basic Information > "
    "App-Level Tokens (xapp-...); see docs/slack.md"
)


def check_tokens(env: Mapping[str, str]) -> tuple[str, str]:
    """Both tokens, present and of the right kind, or TokenError naming the one at fault.
    The message never contains the token itself."""
    bot, app = env.get("SLACK_BOT_TOKEN", "").strip(), env.get("SLACK_APP_TOKEN", "").strip()
    for name, value, prefix, help_ in (
        ("SLACK_BOT_TOKEN", bot, "xoxb-", _BOT_HELP),
        ("SLACK_APP_TOKEN", app, "xapp-", _APP_HELP),
    ):
        if not value:
            raise TokenError(f"{name} is not set: {help_}.")
        if not value.startswith(prefix):
            got = value.split("-", 1)[0] + "-" if "-" in value else "no prefix"
            raise TokenError(f"{name} must start with {prefix} (got {got}): {help_}.")
    return bot, app


def rejected(name: str, error: str) -> TokenError:
    help_ = _BOT_HELP if name == "SLACK_BOT_TOKEN" else _APP_HELP
    return TokenError(f"Slack rejected {name} ({error}): {help_}.")
