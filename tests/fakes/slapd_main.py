"""``python -m tests.fakes.slapd``: a real slapd, started and seeded, as a process of its own
(for benchmarks, which must not import the tests' helpers). Prints one JSON line (``url``,
``root_dn``, ``root_pw``, ``people``, ``groups``), then takes one JSON command per stdin line
(``{"op": "add_user", "uid": ..., "mail": ..., "groups": [...]}``), answering each with one
JSON line; stops slapd at end of input."""

from __future__ import annotations

import json
import sys

from tests.fakes.slapd import Slapd

__all__ = ["main"]


def main() -> int:
    server = Slapd()  # its own temporary folder, removed by cleanup()
    try:
        server.start()
        server.seed()
        info = {"url": server.url, "root_dn": server.root_dn, "root_pw": server.root_pw,
                "people": server.people, "groups": server.groups}  # fmt: skip
        print(json.dumps(info), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            try:
                if cmd.get("op") == "add_user":
                    server.add_user(cmd["uid"], cmd["mail"], cmd.get("groups", []))
                    out = {"ok": True}
                else:
                    out = {"error": f"unknown op {cmd.get('op')!r}"}
            except Exception as exc:
                out = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(out), flush=True)
    finally:
        server.cleanup()
    return 0
