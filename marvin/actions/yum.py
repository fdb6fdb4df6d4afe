"""Reading yum (rpm-md) repositories, trusting nothing that was not verified.

``repodata/repomd.xml`` names the ``primary`` data file with its checksum; the file is
downloaded, its checksum verified against repomd, then parsed (streamed: a big repository is
never held twice). The parsed index is cached per repository, keyed by repomd's revision and
the primary checksum, so a repository that did not change is not downloaded again. A package's
own RPM can be verified against the checksum the (verified) primary gives for it.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import IO, Any

from marvin.actions import ActionError
from marvin.actions.rpm import EVR

__all__ = ["Package", "RepoIndex", "RepoError", "Repositories", "redact_url"]

REPO = "{http://linux.duke.edu/metadata/repo}"
COMMON = "{http://linux.duke.edu/metadata/common}"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_HASHES = {"sha": "sha1", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256"}
_HASHES |= {"sha384": "sha384", "sha512": "sha512"}  # md5 is refused: too weak to trust
_CHUNK = 1 << 16


class RepoError(ActionError):
    """The repository can't be read, or what it serves can't be trusted."""


@dataclass(frozen=True)
class Package:
    name: str
    arch: str
    evr: EVR
    checksum_type: str
    checksum: str
    location: str  # absolute URL of the .rpm


@dataclass(frozen=True)
class RepoIndex:
    url: str
    revision: str
    primary_checksum: str
    packages: dict[str, tuple[Package, ...]]  # name -> packages of that name

    def named(self, name: str) -> tuple[Package, ...]:
        return self.packages.get(name, ())


def redact_url(url: str) -> str:
    """A URL fit for chat and logs: no credentials, no query string (tokens live there)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    if parts.username or parts.password:
        host = "***@" + host
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class Repositories:
    """``ctx.services.yum``: one per process; thread-safe; caches parsed indexes."""

    def __init__(self, *, timeout: float = 10.0, max_bytes: int = 1 << 30) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.downloads = 0  # primary files fetched (the cache's effect is visible in tests)
        self._cache: dict[str, tuple[tuple[str, str], RepoIndex]] = {}
        self._lock = threading.Lock()

    def index(self, url: str) -> RepoIndex:
        base = url.rstrip("/") + "/"
        shown = redact_url(base)
        with self._open(base + "repodata/repomd.xml") as resp:
            repomd = resp.read(16 << 20)
        try:
            root = ET.fromstring(repomd)
        except ET.ParseError as exc:
            raise RepoError(f"{shown}repodata/repomd.xml is not valid XML ({exc})") from None
        primary = next((d for d in root.iter(f"{REPO}data") if d.get("type") == "primary"), None)
        checksum = primary.find(f"{REPO}checksum") if primary is not None else None
        location = primary.find(f"{REPO}location") if primary is not None else None
        if checksum is None or location is None or not location.get("href"):
            raise RepoError(f"{shown}repodata/repomd.xml names no primary data")
        algo = _algorithm(checksum.get("type", ""), shown)
        expected = (checksum.text or "").strip().lower()
        revision = (root.findtext(f"{REPO}revision") or "").strip()
        key = (revision, expected)
        with self._lock:
            cached = self._cache.get(base)
        if cached is not None and cached[0] == key:
            return cached[1]
        href = urllib.parse.urljoin(location.get(XML_BASE) or base, location.get("href", ""))
        with tempfile.TemporaryFile() as spool:
            got = self._download(href, algo, spool)
            if got != expected:
                raise RepoError(
                    f"{redact_url(href)} does not match its checksum in repomd.xml "
                    f"({algo} {got[:12]}…, expected {expected[:12]}…): refusing to trust it"
                )
            spool.seek(0)
            packages = _parse_primary(_decompress(spool, href), base, shown)
        index = RepoIndex(base, revision, expected, packages)
        with self._lock:
            self.downloads += 1
            self._cache[base] = (key, index)
        return index

    def verify(self, package: Package) -> str:
        """Download the RPM and check it against the primary's checksum; returns the digest."""
        algo = _algorithm(package.checksum_type, redact_url(package.location))
        with tempfile.TemporaryFile() as spool:
            got = self._download(package.location, algo, spool)
        if got != package.checksum.lower():
            raise RepoError(
                f"{redact_url(package.location)} does not match its checksum in the "
                f"repository's primary data ({algo} {got[:12]}…): refusing to trust it"
            )
        return got

    def _download(self, url: str, algo: str, out: IO[bytes]) -> str:
        digest = hashlib.new(algo)
        size = 0
        with self._open(url) as resp:
            while chunk := resp.read(_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise RepoError(f"{redact_url(url)} is larger than {self.max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def _open(self, url: str) -> Any:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise RepoError(f"{redact_url(url)}: only http, https and file URLs are read")
        try:
            return urllib.request.urlopen(url, timeout=self.timeout)  # noqa: S310 (checked)
        except urllib.error.HTTPError as exc:
            raise RepoError(f"{redact_url(url)} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise RepoError(f"can't reach {redact_url(url)} ({why})") from None


def _algorithm(kind: str, where: str) -> str:
    algo = _HASHES.get(kind.lower())
    if algo is None:
        raise RepoError(f"{where}: checksum type {kind!r} is not one I trust")
    return algo


def _decompress(raw: IO[bytes], href: str) -> IO[bytes]:
    name = urllib.parse.urlsplit(href).path
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if name.endswith(".xz"):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if name.endswith(".bz2"):
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise RepoError(f"{redact_url(href)} is zstd-compressed; install zstandard") from None
        return zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[no-any-return]
    return raw


def _parse_primary(stream: IO[bytes], base: str, shown: str) -> dict[str, tuple[Package, ...]]:
    found: dict[str, list[Package]] = {}
    try:
        for _event, elem in ET.iterparse(stream, events=("end",)):
            if elem.tag != f"{COMMON}package":
                continue
            if elem.get("type", "rpm") == "rpm":
                pkg = _package(elem, base)
                if pkg is not None:
                    found.setdefault(pkg.name, []).append(pkg)
            elem.clear()  # streamed: only one package is held at a time
    except (ET.ParseError, OSError, EOFError, lzma.LZMAError) as exc:
        raise RepoError(f"{shown}: the primary data can't be read ({exc})") from None
    return {name: tuple(pkgs) for name, pkgs in found.items()}


def _package(elem: Any, base: str) -> Package | None:
    version = elem.find(f"{COMMON}version")
    checksum = elem.find(f"{COMMON}checksum")
    location = elem.find(f"{COMMON}location")
    name = (elem.findtext(f"{COMMON}name") or "").strip()
    if version is None or checksum is None or location is None or not name:
        return None
    try:
        epoch = int(version.get("epoch") or 0)
    except ValueError:
        return None
    evr = EVR(epoch, version.get("ver", ""), version.get("rel", ""))
    href = urllib.parse.urljoin(location.get(XML_BASE) or base, location.get("href", ""))
    return Package(
        name,
        (elem.findtext(f"{COMMON}arch") or "").strip(),
        evr,
        checksum.get("type", ""),
        (checksum.text or "").strip().lower(),
        href,
    )
