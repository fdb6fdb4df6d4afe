"""Directory lookups: StaticDirectory (YAML) and LdapDirectory against a real slapd."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from marvin.security.directory import (
    DirectoryConfigError,
    DirectoryUnavailable,
    StaticDirectory,
    UserNotInDirectory,
)
from marvin.security.ldap import LdapConfig, LdapDirectory
from tests.fakes.slapd import Slapd, slapd_fixture  # noqa: F401  (fixture "slapd")

pytestmark = pytest.mark.timeout(60)

ALICE = frozenset({"ops", "platform-admins", "everyone-admin"})


def ldap(slapd: Slapd, **overrides: object) -> LdapDirectory:
    kwargs: dict = dict(
        url=slapd.url,
        bind_dn=slapd.root_dn,
        bind_password=slapd.root_pw,
        user_base=slapd.people,
        group_base=slapd.groups,
    )
    kwargs.update(overrides)
    return LdapDirectory(LdapConfig(**kwargs))


# ----------------------------------------------------------------- LDAP: lookups


def test_memberof_direct_groups_and_nested_walk(slapd: Slapd) -> None:
    assert ldap(slapd).groups_for("alice@example.com") == ALICE
    assert ldap(slapd).groups_for("bob@example.com") == {"developers"}
    assert ldap(slapd).groups_for("carol@example.com") == frozenset()
    # OpenLDAP's memberOf is not transitive: without the walk only the direct group shows.
    assert ldap(slapd, nested="off").groups_for("alice@example.com") == {"ops"}


def test_groupofnames_member_search(slapd: Slapd) -> None:
    d = ldap(slapd, group_mode="member")
    assert d.groups_for("alice@example.com") == ALICE
    assert d.groups_for("bob@example.com") == {"developers"}
    assert ldap(slapd, group_mode="member", nested="off").groups_for("alice@example.com") == {"ops"}


def test_uniquemember_and_posix_modes(slapd: Slapd) -> None:
    assert ldap(slapd, group_mode="uniquemember").groups_for("carol@example.com") == {"auditors"}
    posix = ldap(slapd, group_mode="posix")
    assert posix.groups_for("alice@example.com") == {"wheel"}
    assert posix.groups_for("bob@example.com") == {"wheel"}
    assert posix.groups_for("carol@example.com") == frozenset()


def test_ad_chain_rule_is_silently_empty_on_openldap_so_auto_walks(slapd: Slapd) -> None:
    # Forcing the AD in-chain rule on OpenLDAP: zero rows, no error. That is why
    # nested="auto" only uses it when the root DSE says the server is AD.
    assert ldap(slapd, nested="ad").groups_for("alice@example.com") == frozenset()
    assert ldap(slapd, nested="auto").groups_for("alice@example.com") == ALICE
    assert ldap(slapd, nested="walk").groups_for("alice@example.com") == ALICE


def test_walk_is_cycle_safe_and_depth_bounded(slapd: Slapd) -> None:
    assert ldap(slapd).groups_for("dave@example.com") == {"cycle-a", "cycle-b"}
    assert ldap(slapd).groups_for("erin@example.com") == {"level1", "level2", "level3", "level4"}
    assert ldap(slapd, max_depth=2).groups_for("erin@example.com") == {
        "level1",
        "level2",
        "level3",
    }


def test_email_is_case_insensitive(slapd: Slapd) -> None:
    assert ldap(slapd).groups_for("  Alice@Example.COM ") == ALICE


@pytest.mark.parametrize(
    "evil",
    [
        "*",
        "*@example.com",
        "a*",
        "alice@example.com)(mail=*",
        "x)(|(mail=*",
        "alice@example.com)(objectClass=*",
        "\\2a",
    ],
)
def test_filter_injection_is_harmless(slapd: Slapd, evil: str) -> None:
    with pytest.raises(UserNotInDirectory):
        ldap(slapd).groups_for(evil)


def test_literal_star_in_email_matches_only_itself(slapd: Slapd) -> None:
    d = ldap(slapd, user_filter="(&(objectClass=inetOrgPerson)(mail={email}))")
    assert d.groups_for("st*r@example.com") == {"developers"}
    with pytest.raises(UserNotInDirectory):
        d.groups_for("st*@example.com")


# ----------------------------------------------------------------- LDAP: caching


def test_second_lookup_is_served_from_cache(slapd: Slapd) -> None:
    d = ldap(slapd)
    d.groups_for("alice@example.com")
    after_first = d.searches
    assert after_first >= 1
    assert d.groups_for("ALICE@example.com") == ALICE
    assert d.searches == after_first
    assert d.cache_hits == 1


def test_positive_cache_expires(slapd: Slapd) -> None:
    d = ldap(slapd, cache_ttl=0.2)
    d.groups_for("bob@example.com")
    first = d.searches
    time.sleep(0.3)
    d.groups_for("bob@example.com")
    assert d.searches > first


def test_negative_cache_then_expiry(slapd: Slapd) -> None:
    d = ldap(slapd, negative_ttl=0.5)
    with pytest.raises(UserNotInDirectory):
        d.groups_for("newbie@example.com")
    searches = d.searches
    slapd.add_user("newbie", "newbie@example.com", ["ops"])
    with pytest.raises(UserNotInDirectory):  # still cached as not-found
        d.groups_for("newbie@example.com")
    assert d.searches == searches and d.cache_hits == 1
    time.sleep(0.6)
    assert d.groups_for("newbie@example.com") == ALICE


def test_concurrent_lookups_of_one_user_share_one_search(slapd: Slapd) -> None:
    d = ldap(slapd, nested="off")
    start = threading.Barrier(20)
    results: list[frozenset[str]] = []

    def worker() -> None:
        start.wait()
        results.append(d.groups_for("alice@example.com"))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [frozenset({"ops"})] * 20
    assert d.searches == 1


def test_fifty_users_cost_about_one_search_each(slapd: Slapd) -> None:
    for i in range(50):
        slapd.add_user(f"u{i}", f"u{i}@example.com", ["ops"])
    d = ldap(slapd)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(5):
                assert d.groups_for(f"u{i}@example.com") == ALICE
        except BaseException as exc:  # surface thread failures in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # One user search each; the nested walk (ops -> platform-admins -> everyone-admin ->
    # none) is shared through the group-parent cache, so it costs at most 3 once.
    assert d.searches <= 50 + 3
    assert ldap(slapd, nested="off").searches == 0


# ----------------------------------------------------------------- LDAP: failures


def test_stopped_server_raises_unavailable_and_recovers(slapd: Slapd) -> None:
    d = ldap(slapd)
    assert d.groups_for("alice@example.com") == ALICE  # shared connection now open
    slapd.stop()
    with pytest.raises(DirectoryUnavailable):
        d.groups_for("bob@example.com")  # never an empty (allow-ish) answer
    with pytest.raises(DirectoryUnavailable):
        ldap(slapd).groups_for("bob@example.com")  # fresh client, nothing listening
    slapd.start()
    # Failures are not cached, and the dead connection is replaced transparently.
    assert d.groups_for("bob@example.com") == {"developers"}


def test_hung_server_times_out_as_unavailable(slapd: Slapd) -> None:
    d = ldap(slapd, timeout=1.0)
    slapd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            d.groups_for("alice@example.com")
        assert time.monotonic() - started < 5
    finally:
        slapd.resume()
    assert d.groups_for("alice@example.com") == ALICE


def test_bad_bind_password_is_unavailable_and_never_logged(
    slapd: Slapd, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "wrong-but-secret-pw-123"
    d = ldap(slapd, bind_password=secret)
    with pytest.raises(DirectoryUnavailable) as info:
        d.groups_for("alice@example.com")
    out = capsys.readouterr()
    assert "invalidCredentials" in str(info.value)
    assert secret not in str(info.value) + out.out + out.err + repr(d.config)


def test_config_validation() -> None:
    base = dict(url="ldap://x", user_base="o=x", group_base="o=x")
    with pytest.raises(DirectoryConfigError, match="bind_password"):
        LdapConfig(bind_dn="cn=svc", bind_password="", **base)
    with pytest.raises(DirectoryConfigError, match="group_mode"):
        LdapConfig(bind_dn=None, bind_password=None, group_mode="nope", **base)  # type: ignore[arg-type]
    with pytest.raises(DirectoryConfigError, match="user_filter"):
        LdapConfig(bind_dn=None, bind_password=None, user_filter="(mail=x)", **base)


# ----------------------------------------------------------------- StaticDirectory

STATIC = """
users:
  alice@example.com: {groups: [ops]}
  Bob@Example.com: {groups: [Developers]}
  carol@example.com: {}
  dave@example.com: {groups: [loop-a]}
