"""Consul's key/value store for the action library: the ``consul:`` section, the one client
(py-consul) and KV primitives that turn every failure into a sentence for the user.

Address and token default to Consul's own ``CONSUL_HTTP_ADDR`` and ``CONSUL_HTTP_TOKEN`` (as the
``consul`` CLI reads them); ``consul.address`` overrides the address and ``consul.token_env``
names another variable for the token, which is only ever read from the environment. Writes
are compare-and-set on the ModifyIndex read just before; a single-key write is atomic in
Consul, so a refused or failed write leaves nothing half-written.
"""

from __future__ import annotations

import fnmatch
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from marvin.actions import ActionError
from marvin.actions.clients import client
from marvin.config import Config, Setting, declare

__all__ = [
    "ConsulKV",
    "Entry",
    "ConsulError",
    "ConsulUnavailable",
    "ConsulDenied",
    "MAX_VALUE",
    "layout",
    "is_secret",
]

MAX_VALUE = 512 * 1024  # Consul's kv_max_value_size default; larger PUTs get 413
T = TypeVar("T")


def _template(name: str) -> Callable[[Any], bool]:
    return lambda v: "{environment}" in v and v.endswith("{" + name + "}") and not v.startswith("/")


declare(
    "consul",
    {
        "address": Setting(
            str, "", None, "host:port or http(s)://host:port; empty: CONSUL_HTTP_ADDR"
        ),
        "token_env": Setting(
            str, "CONSUL_HTTP_TOKEN", lambda v: v.isidentifier(), "an environment variable name"
        ),
        "datacenter": Setting(str, "", None, "a datacenter name; empty: the agent's"),
        "timeout": Setting((int, float), 5, lambda v: 0 < v <= 120, "seconds from 0 to 120"),
        "config_key": Setting(
            str, "{environment}/config/{key}", _template("key"), "a template ending in {key}"
        ),
        "feature_key": Setting(
            str, "{environment}/features/{flag}", _template("flag"), "a template ending in {flag}"
        ),
        "maintenance_key": Setting(
            str,
            "{environment}/maintenance",
            lambda v: "{environment}" in v and not v.startswith("/"),
            "a template with {environment}",
        ),
        "secret_patterns": Setting(
            list,
            ["*password*", "*secret*", "*token*", "*key*"],
            lambda v: all(isinstance(p, str) and p for p in v),
            "a list of key globs",
        ),
    },
)


class ConsulError(ActionError):
    """Consul refused or failed; the text is fit for chat (never holds a value)."""


class ConsulUnavailable(ConsulError):
    """Consul is down or too slow."""


class ConsulDenied(ConsulError):
    """Marvin's token lacks permission (HTTP 403)."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes  # b"" for a key with no value
    index: int  # ModifyIndex: the compare-and-set token


def layout(config: Config, what: str, **names: str) -> str:
    """The Consul key for ``what`` (config, feature, maintenance) from the configured template."""
    return str(config.get(f"consul.{what}_key")).format(**names)


def prefix_of(config: Config, what: str, environment: str) -> str:
    """The folder holding every ``what`` key of ``environment`` (the template before its name)."""
    template = str(config.get(f"consul.{what}_key"))
    return template[: template.rindex("{")].format(environment=environment)


def is_secret(config: Config, name: str) -> bool:
    """Whether a key (as people name it, not the full path) is a secret by the patterns."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in config.get("consul.secret_patterns"))


def _parse_address(text: str) -> tuple[str, int, str]:
    raw = text if "//" in text else "//" + text
    parts = urllib.parse.urlsplit(raw)
    scheme = parts.scheme or "http"
    try:
        port = parts.port or (443 if scheme == "https" else 8500)
    except ValueError:
        port = -1
    if not parts.hostname or port <= 0 or scheme not in ("http", "https"):
        raise ConsulError(f"the Consul address {text!r} is not host:port or http(s)://host:port")
    return parts.hostname, port, scheme


