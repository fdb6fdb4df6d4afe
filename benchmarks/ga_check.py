"""The GA check's cost: reading a large yum repository cold (repomd, download, checksum, parse)
and warm (repomd only: the index is cached by revision), over loopback HTTP.

The repository is synthetic but well-formed rpm-md: PACKAGES entries in primary.xml.gz (about
the size of a distribution's AppStream) with a repomd.xml carrying its real sha256.
Prints one figure per line.
"""

from __future__ import annotations

import gzip
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from marvin.actions.yum import Repositories  # noqa: E402

PACKAGES = 20_000
NAMES = 1_000
COMMON = "http://linux.duke.edu/metadata/common"


def primary_xml() -> bytes:
    out = [f'<?xml version="1.0"?>\n<metadata xmlns="{COMMON}" packages="{PACKAGES}">']
    for i in range(PACKAGES):
        name, n = f"app-{i % NAMES}", i // NAMES
        digest = hashlib.sha256(f"{name}{n}".encode()).hexdigest()
        out.append(
            f'<package type="rpm"><name>{name}</name><arch>x86_64</arch>'
            f'<version epoch="0" ver="1.{n}.{i % 7}" rel="1.el9"/>'
            f'<checksum type="sha256" pkgid="YES">{digest}</checksum>'
            f"<summary>{name}</summary><description>A package.</description>"
            f'<location href="Packages/{name}-1.{n}.{i % 7}-1.el9.x86_64.rpm"/></package>'
        )
    out.append("</metadata>")
    return "\n".join(out).encode()


def write_repo(root: Path) -> int:
    data = gzip.compress(primary_xml())
    digest = hashlib.sha256(data).hexdigest()
    (root / "repodata").mkdir(parents=True)
    (root / "repodata" / f"{digest}-primary.xml.gz").write_bytes(data)
    (root / "repodata" / "repomd.xml").write_text(
        '<?xml version="1.0"?><repomd xmlns="http://linux.duke.edu/metadata/repo">'
        '<revision>1</revision><data type="primary">'
        f'<checksum type="sha256">{digest}</checksum>'
        f'<location href="repodata/{digest}-primary.xml.gz"/></data></repomd>'
    )
    return len(data)


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        size = write_repo(Path(tmp))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=tmp))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        try:
            cold = []
            for _ in range(3):
                repos = Repositories()
                started = time.perf_counter()
                index = repos.index(url)
                cold.append(time.perf_counter() - started)
            warm = []
            for _ in range(50):
                started = time.perf_counter()
                repos.index(url)
                warm.append(time.perf_counter() - started)
            versions = [p.evr for p in index.named("app-7")]
            started = time.perf_counter()
            for _ in range(100):
                sorted(versions, reverse=True)
            sort_us = (time.perf_counter() - started) / 100 * 1e6
        finally:
            httpd.shutdown()
    assert sum(len(v) for v in index.packages.values()) == PACKAGES
    print(f"primary.xml.gz: {PACKAGES} packages, {size / 1e6:.2f} MB compressed")
    print(
        f"cold check (repomd + download + sha256 + parse): {statistics.median(cold) * 1e3:.0f} ms"
    )
    print(f"warm check (repomd only, cached by revision): {statistics.median(warm) * 1e3:.2f} ms")
    print(f"sorting {len(versions)} versions newest first (rpmvercmp): {sort_us:.0f} µs")


if __name__ == "__main__":
    main()
