"""RPM version ordering (against rpm itself) and reading real yum repositories."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from marvin.actions.rpm import EVR, parse_evr, rpmvercmp
from marvin.actions.yum import RepoError, Repositories, redact_url
from tests.fakes.yum import RC, RepoServer, YumRepos, build_rpm, index

KNOWN = [  # rpm's own test vectors (rpmvercmp.at), a, b, expected
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0.1a", "2.0.1", 1), ("5.5p10", "5.5p1", 1),
    ("10xyz", "10.1xyz", -1), ("xyz.4", "8", -1), ("6.0.rc1", "6.0", 1), ("10b2", "10a1", 1),
    ("1.0aa", "1.0a", 1), ("10.0001", "10.1", 0), ("2_0", "2.0", 0), ("+a", "_a", 0),
    ("1.0~rc1", "1.0", -1), ("1.0~rc1~git123", "1.0~rc1", -1), ("1.0^", "1.0", 1),
    ("1.0^git1", "1.01", -1), ("1.0^20160101^git1", "1.0^20160101", 1),
    ("1.0~rc1^git1", "1.0~rc1", 1), ("1.0^git1~pre", "1.0^git1", -1),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b", "want"), KNOWN)
def test_rpmvercmp_known_vectors(a: str, b: str, want: int) -> None:
    assert rpmvercmp(a, b) == want and rpmvercmp(b, a) == -want


def test_rpmvercmp_agrees_with_rpm_itself() -> None:
    rng = random.Random(13)
    alphabet = "01a9z~^._"
    pairs = [
        tuple("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))) for _ in "ab")
        for _ in range(2000)
    ]
    lua = " ".join(f'print(rpm.vercmp("{a}", "{b}") .. " ")' for a, b in pairs)
    out = subprocess.run(
        ["rpm", "--eval", "%{lua:" + lua + "}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(out) == len(pairs)
    wrong = [
        (a, b, int(o)) for (a, b), o in zip(pairs, out, strict=True) if rpmvercmp(a, b) != int(o)
    ]
    assert wrong == []


def test_evr_parsing_and_ordering() -> None:
    assert parse_evr("1.4.1-1.el9") == EVR(0, "1.4.1", "1.el9")
    assert parse_evr("2:1.4.1-1.el9") == EVR(2, "1.4.1", "1.el9")
    assert str(parse_evr("0:1.4.1-1.el9")) == "1.4.1-1.el9"
    for bad in ("1.4.1", "x:1-1", "1.4.1-1.el9;rm", "-1", "1-"):
        with pytest.raises(ValueError, match="not an RPM version-release"):
            parse_evr(bad)
    ordered = ["1.4.0-1.el9", "1.4.1-1.el9", RC, "1.5.0-1.el9", "1:0.9-1.el9", "2:0.1-1"]
    assert sorted(parse_evr(v) for v in reversed(ordered)) == [parse_evr(v) for v in ordered]
    assert parse_evr("1.5.0~rc1-1.el9") < parse_evr("1.5.0-1.el9")


def test_reads_repositories_and_parses_every_version(yum_repos: YumRepos) -> None:
    repos = Repositories(timeout=5)
    ga = repos.index(yum_repos.server.template("ga").replace("{app}", "orders-api"))
    assert sorted(str(p.evr) for p in ga.named("orders-api")) == ["1.4.0-1.el9", "1.4.1-1.el9"]
    staging = repos.index(yum_repos.server.template("staging").replace("{app}", "orders-api"))
    assert RC in {str(p.evr) for p in staging.named("orders-api")}
    billing = repos.index(yum_repos.server.template("ga").replace("{app}", "billing"))
    assert {p.evr for p in billing.named("billing")} == {EVR(1, "3.1.0", "1.el9"),
                                                         EVR(2, "3.0.0", "1.el9")}  # fmt: skip
    pkg = next(p for p in ga.named("orders-api") if str(p.evr) == "1.4.1-1.el9")
    assert pkg.location.endswith("/orders-api-1.4.1-1.el9.noarch.rpm") and pkg.arch == "noarch"
    assert repos.verify(pkg) == pkg.checksum  # the RPM served is the one indexed


def test_index_is_cached_by_revision(yum_repos: YumRepos, tmp_path: Path) -> None:
    repo = tmp_path / "mirror"
    repo.mkdir()
    shutil.copy(yum_repos.rpms[("orders-api", "1.4.0-1.el9")], repo)
    index(repo, revision="100")
    server = RepoServer(tmp_path)
    try:
        repos = Repositories(timeout=5)
        url = f"{server.url}/mirror"
        first = repos.index(url)
        assert repos.index(url) is first and repos.downloads == 1
        assert sum("primary" in p for p in server.paths) == 1  # repomd read twice, primary once
        shutil.copy(yum_repos.rpms[("orders-api", "1.4.1-1.el9")], repo)
        index(repo, revision="101")  # promoted a new version: a new revision
        second = repos.index(url)
        assert second.revision == "101" and repos.downloads == 2
        assert len(second.named("orders-api")) == 2
    finally:
        server.stop()


def test_tampered_primary_is_refused(yum_repos: YumRepos) -> None:
    url = yum_repos.server.template("tampered").replace("{app}", "orders-api")
    with pytest.raises(RepoError, match="does not match its checksum in repomd.xml"):
        Repositories(timeout=5).index(url)


def test_replaced_rpm_is_refused(yum_repos: YumRepos) -> None:
    repos = Repositories(timeout=5)
    idx = repos.index(yum_repos.server.template("badrpm").replace("{app}", "orders-api"))
    pkg = next(p for p in idx.named("orders-api") if str(p.evr) == "1.4.1-1.el9")
    with pytest.raises(RepoError, match="does not match its checksum in the repository"):
        repos.verify(pkg)


def test_unreachable_and_missing_repositories(yum_repos: YumRepos) -> None:
    repos = Repositories(timeout=2)
    with pytest.raises(RepoError, match="can't reach http://127.0.0.1:9/"):
        repos.index("http://127.0.0.1:9/ga/orders-api")
    with pytest.raises(RepoError, match="answered HTTP 404"):
        repos.index(f"{yum_repos.server.url}/ga/no-such-app")
    with pytest.raises(RepoError, match="only http, https and file"):
        repos.index("ftp://example.com/repo")


def test_compressions_other_than_gzip(yum_repos: YumRepos, tmp_path: Path) -> None:
    repo = tmp_path / "xz"
    repo.mkdir()
    shutil.copy(yum_repos.rpms[("orders-api", "1.4.1-1.el9")], repo)
    subprocess.run(["createrepo_c", "-q", "--no-database", "--compress-type", "xz", str(repo)],
                   check=True, capture_output=True)  # fmt: skip
    got = Repositories().index(repo.as_uri())  # a file:// mirror
    assert [str(p.evr) for p in got.named("orders-api")] == ["1.4.1-1.el9"]


def test_urls_are_redacted_for_chat() -> None:
    assert redact_url("https://bot:s3cret@yum.example.com/ga/x?token=abc") == (
        "https://***@yum.example.com/ga/x"
    )


def test_build_rpm_with_an_epoch(tmp_path: Path) -> None:
    rpm = build_rpm(tmp_path, "epochal", "3:1.0-1")
    out = subprocess.run(["rpm", "-qp", "--qf", "%{EPOCH}:%{VERSION}-%{RELEASE}", str(rpm)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out == "3:1.0-1"