class ConsulKV:
    """The ``consul`` client: py-consul's ``Consul`` plus error mapping. Thread-safe for our
    use (one requests session; py-consul keeps no per-call state)."""

    def __init__(self, address: str, token: str | None, *, timeout: float, dc: str = "") -> None:
        import consul  # py-consul; imported here so Marvin starts without touching it

        host, port, scheme = _parse_address(address)
        self.address = f"{scheme}://{host}:{port}"
        self.timeout = timeout
        self._api = consul.Consul(
            host=host, port=port, scheme=scheme, dc=dc or None, connections_timeout=timeout
        )
        # py-consul prefers $CONSUL_HTTP_TOKEN over its argument; the configured variable wins.
        self._api.token = token or None

    # -- primitives ---------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        _, row = self._call("read", key, lambda: self._api.kv.get(key))
        return None if row is None else _entry(row)

    def get_prefix(self, prefix: str) -> list[Entry]:
        _, rows = self._call("read", prefix, lambda: self._api.kv.get(prefix, recurse=True))
        return [_entry(r) for r in rows or []]

    def keys(self, prefix: str, separator: str | None = None) -> list[str]:
        _, names = self._call(
            "list", prefix, lambda: self._api.kv.get(prefix, keys=True, separator=separator)
        )
        return list(names or [])

    def put_cas(self, key: str, value: bytes, index: int) -> bool:
        """Write only if ``key``'s ModifyIndex is still ``index`` (0: only if absent)."""
        if len(value) > MAX_VALUE:
            raise ConsulError(
                f"the value is {len(value):,} bytes; Consul takes at most {MAX_VALUE:,} "
                "(512 KiB). Nothing was written."
            )
        return bool(self._call("write", key, lambda: self._api.kv.put(key, value, cas=index)))

    def delete_cas(self, key: str, index: int) -> bool:
        return bool(self._call("write", key, lambda: self._api.kv.delete(key, cas=index)))

    def _call(self, access: str, key: str, fn: Callable[[], T]) -> T:
        import consul
        import requests

        try:
            return fn()
        except (consul.ACLPermissionDenied, consul.ACLDisabled):
            raise ConsulDenied(
                f"Marvin's Consul token lacks permission to {access} `{key}`"
                + (". Nothing was written." if access == "write" else ".")
            ) from None
        except requests.exceptions.Timeout:
            tail = (
                "the write may or may not have happened; check before retrying."
                if access == "write"
                else "nothing was changed."
            )
            raise ConsulUnavailable(
                f"Consul at {self.address} did not answer within {self.timeout:g} s; {tail}"
            ) from None
        except requests.exceptions.ConnectionError:
            raise ConsulUnavailable(
                f"Consul at {self.address} is not reachable; nothing was changed."
            ) from None
        except consul.ConsulException as exc:
            # py-consul puts "<status> <body>" in the message; the body is Consul's own error
            # text (never a value we sent), cut short.
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "an error"
            if text.startswith("413"):
                raise ConsulError(
                    f"Consul refused the value as too large (limit {MAX_VALUE:,} bytes). "
                    "Nothing was written."
                ) from None
            raise ConsulError(f"Consul answered {text} for `{key}`") from None


def _entry(row: dict[str, Any]) -> Entry:
    return Entry(key=row["Key"], value=row.get("Value") or b"", index=int(row["ModifyIndex"]))


def _build(config: Config, env: dict[str, str] | None = None) -> ConsulKV:
    env = dict(os.environ if env is None else env)
    address = config.get("consul.address") or env.get("CONSUL_HTTP_ADDR") or "http://127.0.0.1:8500"
    token = env.get(str(config.get("consul.token_env"))) or None
    return ConsulKV(
        address,
        token,
        timeout=float(config.get("consul.timeout")),
        dc=str(config.get("consul.datacenter") or ""),
    )


@client("consul")
def _consul(config: Config) -> ConsulKV:
    return _build(config)
