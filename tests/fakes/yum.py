"""Real yum repositories for tests: RPMs built with ``rpmbuild``, indexed with ``createrepo_c``
(Debian packages ``rpm`` and ``createrepo-c``), served over loopback HTTP.

``yum_repos`` (session scope) builds, once:

- ``ga/<app>``: orders-api 1.4.0-1.el9 and 1.4.1-1.el9; billing 1:3.1.0-1.el9 and 2:3.0.0-1.el9
- ``staging/<app>``: the same plus orders-api's release candidate 1.5.0-0.1.rc1.el9
- ``tampered/orders-api``: GA whose primary file no longer matches repomd's checksum
- ``badrpm/orders-api``: GA with an RPM whose bytes no longer match the primary's checksum
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GA = {"orders-api": ["1.4.0-1.el9", "1.4.1-1.el9"], "billing": ["1:3.1.0-1.el9", "2:3.0.0-1.el9"]}
RC = "1.5.0-0.1.rc1.el9"

SPEC = """\
Name: {name}
{epoch}Version: {version}
Release: {release}
Summary: {name} for Marvin's tests
License: MIT
BuildArch: noarch
%description
A test package.
%install
mkdir -p %{{buildroot}}/opt/{name}
echo {version}-{release} > %{{buildroot}}/opt/{name}/VERSION
%files
/opt/{name}/VERSION
"""


def build_rpm(topdir: Path, name: str, evr: str) -> Path:
    """One noarch RPM of ``name`` at ``[epoch:]version-release``."""
    epoch, _, rest = evr.rpartition(":")
    version, _, release = rest.rpartition("-")
    spec = topdir / f"{name}-{rest}.spec"
    topdir.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        SPEC.format(
            name=name, version=version, release=release, epoch=f"Epoch: {epoch}\n" if epoch else ""
        )
    )
    subprocess.run(
        ["rpmbuild", "--define", f"_topdir {topdir}", "--define", "_build_id_links none"]
        + ["--quiet", "-bb", str(spec)],
        check=True,
        capture_output=True,
    )
    return topdir / "RPMS" / "noarch" / f"{name}-{version}-{release}.noarch.rpm"


def index(repo: Path, *, revision: str | None = None) -> None:
    argv = ["createrepo_c", "--quiet", "--no-database"]
    if revision is not None:
        argv += ["--revision", revision]
    subprocess.run([*argv, str(repo)], check=True, capture_output=True)


def primary_file(repo: Path) -> Path:
    return next((repo / "repodata").glob("*-primary.xml.gz"))


@dataclass
class RepoServer:
    """``root`` over HTTP on 127.0.0.1; ``paths`` lists what was requested."""

    root: Path
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.paths.append(self.path)
                super().do_GET()

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(self.root))
        )
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def template(self, kind: str) -> str:
        """A per-app repository URL template, as in ``deploy.ga_repo_url``."""
        return f"{self.url}/{kind}/{{app}}/el9/noarch"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class YumRepos:
    root: Path
    server: RepoServer
    rpms: dict[tuple[str, str], Path]

    def repo(self, kind: str, app: str) -> Path:
        return self.root / kind / app / "el9" / "noarch"

    def env(self) -> dict[str, str]:
        return {
            "GA_REPO_URL": self.server.template("ga"),
            "STAGING_REPO_URL": self.server.template("staging"),
        }


def build_repos(root: Path) -> dict[tuple[str, str], Path]:
    top = root / "rpmbuild"
    rpms = {(name, evr): build_rpm(top, name, evr) for name, evrs in GA.items() for evr in evrs}
    rpms[("orders-api", RC)] = build_rpm(top, "orders-api", RC)

    def fill(kind: str, app: str, versions: list[str]) -> Path:
        repo = root / kind / app / "el9" / "noarch"
        repo.mkdir(parents=True)
        for evr in versions:
            shutil.copy(rpms[(app, evr)], repo)
        index(repo)
        return repo

    for app, versions in GA.items():
        fill("ga", app, versions)
        fill("staging", app, versions + ([RC] if app == "orders-api" else []))
    # A primary that was changed after indexing (a compromised or half-synced mirror).
    tampered = fill("tampered", "orders-api", GA["orders-api"])
    primary = primary_file(tampered)
    xml = gzip.decompress(primary.read_bytes()).replace(b"1.4.0", b"1.4.2")
    primary.write_bytes(gzip.compress(xml))
    # An RPM replaced after indexing: primary and repomd agree, the package does not.
    bad = fill("badrpm", "orders-api", GA["orders-api"])
    (bad / "orders-api-1.4.1-1.el9.noarch.rpm").write_bytes(b"not the indexed rpm")
    return rpms


@pytest.fixture(scope="session")
def yum_repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[YumRepos]:
    for tool in ("rpmbuild", "createrepo_c"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (Debian packages rpm and createrepo-c)")
    root = tmp_path_factory.mktemp("yum")
    rpms = build_repos(root)
    server = RepoServer(root)
    try:
        yield YumRepos(root, server, rpms)
    finally:
        server.stop()


__all__ = ["yum_repos", "YumRepos", "RepoServer", "build_rpm", "index", "primary_file", "RC"]
