"""Who is asking on Slack: the event's user ID, resolved with ``users.info``. Nothing else.

The display name and user name are under the user's control, so they are shown but never used
to decide anything. What is read:

* from the event, via ``User``: ``id`` (the event's ``user``), ``team_id`` (the event's
  ``user_team``, else its ``team``) and, if the front end sets them, ``extra["user_team"]`` and
  ``extra["source_team"]``. Every one present must be a configured team id.
* from ``users.info`` (cached for ``ttl`` seconds; errors are never cached): ``deleted``,
  ``is_bot``, ``is_app_user``, ``is_restricted`` / ``is_ultra_restricted`` (guests),
  ``is_stranger`` (Slack Connect), ``team_id`` (or ``enterprise_user.enterprise_id`` on Grid)
  which must be configured, and ``profile.email`` which must be present.

Any failure raises ``Refused``: a short message for the requester, the reason for the log.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from marvin.core.authz import Refused
from marvin.core.cache import TTLCache
from marvin.core.model import User

__all__ = ["SlackIdentity"]

log = structlog.get_logger("marvin.security.slack")
_CACHE_MAX = 10_000
_UNKNOWN = "I can't tell who you are right now, so I won't run anything for you."


class SlackIdentity:
    """Callable ``User -> User``: fills ``email``, ``team_id`` and ``name`` (display only)."""

    def __init__(
        self,
        client: WebClient,
        *,
        team_ids: set[str],
        allow_guests: bool = False,
        ttl: float = 300,
        timeout: float = 5.0,
    ) -> None:
        if not team_ids:  # an empty allow-list would refuse everyone; say so at start-up
            raise ValueError("SlackIdentity needs at least one workspace (team) id")
        # users.info gets its own short timeout (the shared client waits 30 s): a slow answer
        # for one user refuses that user after ``timeout`` instead of holding a worker.
        self.client = type(client)(
            token=client.token,
            base_url=client.base_url,
            timeout=timeout,  # type: ignore[arg-type]  # urllib takes a float
            ssl=client.ssl,
            proxy=client.proxy,
            headers=client.headers,
            retry_handlers=client.retry_handlers,
        )
        self.team_ids = frozenset(team_ids)
        self.allow_guests = allow_guests
        self.ttl = ttl
        self.calls = 0  # users.info requests sent (for benchmarks and tests)
        self._cache: TTLCache[dict[str, Any]] = TTLCache(ttl, _CACHE_MAX)
        self._lock = threading.Lock()

    def __call__(self, user: User) -> User:
        return self.resolve(user)

    def fresh(self, user: User) -> User:
        """Past the cache: for confirmations and second factors, where a deactivation or a
        change of workspace must show at once."""
        return self.resolve(user, fresh=True)

    def resolve(self, user: User, *, fresh: bool = False) -> User:
        event_teams = {user.team_id, user.extra.get("user_team"), user.extra.get("source_team")}
        foreign = sorted(t for t in event_teams if t and t not in self.team_ids)
        if foreign:
            self._refuse(
                user, "I only take commands from people in this workspace.", f"team {foreign}"
            )
        info = self._info(user, fresh)
        # The email (when Slack has one) goes into every later refusal's log reason, so the
        # audit row says whose account it was even though identification failed.
        known = str((info.get("profile") or {}).get("email") or "")
        user = replace(user, extra={**user.extra, "refused_email": known}) if known else user
        if info.get("deleted"):
            self._refuse(user, "Your Slack account is deactivated.", "deactivated")
        if info.get("is_bot") or info.get("is_app_user") or user.id == "USLACKBOT":
            self._refuse(user, "I don't take commands from bots or apps.", "bot or app user")
        home = info.get("team_id")
        grid = (info.get("enterprise_user") or {}).get("enterprise_id")
        if info.get("is_stranger") or not ({home, grid} & self.team_ids):
            self._refuse(
                user,
                "I only take commands from people in this workspace.",
                f"other workspace or Slack Connect (team {home}, stranger "
                f"{bool(info.get('is_stranger'))})",
            )
        if (info.get("is_restricted") or info.get("is_ultra_restricted")) and not self.allow_guests:
            self._refuse(user, "Guests can't run commands here.", "guest account")
        profile = info.get("profile") or {}
        email = str(profile.get("email") or "").strip()
        if "@" not in email:
            self._refuse(
                user,
                "Your Slack profile has no email address I can see, so I can't check your groups.",
                "no email in users.info",
            )
        shown = profile.get("display_name") or profile.get("real_name") or info.get("name") or ""
        extra = {**user.extra, "slack_team": home, "slack_name": info.get("name")}
        return replace(user, email=email, team_id=home, name=str(shown), extra=extra)

    def _info(self, user: User, fresh: bool = False) -> dict[str, Any]:
        uid = user.id
        if not uid or uid[:1] not in ("U", "W"):  # only Slack user ids; never a name
            self._refuse(user, _UNKNOWN, f"not a Slack user id: {uid!r}")
        return self._cache.get(uid, lambda: self._fetch(user), fresh=fresh)

    def _fetch(self, user: User) -> dict[str, Any]:
        """One users.info call; any failure refuses (and is never cached)."""
        uid = user.id
        try:
            with self._lock:
                self.calls += 1
            response = self.client.users_info(user=uid)
            info = response.get("user")
        except SlackApiError as exc:
            self._refuse(user, _UNKNOWN, f"users.info failed: {exc.response.get('error')}")
        except Exception as exc:  # network, timeout, bad JSON: fail closed
            self._refuse(user, _UNKNOWN, f"users.info failed: {type(exc).__name__}: {exc}")
        if not isinstance(info, dict) or info.get("id") != uid:
            self._refuse(user, _UNKNOWN, "users.info returned no matching user")
        return info

    @staticmethod
    def _refuse(user: User, message: str, reason: str) -> Any:
        email = user.extra.get("refused_email")
        if email:
            reason = f"{reason} ({email})"
        log.info("slack identity refused", user=user.id, team=user.team_id, reason=reason)
        raise Refused(message, f"slack identity: {reason}", email=email or None)