groups:
  platform-admins: {members: [ops]}
  everyone-admin: {members: [platform-admins]}
  loop-a: {members: [loop-b]}
  loop-b: {members: [loop-a]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "directory.yaml"
    path.write_text(text)
    return path


def test_static_nesting_case_and_cycles(tmp_path: Path) -> None:
    d = StaticDirectory(write(tmp_path, STATIC))
    assert d.groups_for("alice@example.com") == ALICE
    assert d.groups_for("bob@example.com") == {"developers"}
    assert d.groups_for("carol@example.com") == frozenset()
    assert d.groups_for("dave@example.com") == {"loop-a", "loop-b"}
    with pytest.raises(UserNotInDirectory):
        d.groups_for("mallory@example.com")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("users:\n  alice@example.com: {groups: ops}\n", "users.alice@example.com.groups"),
        ("users:\n  alice@example.com: {groupz: [ops]}\n", "users.alice@example.com"),
        ("users:\n  not-an-email: {groups: [ops]}\n", "users.not-an-email"),
        ("users:\n  a@x.com: {}\n  A@X.com: {}\n", "users.A@X.com"),
        ("users: {}\ngroups:\n  admins: {members: [1, 2]}\n", "groups.admins.members"),
        ("users: {}\ngroups: [admins]\n", "groups"),
        ("groups: {}\n", "users"),
        ("users: {}\nextra: 1\n", "(top level)"),
        ("users: [\n", "invalid YAML"),
    ],
)
def test_static_validation_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DirectoryConfigError) as info:
        StaticDirectory(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_static_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DirectoryConfigError, match="cannot read"):
        StaticDirectory(tmp_path / "absent.yaml")
