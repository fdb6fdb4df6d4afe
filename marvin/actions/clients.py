"""Clients belong to the action library: each action module declares the client it needs and
the configuration section that client reads, and the per-process ``Clients`` builds each one
lazily, once, on first use (``ctx.services.<name>``). Adding a backend (Consul, Jenkins...)
is one new action module; the core is not edited.

::

    declare("consul", {"url": Setting(str, "${CONSUL_HTTP_ADDR}", ...)})

    @client("consul")
    def _consul(config: Config) -> consul.Consul:
        ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from marvin.config import Config, load_section_owners

__all__ = ["client", "Clients", "discover", "CLIENTS"]

Factory = Callable[[Config], Any]
CLIENTS: dict[str, Factory] = {}


def client(name: str) -> Callable[[Factory], Factory]:
    """Register ``factory(config)`` as the builder of ``ctx.services.<name>``; returns it
    unchanged. A second factory for the same name is an error (two owners of one client)."""

    def register(factory: Factory) -> Factory:
        owner = CLIENTS.get(name)
        if owner is not None and owner.__qualname__ != factory.__qualname__:
            raise ValueError(f"client {name!r} is already provided by {owner.__module__}")
        CLIENTS[name] = factory
        return factory

    return register


def discover() -> None:
    """Import every module of ``marvin.actions`` once, so their sections and clients are
    declared (``marvin.config.load_section_owners``)."""
    load_section_owners()


class Clients:
    """``ctx.services``: the configuration and the clients, each built on first use."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        with self._lock:
            if name in self._built:
                return self._built[name]
        factory = CLIENTS.get(name)
        if factory is None:
            discover()
            factory = CLIENTS.get(name)
        if factory is None:
            raise AttributeError(f"no action module provides a client named {name!r}")
        with self._lock:  # built once even when two jobs ask at the same moment
            if name not in self._built:
                self._built[name] = factory(self.config)
            return self._built[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)
