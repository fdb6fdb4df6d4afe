"""The ``security:`` section of ``config/marvin.yaml`` and the factories built from it.

::

    security:
      policy: rbac.yaml              # relative to the configuration file
      auditors_group: auditors       # may see everyone's `history` and `status`
      directory:
        backend: static              # static | ldap
        path: directory.yaml         # static only
        # ldap only: url, bind_dn, bind_password_env (the NAME of the env var holding the
        # password), user_base, group_base, user_filter, group_mode, nested, max_depth,
        # start_tls, ca_file, validate_cert, timeout, cache_ttl, negative_ttl, uid_attr
      slack:
        team_ids: [T0123]            # or "T1,T2"; empty: the bot's own workspace (auth.test)
        allow_guests: false
        cache_ttl: 300               # seconds a users.info answer is reused
        timeout: 5                   # seconds users.info may take before the user is refused
      duo:
        enabled: false
        ikey: ...
        skey_env: DUO_SKEY           # the NAME of the env var holding the secret key
        host: api-xxxx.duosecurity.com
        username: "{local}"          # {local}: the part of the email before @; {email}
        timeout: 60                  # seconds to wait for the push to be answered

Errors are ``ConfigError`` naming the file and the key. Secrets are only ever read from the
environment, at start-up, by the variable named in the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from marvin.config import Config, ConfigError, check_keys
from marvin.core.authz import Authorizer, SecondFactor
from marvin.core.packs import enabled as enabled_packs
from marvin.security.directory import Directory, DirectoryConfigError, StaticDirectory
from marvin.security.duo import DuoConfig, DuoPush
from marvin.security.ldap import LdapConfig, LdapDirectory
from marvin.security.policy import PolicyError, load_policy

__all__ = [
    "build_authorizer",
    "build_directory",
    "build_second_factor",
    "build_slack_identity",
    "check_security",
    "section",
]

_TOP = {"policy", "auditors_group", "directory", "slack", "duo"}
_LDAP_FIELDS = {f.name for f in fields(LdapConfig)} - {"bind_password"}
_DIRECTORY = {"backend", "path", "bind_password_env"} | _LDAP_FIELDS
_SLACK = {"team_ids", "allow_guests", "cache_ttl", "timeout"}
_DUO = {"enabled", "ikey", "skey_env", "host", "username", "timeout", "request_timeout"}
_DUO |= {"ca_certs"}


def section(config: Config, key: str, allowed: set[str]) -> dict[str, Any]:
    """``security.<key>`` as a dict (empty if absent); unknown keys are errors."""
    return check_keys(config.error, key, config.get(key), allowed)


def _env(config: Config, key: str, name: Any, env: Mapping[str, str]) -> str:
    if not isinstance(name, str) or not name:
        raise config.error(key, "expected the name of an environment variable")
    value = env.get(name, "")
    if not value:
        raise config.error(key, f"environment variable {name} is not set")
    return value


def build_directory(config: Config, env: Mapping[str, str] | None = None) -> Directory:
    env = os.environ if env is None else env
    section(config, "security", _TOP)
    raw = dict(section(config, "security.directory", _DIRECTORY))
    backend = raw.pop("backend", "static")
    try:
        if backend == "static":
            if set(raw) - {"path"}:
                raise config.error("security.directory", "static takes only `path`")
            return StaticDirectory(config.root / str(raw.get("path", "directory.yaml")))
        if backend == "ldap":
            if "path" in raw:
                raise config.error("security.directory.path", "only for backend: static")
            pw_env = raw.pop("bind_password_env", None)
            password = None
            if raw.get("bind_dn"):
                password = _env(config, "security.directory.bind_password_env", pw_env, env)
            missing = sorted({"url", "user_base", "group_base"} - set(raw))
            if missing:
                raise config.error(f"security.directory.{missing[0]}", "required for ldap")
            raw.setdefault("bind_dn", None)
            return LdapDirectory(LdapConfig(bind_password=password, **raw))
    except (DirectoryConfigError, TypeError) as exc:
        raise config.error("security.directory", str(exc)) from None
    raise config.error("security.directory.backend", f"expected static or ldap, got {backend!r}")


def _team_ids(config: Config) -> set[str]:
    raw = config.get("security.slack.team_ids") or []
    if isinstance(raw, str):
        raw = [t for t in raw.replace(" ", "").split(",") if t]
    if not isinstance(raw, list) or not all(isinstance(t, str) and t for t in raw):
        raise config.error("security.slack.team_ids", "expected a list of Slack team ids")
    return set(raw)


def build_authorizer(config: Config, env: Mapping[str, str] | None = None) -> Authorizer:
    """The real authorizer: policy + directory. Raises ConfigError for a bad configuration.
    Identity is not its business: each front end brings its resolver (``build_slack_identity``
    for Slack)."""
    from marvin.security.authorizer import PolicyAuthorizer

    section(config, "security", _TOP)
    try:
        policy = load_policy(
            config.root / str(config.get("security.policy", "rbac.yaml")),
            enabled_packs(config.get("commands.packs")),  # what `include: <pack>` may name
        )
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    auditors = config.get("security.auditors_group")
    if auditors is not None and not isinstance(auditors, str):
        raise config.error("security.auditors_group", "expected a group name")
    _slack_settings(config)  # checked even without Slack, so a typo never waits for serve
    return PolicyAuthorizer(policy, build_directory(config, env), auditors_group=auditors)


def _slack_settings(config: Config) -> tuple[set[str], bool, float, float]:
    slack = section(config, "security.slack", _SLACK)
    guests, ttl = slack.get("allow_guests", False), slack.get("cache_ttl", 300)
    timeout = slack.get("timeout", 5)
    if not isinstance(guests, bool):
        raise config.error("security.slack.allow_guests", "expected true or false")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0:
        raise config.error("security.slack.cache_ttl", "expected seconds >= 0")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 1 <= timeout:
        raise config.error("security.slack.timeout", "expected seconds >= 1")
    return _team_ids(config), guests, float(ttl), float(timeout)


def build_slack_identity(config: Config, slack_client: Any) -> Any:
    """The Slack front end's identity resolver (``users.info`` on the event's user id)."""
    from marvin.security.slack_identity import SlackIdentity

    teams, guests, ttl, timeout = _slack_settings(config)
    if not teams:  # default: the workspace (and Grid org) the bot is installed in
        answer = slack_client.auth_test()
        teams = {t for t in (answer.get("team_id"), answer.get("enterprise_id")) if t}
    return SlackIdentity(
        slack_client, team_ids=teams, allow_guests=guests, ttl=ttl, timeout=timeout
    )


def build_second_factor(
    config: Config, env: Mapping[str, str] | None = None
) -> SecondFactor | None:
    """``DuoSecondFactor``, or None when Duo is not enabled (then commands that need MFA are
    refused: fail closed)."""
    from marvin.security.mfa import DuoSecondFactor

    env = os.environ if env is None else env
    raw = dict(section(config, "security.duo", _DUO))
    enabled = raw.pop("enabled", False)
    if not isinstance(enabled, bool):  # "maybe" must not read as on (or as off)
        raise config.error("security.duo.enabled", f"expected true or false, got {enabled!r}")
    if not enabled:
        return None
    skey = _env(config, "security.duo.skey_env", raw.pop("skey_env", None), env)
    if "username" in raw:
        raw["username_template"] = raw.pop("username")
    try:
        duo = DuoConfig(skey=skey, **raw)
    except (TypeError, ValueError) as exc:
        raise config.error("security.duo", str(exc)) from None
    return DuoSecondFactor(DuoPush(duo))


def check_security(
    config: Config, table: Any = (), env: Mapping[str, str] | None = None
) -> list[str]:
    """``marvin check``: everything ``serve`` would reject in ``security:`` (ConfigError), with
    or without the secrets in this environment; returns warnings (a secret not set here, a
    policy group no directory group has, a command no rule allows)."""
    from marvin.security.policy import is_builtin

    env = dict(os.environ if env is None else env)
    warnings: list[str] = []
    # Secrets absent here (CI has none) are warned about and stood in for, so the rest of
    # the section is still checked exactly as serve would.
    for key in ("security.directory.bind_password_env", "security.duo.skey_env"):
        name = config.get(key)
        enabled = config.get("security.duo.enabled") is True or "duo" not in key
        needed = "directory" not in key or config.get("security.directory.bind_dn")
        if isinstance(name, str) and name and not env.get(name) and enabled and needed:
            warnings.append(f"{key}: {name} is not set here; serve will need it")
            env[name] = "placeholder"
    build_authorizer(config, env).check_table(table, strict=True)  # PolicyError: a ValueError
    build_second_factor(config, env)
    _slack_settings(config)
    policy = load_policy(config.root / str(config.get("security.policy", "rbac.yaml")))
    wanted = {g.lower() for rule in policy.rules for g in rule.groups}
    try:
        known = build_directory(config, env).known_groups()
    except Exception as exc:  # a directory not reachable from here: say so, don't fail
        warnings.append(f"could not list the directory's groups ({type(exc).__name__}: {exc})")
    else:
        for group in sorted(wanted - known):
            warnings.append(f"{policy.path.name}: group {group!r} is in no directory group")
    for cmd in table:
        if not is_builtin(cmd) and not policy.candidates(cmd):
            warnings.append(
                f"{policy.path.name}: no rule allows {cmd.ref}; it is refused and hidden from help"
            )
    return warnings
