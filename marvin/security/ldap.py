"""The LDAP directory backend (OpenLDAP or Active Directory, over ldap3).

See ``marvin.security.directory`` for the contract: ``groups_for(email)`` returns lowercase group
names including nested ones, raises ``UserNotInDirectory`` or ``DirectoryUnavailable``.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from ldap3 import DSA, NONE, SAFE_SYNC, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from marvin.core.cache import TTLCache
from marvin.security.directory import (
    DirectoryConfigError,
    DirectoryUnavailable,
    UserNotInDirectory,
    _norm_email,
)

__all__ = ["LdapConfig", "LdapDirectory", "AD_IN_CHAIN"]

log = structlog.get_logger(__name__)

# Active Directory: LDAP_MATCHING_RULE_IN_CHAIN and the root-DSE capability OID.
AD_IN_CHAIN = "1.2.840.113556.1.4.1941"
AD_CAPABILITY = "1.2.840.113556.1.4.800"


GroupMode = Literal["memberof", "member", "uniquemember", "posix"]
NestedMode = Literal["auto", "ad", "walk", "off"]
_MEMBER_ATTR = {"memberof": "member", "member": "member", "uniquemember": "uniqueMember"}
_CACHE_MAX = 10_000
_OR_CHUNK = 40  # group DNs per (|(member=...)...) filter, keeps filters a sane size


@dataclass(frozen=True, kw_only=True)
class LdapConfig:
    url: str
    bind_dn: str | None
    # The secret itself (read from an env var by the caller); never logged or repr'd.
    bind_password: str | None = field(repr=False)
    user_base: str
    group_base: str
    user_filter: str = "(mail={email})"
    group_mode: GroupMode = "memberof"
    nested: NestedMode = "auto"
    max_depth: int = 5
    start_tls: bool = False
    ca_file: str | None = None
    validate_cert: bool = True
    timeout: float = 5.0
    cache_ttl: float = 300
    negative_ttl: float = 30
    uid_attr: str = "uid"  # posix mode: the user attribute stored in memberUid

    def __post_init__(self) -> None:
        if self.group_mode not in ("memberof", "member", "uniquemember", "posix"):
            raise DirectoryConfigError(f"ldap.group_mode: unknown mode {self.group_mode!r}")
        if self.nested not in ("auto", "ad", "walk", "off"):
            raise DirectoryConfigError(f"ldap.nested: unknown mode {self.nested!r}")
        if "{email}" not in self.user_filter:
            raise DirectoryConfigError("ldap.user_filter: must contain {email}")
        # A DN with an empty password is an "unauthenticated bind" that servers accept
        # as anonymous -- a silent misconfiguration, so refuse it outright.
        if self.bind_dn and not self.bind_password:
            raise DirectoryConfigError("ldap.bind_password: empty (is the env var set?)")
        if self.max_depth < 0 or self.timeout <= 0:
            raise DirectoryConfigError("ldap: max_depth must be >= 0 and timeout > 0")


def _dn_key(dn: str) -> str:
    """Case-insensitive comparison key for a DN (whitespace around RDNs ignored)."""
    try:
        return ",".join(f"{a.lower()}={v.lower()}" for a, v, _ in parse_dn(dn, strip=True))
    except LDAPException:
        return dn.strip().lower()


def _rdn_value(dn: str) -> str:
    try:
        return parse_dn(dn, strip=True)[0][1].lower()
    except (LDAPException, IndexError):
        return dn.split(",", 1)[0].split("=", 1)[-1].strip().lower()


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def _ok(ret: Any) -> bool:
    # SAFE_SYNC returns (status, result, response, request); plain SYNC returns a bool.
    return bool(ret[0] if isinstance(ret, tuple) else ret)


class LdapDirectory:
    """Group lookup over one shared, thread-safe ldap3 connection with a TTL cache.

    Cost per uncached user: one user search, plus (memberof/member modes) the nested
    walk, whose per-level results are cached and shared between users; AD costs one
    extra in-chain search. Within ``cache_ttl`` a cached answer is served even if the
    server has since gone down; a failed lookup is never cached.
    Counters for benchmarks: ``searches``, ``cache_hits``, ``coalesced``.
    """

    def __init__(self, config: LdapConfig) -> None:
        self.config = config
        self.searches = 0  # LDAP search operations sent (root-DSE read on connect excluded)
        self._lock = threading.Lock()  # guards the search counter
        self._conn_lock = threading.Lock()  # guards (re)connecting
        self._conn: Connection | None = None
        self._is_ad = False
        # A failed lookup is never cached; "not in the directory" only for negative_ttl.
        self._users: TTLCache[frozenset[str] | None] = TTLCache(
            lambda v: config.cache_ttl if v is not None else config.negative_ttl, _CACHE_MAX
        )
        self._parents: TTLCache[list[tuple[str, str]]] = TTLCache(config.cache_ttl, _CACHE_MAX)
        self._base_key = _dn_key(config.group_base)

    # -- public ------------------------------------------------------------

    def groups_for(self, email: str, *, fresh: bool = False) -> frozenset[str]:
        key = _norm_email(email)
        if not key:
            raise UserNotInDirectory(email)
        # fresh: a removal from a group must show at once, so no cached answer.
        groups = self._users.get(key, lambda: self._lookup(key, fresh), fresh=fresh)
        if groups is None:
            raise UserNotInDirectory(email)
        return groups

    def known_groups(self) -> frozenset[str]:
        """Every group's name under ``group_base`` (one search; for ``marvin check``)."""
        flt = (
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)"
            "(objectClass=posixGroup)(objectClass=group))"
        )
        return frozenset(name for _, name in self._groups(flt))

    def close(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._unbind(conn)

    # -- lookup ------------------------------------------------------------

    @property
    def cache_hits(self) -> int:
        return self._users.hits

    @property
    def coalesced(self) -> int:
        return self._users.coalesced

    def _lookup(self, email: str, fresh: bool = False) -> frozenset[str] | None:
        cfg = self.config
        attrs = {"memberof": ["memberOf"], "posix": [cfg.uid_attr]}.get(cfg.group_mode, ["1.1"])
        # Escaping is what stops "*" or ")(" in an email from widening the filter.
        flt = cfg.user_filter.replace("{email}", escape_filter_chars(email))
        users = self._search(cfg.user_base, flt, attrs)
        if len(users) != 1:
            if users:  # ambiguous: refuse rather than guess whose groups to use
                log.warning("ldap.ambiguous_user", email=email, matches=len(users))
            return None
        user_dn, user_attrs = users[0]["dn"], users[0].get("attributes", {})
        mode = cfg.group_mode
        if mode != "posix" and (cfg.nested == "ad" or (cfg.nested == "auto" and self._is_ad)):
            # AD resolves the whole nesting chain server-side in one search.
            flt = f"(member:{AD_IN_CHAIN}:={escape_filter_chars(user_dn)})"
            return frozenset(name for _, name in self._groups(flt))
        direct: dict[str, tuple[str, str]] = {}
        if mode == "memberof":
            for dn in user_attrs.get("memberOf") or []:
                if _dn_key(dn).endswith("," + self._base_key):
                    direct[_dn_key(dn)] = (dn, _rdn_value(dn))
        elif mode == "posix":
            uid = _first(user_attrs.get(cfg.uid_attr))
            if uid:
                flt = f"(&(objectClass=posixGroup)(memberUid={escape_filter_chars(uid)}))"
                direct = {_dn_key(dn): (dn, name) for dn, name in self._groups(flt)}
        else:
            flt = f"({_MEMBER_ATTR[mode]}={escape_filter_chars(user_dn)})"
            direct = {_dn_key(dn): (dn, name) for dn, name in self._groups(flt)}
        if mode != "posix" and cfg.nested != "off":
            direct = self._walk(direct, fresh)  # fresh: nesting read anew too
        return frozenset(name for _, name in direct.values())

    def _groups(self, flt: str) -> list[tuple[str, str]]:
        rows = self._search(self.config.group_base, flt, ["cn"])
        return [
            (r["dn"], (_first(r.get("attributes", {}).get("cn")) or _rdn_value(r["dn"])).lower())
            for r in rows
        ]

    def _walk(
        self, found: dict[str, tuple[str, str]], fresh: bool = False
    ) -> dict[str, tuple[str, str]]:
        """Bounded breadth-first walk up the group tree: one search per level (batched).

        Needed because OpenLDAP's memberOf is not transitive and it answers the AD
        in-chain rule with zero rows instead of an error.
        """
        found = dict(found)
        frontier = [dn for dn, _ in found.values()]
        for _ in range(self.config.max_depth):
            if not frontier:
                break
            nxt = []
            for dn, name in self._parents_of(frontier, fresh):
                if _dn_key(dn) not in found:  # also what makes cycles terminate
                    found[_dn_key(dn)] = (dn, name)
                    nxt.append(dn)
            frontier = nxt
        return found

    def _parents_of(self, dns: Iterable[str], fresh: bool = False) -> list[tuple[str, str]]:
        dns = sorted(set(dns))
        attr = _MEMBER_ATTR[self.config.group_mode]

        def search() -> list[tuple[str, str]]:
            parents: list[tuple[str, str]] = []
            for i in range(0, len(dns), _OR_CHUNK):
                chunk = dns[i : i + _OR_CHUNK]
                terms = "".join(f"({attr}={escape_filter_chars(dn)})" for dn in chunk)
                parents += self._groups(f"(|{terms})")
            return parents

        # Shared across users: everyone in "ops" reuses one walk of ops' ancestors.
        key = frozenset(_dn_key(dn) for dn in dns)
        return self._parents.get(key, search, fresh=fresh)

    # -- connection --------------------------------------------------------

    def _search(self, base: str, flt: str, attrs: list[str]) -> list[dict[str, Any]]:
        for _attempt in range(2):
            conn, fresh = self._connection()
            with self._lock:
                self.searches += 1
            started = time.monotonic()
            try:
                _, result, response, _ = conn.search(
                    base,
                    flt,
                    search_scope=SUBTREE,
                    attributes=attrs,
                    time_limit=math.ceil(self.config.timeout),
                )
            except (LDAPException, OSError) as exc:
                self._discard(conn)
                # Retry once only for a stale shared connection (server restarted): that
                # fails fast. A slow failure is a hung server; retrying would double the wait.
                if fresh or time.monotonic() - started > self.config.timeout / 2:
                    raise self._unavailable("search failed", exc) from exc
                continue
            if result["result"] != 0:
                self._discard(conn)
                raise self._unavailable(
                    "search failed", f"{result['description']} {result.get('message', '')}"
                )
            return [r for r in response or () if r.get("type") == "searchResEntry"]
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> tuple[Connection, bool]:
        with self._conn_lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn, False
            cfg = self.config
            tls = None
            if cfg.start_tls or cfg.url.lower().startswith("ldaps://"):
                tls = Tls(
                    validate=ssl.CERT_REQUIRED if cfg.validate_cert else ssl.CERT_NONE,
                    ca_certs_file=cfg.ca_file,
                )
            # Root DSE is only needed to detect AD for nested="auto".
            server = Server(
                cfg.url,
                tls=tls,
                connect_timeout=cfg.timeout,
                get_info=DSA if cfg.nested == "auto" else NONE,
            )
            conn = Connection(
                server,
                user=cfg.bind_dn or None,
                password=cfg.bind_password or None,
                client_strategy=SAFE_SYNC,
                # ldap3 packs this into SO_RCVTIMEO as a C long: it must be an int.
                receive_timeout=max(1, math.ceil(cfg.timeout)),
                raise_exceptions=False,
                read_only=True,
            )
            try:
                conn.open(read_server_info=False)
                if cfg.start_tls and not _ok(conn.start_tls(read_server_info=False)):
                    raise self._unavailable("StartTLS failed", conn.last_error)
                ret = conn.bind(read_server_info=cfg.nested == "auto")
                if not _ok(ret):
                    result = ret[1] if isinstance(ret, tuple) else conn.result
                    raise self._unavailable(
                        f"bind as {cfg.bind_dn!r} failed", (result or {}).get("description")
                    )
            except (LDAPException, OSError) as exc:
                self._unbind(conn)
                raise self._unavailable("cannot connect", exc) from exc
            except DirectoryUnavailable:
                self._unbind(conn)
                raise
            info = server.info
            self._is_ad = bool(info) and any(
                f[0] == AD_CAPABILITY for f in info.supported_features or ()
            )
            self._conn = conn
            return conn, True

    def _discard(self, conn: Connection) -> None:
        with self._conn_lock:
            if self._conn is conn:
                self._conn = None
        self._unbind(conn)

    @staticmethod
    def _unbind(conn: Connection) -> None:
        try:
            conn.unbind()
        except Exception:  # best effort on an already-broken socket
            pass

    def _unavailable(self, what: str, detail: Any) -> DirectoryUnavailable:
        # Deliberately logs url/bind_dn only: the password never reaches a log line.
        log.warning("ldap.unavailable", url=self.config.url, what=what, detail=str(detail))
        return DirectoryUnavailable(f"LDAP {self.config.url}: {what}: {detail}")
