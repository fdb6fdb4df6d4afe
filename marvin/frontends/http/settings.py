"""The ``api:`` section of marvin.yaml (validated here, like Slack's, with errors that name
the file and the key)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from marvin.config import Config, check_keys

__all__ = ["ApiSettings"]


@dataclass(frozen=True)
class ApiSettings:
    enabled: bool = False  # does `marvin serve` serve the API beside Slack?
    host: str = "127.0.0.1"  # loopback unless told otherwise (a proxy adds TLS)
    port: int = 8080
    max_body_bytes: int = 65536
    rate_per_minute: float = 120.0  # per key, sustained
    burst: int = 20  # per key, at once
    replies_kept: int = 1000  # executions whose replies are kept in memory for GET and SSE

    @classmethod
    def from_config(cls, config: Config) -> ApiSettings:
        raw = check_keys(config.error, "api", config.get("api"), (f.name for f in fields(cls)))
        checks: dict[str, tuple[Any, str]] = {
            "enabled": (lambda v: isinstance(v, bool), "true or false"),
            "host": (lambda v: isinstance(v, str) and v != "", "a host name or address"),
            "port": (lambda v: _int(v) and 0 <= v <= 65535, "a port number"),
            "max_body_bytes": (lambda v: _int(v) and 256 <= v <= 16 << 20, "256 to 16 MiB"),
            "rate_per_minute": (lambda v: _num(v) and v > 0, "requests per minute > 0"),
            "burst": (lambda v: _int(v) and v >= 1, "a whole number >= 1"),
            "replies_kept": (lambda v: _int(v) and v >= 10, "a whole number >= 10"),
        }
        values: dict[str, Any] = {}
        for key, (check, expected) in checks.items():
            if key in raw:
                if not check(raw[key]):
                    raise config.error(f"api.{key}", f"expected {expected}, got {raw[key]!r}")
                values[key] = raw[key]
        return cls(**values)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
