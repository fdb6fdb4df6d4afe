"""A real OpenLDAP ``slapd`` for tests, on a free loopback port in a temp dir.

Why real: OpenLDAP's quirks (memberOf is not transitive, the AD in-chain matching
rule silently matches nothing) are exactly what the directory code must cope with,
and a mock would happily pretend otherwise.

Setup: a generated ``slapd.conf`` (mdb backend + memberof overlay, modules from
/usr/lib/ldap), started in the foreground with ``-d 0`` so we own the process.
Seed entries are added *through the running server* (ldap3) so the overlay computes
memberOf. No AppArmor tweak is needed on Debian (no slapd profile ships); on Ubuntu
an enforcing ``usr.sbin.slapd`` profile would block a temp dir and must be put in
complain mode.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from ldap3 import Connection, Server

from tests.fakes.ports import free_port as _free_port

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
MODULE_PATH = "/usr/lib/ldap"
SCHEMA_DIR = "/etc/ldap/schema"

SUFFIX = "dc=example,dc=com"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "test-root-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


# uid -> mail. "star" has a literal '*' in its address to prove escaping works.
USERS = {
    "alice": "alice@example.com",
    "bob": "bob@example.com",
    "carol": "carol@example.com",  # in no group at all
    "dave": "dave@example.com",  # in a group cycle
    "erin": "erin@example.com",  # deep nesting chain
    "star": "st*r@example.com",
}

# groupOfNames: cn -> member DNs. Order matters: members must exist before the
# group is added, otherwise the memberof overlay has nothing to annotate.
GROUPS_OF_NAMES: list[tuple[str, list[str]]] = [
    ("ops", [user_dn("alice")]),
    ("developers", [user_dn("bob"), user_dn("star")]),
    ("platform-admins", [group_dn("ops")]),  # nested: ops members are platform-admins
    ("everyone-admin", [group_dn("platform-admins")]),  # two levels up from ops
    ("cycle-a", [user_dn("dave")]),
    ("cycle-b", [group_dn("cycle-a")]),
    ("level1", [user_dn("erin")]),
    ("level2", [group_dn("level1")]),
    ("level3", [group_dn("level2")]),
    ("level4", [group_dn("level3")]),
]
# Added after cycle-b exists: closes the cycle a -> b -> a.
CYCLE_CLOSER = ("cycle-a", group_dn("cycle-b"))

UNIQUE_GROUPS = {"auditors": [user_dn("alice"), user_dn("carol")]}
POSIX_GROUPS = {"wheel": (10, ["alice", "bob"])}

_CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
modulepath {modules}
moduleload back_mdb
moduleload memberof
pidfile {run}/slapd.pid
argsfile {run}/slapd.args

database mdb
maxsize 67108864
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {data}
overlay memberof
"""


class Slapd:
    """One slapd instance. ``start()`` after ``stop()`` reuses the same data and port."""

    suffix = SUFFIX
    root_dn = ROOT_DN
    root_pw = ROOT_PW
    people = PEOPLE
    groups = GROUPS

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="slapd-"))
        self.data = self.dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "slapd.conf"
        self.conf.write_text(
            _CONF.format(
                schema=SCHEMA_DIR,
                modules=MODULE_PATH,
                run=self.dir,
                suffix=SUFFIX,
                rootdn=ROOT_DN,
                rootpw=ROOT_PW,
                data=self.data,
            )
        )
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = self.dir / "slapd.log"
        atexit.register(self.stop)  # belt and braces if a test run is interrupted

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self, timeout: float = 3.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        # -d 0 keeps slapd in the foreground (no fork), so Popen owns the real pid.
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [SLAPD, "-d", "0", "-f", str(self.conf), "-h", f"{self.url}/"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited early:\n{self._log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"slapd did not listen within {timeout}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if self.paused:
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()  # SIGTERM: clean mdb shutdown
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    paused = False

    def pause(self) -> None:
        """SIGSTOP: the port still accepts TCP but nothing answers (a hung server)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- data ---------------------------------------------------------------

    def admin(self) -> Connection:
        return Connection(Server(self.url), ROOT_DN, ROOT_PW, auto_bind=True, receive_timeout=5)

    def seed(self) -> None:
        conn = self.admin()
        try:
            self._add(conn, SUFFIX, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
            for ou in (PEOPLE, GROUPS):
                self._add(conn, ou, ["organizationalUnit"], {})
            for uid, mail in USERS.items():
                self._add(
                    conn,
                    user_dn(uid),
                    ["inetOrgPerson"],
                    {"cn": uid.title(), "sn": uid.title(), "mail": mail, "uid": uid},
                )
            for cn, members in GROUPS_OF_NAMES:
                self._add(conn, group_dn(cn), ["groupOfNames"], {"member": members})
            cn, member = CYCLE_CLOSER
            conn.modify(group_dn(cn), {"member": [("MODIFY_ADD", [member])]})
            self._check(conn, f"close cycle {cn}")
            for cn, members in UNIQUE_GROUPS.items():
                self._add(conn, group_dn(cn), ["groupOfUniqueNames"], {"uniqueMember": members})
            for cn, (gid, uids) in POSIX_GROUPS.items():
                self._add(conn, group_dn(cn), ["posixGroup"], {"gidNumber": gid, "memberUid": uids})
        finally:
            conn.unbind()

    def add_user(self, uid: str, mail: str, groups: Sequence[str] = ()) -> None:
        conn = self.admin()
        try:
            self._add(
                conn,
                user_dn(uid),
                ["inetOrgPerson"],
                {"cn": uid, "sn": uid, "mail": mail, "uid": uid},
            )
            for cn in groups:
                conn.modify(group_dn(cn), {"member": [("MODIFY_ADD", [user_dn(uid)])]})
                self._check(conn, f"add {uid} to {cn}")
        finally:
            conn.unbind()

    @staticmethod
    def _add(conn: Connection, dn: str, classes: list[str], attrs: dict) -> None:
        conn.add(dn, classes, attrs)
        Slapd._check(conn, f"add {dn}")

    @staticmethod
    def _check(conn: Connection, what: str) -> None:
        if conn.result["result"] != 0:
            raise RuntimeError(f"slapd seed failed ({what}): {conn.result}")


@pytest.fixture(name="slapd")
def slapd_fixture(tmp_path: Path) -> Iterator[Slapd]:
    """A started and seeded slapd; stopped (and its process reaped) after the test."""
    if not os.path.exists(SLAPD) and not os.environ.get("CI"):
        # A developer machine without Debian's slapd; CI installs it and never skips.
        pytest.skip("slapd is not installed (apt-get install slapd ldap-utils)")
    server = Slapd(tmp_path / "slapd")
    try:
        server.start()
        server.seed()
        yield server
    finally:
        server.cleanup()


if __name__ == "__main__":  # python -m tests.fakes.slapd: see tests/fakes/slapd_main.py
    from tests.fakes.slapd_main import main

    raise SystemExit(main())
