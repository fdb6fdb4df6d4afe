"""A strict loopback fake of Jenkins' REST API, as python-jenkins uses it, so the real client
runs unchanged. Strict where Jenkins is: HTTP basic auth with the API token on every request
(401 otherwise), a CSRF crumb from ``crumbIssuer`` on every POST (403 otherwise), 404 for
unknown jobs, builds, queue items and nodes, ``buildWithParameters`` only on parameterized
jobs. Like Jenkins it does not check parameter names: that is the caller's job.

Time runs for real: a queued item waits for a free executor on an online agent (``why``),
then a build runs for the job's ``duration`` and ends with its ``result``::

    with FakeJenkins.start(user="marvin", token="t0k") as jenkins:
        jenkins.add_node("agent-1")
        jenkins.add_job("deploy-app", [string("VERSION")], duration=0.5, console=["ok"])
        # python-jenkins: jenkins.Jenkins(jenkins.url, "marvin", "t0k")
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["FakeJenkins", "string", "choice", "boolean", "password"]

WAITING = "Waiting for next available executor"


def _definition(kind: str, name: str, default: Any, **extra: Any) -> dict[str, Any]:
    value = {"_class": f"hudson.model.{kind}ParameterValue", "name": name}
    if default is not None:
        value["value"] = default
    return {
        "_class": f"hudson.model.{kind}ParameterDefinition",
        "name": name,
        "type": f"{kind}ParameterDefinition",
        "description": "",
        "defaultParameterValue": value,
        **extra,
    }


def string(name: str, default: str = "") -> dict[str, Any]:
    return _definition("String", name, default)


def choice(name: str, choices: list[str]) -> dict[str, Any]:
    return _definition("Choice", name, choices[0], choices=choices)


def boolean(name: str, default: bool = False) -> dict[str, Any]:
    return _definition("Boolean", name, default)


def password(name: str) -> dict[str, Any]:
    return _definition("Password", name, None)  # Jenkins never shows a password's default


@dataclass
class Job:
    name: str
    parameters: list[dict[str, Any]]
    duration: float | None  # seconds; None: runs until stopped
    result: str
    console: list[str]
    estimated: float
    next_number: int = 1


@dataclass
class Build:
    job: str
    number: int
    queue_id: int
    node: str
    params: dict[str, str]
    started: float  # time.time()
    result: str | None = None
    ended: float | None = None


@dataclass
class Item:
    id: int
    job: str
    params: dict[str, str]
    since: float
    cancelled: bool = False
    build: int | None = None


@dataclass
class Node:
    name: str
    executors: int = 1
    description: str = ""
    connected: bool = True
    temporarily_offline: bool = False
    running: list[tuple[str, int]] = field(default_factory=list)

    @property
    def offline(self) -> bool:
        return self.temporarily_offline or not self.connected


class FakeJenkins:
    def __init__(self, user: str, token: str) -> None:
        self.user, self.token = user, token
        self.crumb = uuid.uuid4().hex
        self.jobs: dict[str, Job] = {}
        self.builds: dict[tuple[str, int], Build] = {}
        self.queue: dict[int, Item] = {}
        self.nodes: dict[str, Node] = {"Built-In Node": Node("Built-In Node", executors=0)}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.lock = threading.RLock()
        self._next_item = 1
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    @classmethod
    @contextmanager
    def start(cls, user: str = "marvin", token: str = "api-token") -> Iterator[FakeJenkins]:
        fake = cls(user, token)
        threads = [
            threading.Thread(target=fake.server.serve_forever, daemon=True),
            threading.Thread(target=fake._tick, daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            yield fake
        finally:
            fake._stop.set()
            fake.server.shutdown()
            fake.server.server_close()

    # -- test controls ---------------------------------------------------------------------

    def add_job(
        self,
        name: str,
        parameters: list[dict[str, Any]] | None = None,
        *,
        duration: float | None = 0.2,
        result: str = "SUCCESS",
        console: list[str] | None = None,
        estimated: float = 60.0,
    ) -> None:
        with self.lock:
            self.jobs[name] = Job(
                name, parameters or [], duration, result, console or [], estimated
            )

    def add_node(self, name: str, executors: int = 1, description: str = "") -> None:
        with self.lock:
            self.nodes[name] = Node(name, executors, description)

    def remove_node(self, name: str) -> None:
        with self.lock:
            node = self.nodes.pop(name, None)
            for key in node.running if node else []:
                self._end(self.builds[key], "FAILURE")  # the agent went away mid-build

    def posts(self, fragment: str) -> list[str]:
        with self.lock:
            return [p for m, p, _ in self.requests if m == "POST" and fragment in p]

    # -- time --------------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(0.02):
            with self.lock:
                now = time.time()
                for b in self.builds.values():
                    duration = self.jobs[b.job].duration
                    if b.result is None and duration is not None and now - b.started >= duration:
                        self._end(b, self.jobs[b.job].result)
                for item in sorted(self.queue.values(), key=lambda i: i.id):
                    if item.build is None and not item.cancelled:
                        self._place(item, now)

    def _place(self, item: Item, now: float) -> None:
        for node in self.nodes.values():
            if not node.offline and len(node.running) < node.executors:
                job = self.jobs[item.job]
                number, job.next_number = job.next_number, job.next_number + 1
                self.builds[(job.name, number)] = Build(
                    job.name, number, item.id, node.name, item.params, now
                )
                node.running.append((job.name, number))
                item.build = number
                return

    def _end(self, build: Build, result: str) -> None:
        build.result, build.ended = result, time.time()
        node = self.nodes.get(build.node)
        if node and (build.job, build.number) in node.running:
            node.running.remove((build.job, build.number))

    # -- JSON shapes -------------------------------------------------------------------------

    def job_url(self, name: str) -> str:
        return self.url + "".join(f"job/{part}/" for part in name.split("/"))

    def _job_json(self, job: Job) -> dict[str, Any]:
        builds = sorted(
            (b for b in self.builds.values() if b.job == job.name), key=lambda b: -b.number
        )
        refs = [{"number": b.number, "url": f"{self.job_url(job.name)}{b.number}/"} for b in builds]
        props = [
            {
                "_class": "hudson.model.ParametersDefinitionProperty",
                "parameterDefinitions": job.parameters,
            }
        ]
        return {
            "_class": "hudson.model.FreeStyleProject",
            "name": job.name.split("/")[-1],
            "fullName": job.name,
            "url": self.job_url(job.name),
            "buildable": True,
            "inQueue": any(i.job == job.name and i.build is None for i in self.queue.values()),
            "nextBuildNumber": job.next_number,
            "builds": refs,
            "firstBuild": refs[-1] if refs else None,
            "lastBuild": refs[0] if refs else None,
            "property": props if job.parameters else [],
        }

    def _item_json(self, item: Item) -> dict[str, Any]:
        left = item.cancelled or item.build is not None
        out: dict[str, Any] = {
            "_class": "hudson.model.Queue$" + ("LeftItem" if left else "BuildableItem"),
            "id": item.id,
            "blocked": False,
            "buildable": not left,
            "stuck": False,
            "inQueueSince": int(item.since * 1000),
            "params": "".join(f"\n{k}={v}" for k, v in item.params.items()),
            "task": {"name": item.job, "url": self.job_url(item.job)},
            "url": f"queue/item/{item.id}/",
            "why": None if left else WAITING,
        }
        if left:
            out["cancelled"] = item.cancelled
            out["executable"] = None if item.cancelled else self._ref(item.job, item.build)
        return out

    def _ref(self, job: str, number: int | None) -> dict[str, Any]:
        return {
            "_class": "hudson.model.FreeStyleBuild",
            "number": number,
            "url": f"{self.job_url(job)}{number}/",
        }

    def _build_json(self, b: Build) -> dict[str, Any]:
        job = self.jobs[b.job]
        return {
            **self._ref(b.job, b.number),
            "building": b.result is None,
            "result": b.result,
            "timestamp": int(b.started * 1000),
            "duration": 0 if b.ended is None else int((b.ended - b.started) * 1000),
            "estimatedDuration": int(job.estimated * 1000),
            "displayName": f"#{b.number}",
            "fullDisplayName": f"{b.job} #{b.number}",
            "queueId": b.queue_id,
            "builtOn": b.node,
            "actions": [
                {
                    "_class": "hudson.model.ParametersAction",
                    "parameters": [{"name": k, "value": v} for k, v in b.params.items()],
                }
            ],
        }

    def _console(self, b: Build) -> str:
        lines = [f"Started by user {self.user}", f"Building remotely on {b.node}"]
        lines += self.jobs[b.job].console
        if b.result == "ABORTED":
            lines.append(f"Aborted by {self.user}")
        if b.result is not None:
            lines.append(f"Finished: {b.result}")
        return "\n".join(lines) + "\n"

    def _computer_json(self, node: Node) -> dict[str, Any]:
        executors = [
            {
                "number": i,
                "idle": i >= len(node.running),
                "currentExecutable": self._ref(*node.running[i]) if i < len(node.running) else None,
            }
            for i in range(node.executors)
        ]
        return {
            "_class": "hudson.slaves.SlaveComputer",
            "displayName": node.name,
            "description": node.description,
            "assignedLabels": [{"name": node.name}],
            "idle": not node.running,
            "offline": node.offline,
            "offlineCause": {"_class": "hudson.slaves.OfflineCause$UserCause"}
            if node.temporarily_offline
            else None,
            "temporarilyOffline": node.temporarily_offline,
            "icon": "computer.png",
            "numExecutors": node.executors,
            "executors": executors,
        }

    # -- requests ----------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, body, headers) for an authenticated request; body is JSON-able or text."""
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if method == "GET" and parts == ["crumbIssuer", "api", "json"]:
            return (
                200,
                {
                    "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                    "crumb": self.crumb,
                    "crumbRequestField": "Jenkins-Crumb",
                },
                {},
            )
        if method == "GET" and parts == ["api", "json"]:
            return (
                200,
                {
                    "_class": "hudson.model.Hudson",
                    "mode": "NORMAL",
                    "jobs": [{"name": n} for n in self.jobs],
                },
                {},
            )
        if parts[:1] == ["job"]:
            return self._job_request(method, parts, query)
        if parts[:1] == ["queue"]:
            return self._queue_request(method, parts, query)
        if parts[:1] == ["computer"]:
            return self._computer_request(method, parts)
        return 404, "Not Found", {}

    def _job_request(
        self, method: str, parts: list[str], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        names: list[str] = []
        while len(parts) >= 2 and parts[0] == "job":
            names.append(parts[1])
            parts = parts[2:]
        job = self.jobs.get("/".join(names))
        if job is None:
            return 404, "Not Found", {}
        if method == "GET" and parts == ["api", "json"]:
            return 200, self._job_json(job), {}
        if method == "POST" and parts in (["build"], ["buildWithParameters"]):
            if (parts == ["build"]) == bool(job.parameters):
                what = (
                    "is parameterized: use buildWithParameters"
                    if job.parameters
                    else "is not parameterized"
                )
                return 400, f"{job.name} {what}", {}
            params = {k: v for k, v in query.items() if k != "token"}
            item = Item(self._next_item, job.name, params, time.time())
            self.queue[item.id], self._next_item = item, self._next_item + 1
            return 201, "", {"Location": f"{self.url}queue/item/{item.id}/"}
        if not parts or not parts[0].isdigit() or (job.name, int(parts[0])) not in self.builds:
            return 404, "Not Found", {}
        build = self.builds[(job.name, int(parts[0]))]
        if method == "GET" and parts[1:] == ["api", "json"]:
            return 200, self._build_json(build), {}
        if method == "GET" and parts[1:] == ["consoleText"]:
            return 200, self._console(build), {}
        if method == "POST" and parts[1:] == ["stop"]:
            if build.result is None:
                self._end(build, "ABORTED")
            return 200, "", {}
        return 404, "Not Found", {}

    def _queue_request(
        self, method: str, parts: list[str], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and parts == ["queue", "cancelItem"]:
            item = self.queue.get(int(query.get("id", "0") or 0))
            if item is None:
                return 404, "Not Found", {}
            if item.build is None:
                item.cancelled = True
            return 204, "", {}
        if (
            method == "GET"
            and len(parts) == 5
            and parts[1] == "item"
            and parts[3:] == ["api", "json"]
        ):
            item = self.queue.get(int(parts[2])) if parts[2].isdigit() else None
            return (200, self._item_json(item), {}) if item else (404, "Not Found", {})
        return 404, "Not Found", {}

    def _computer_request(self, method: str, parts: list[str]) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and parts == ["computer", "api", "json"]:
            computers = [self._computer_json(n) for n in self.nodes.values()]
            busy = sum(len(n.running) for n in self.nodes.values())
            total = sum(n.executors for n in self.nodes.values())
            return 200, {"busyExecutors": busy, "totalExecutors": total, "computer": computers}, {}
        name = (
            "Built-In Node" if parts[1:2] == ["(master)"] else (parts[1] if len(parts) > 1 else "")
        )
        node = self.nodes.get(name)
        if node is None:
            return 404, "Not Found", {}
        if method == "GET" and parts[2:] == ["api", "json"]:
            return 200, self._computer_json(node), {}
        if method == "POST" and parts[2:] == ["toggleOffline"]:
            node.temporarily_offline = not node.temporarily_offline
            return 200, "", {}
        return 404, "Not Found", {}


def _handler(fake: FakeJenkins) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{fake.user}:{fake.token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._serve("POST")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            headers: dict[str, str] = {}
            if self.headers.get("Authorization") != expected:
                status, body = 401, "Unauthorized"
                headers["WWW-Authenticate"] = 'Basic realm="Jenkins"'
            elif method == "POST" and self.headers.get("Jenkins-Crumb") != fake.crumb:
                status, body = 403, "No valid crumb was included in the request"
            else:
                with fake.lock:
                    status, body, headers = fake.handle(method, url.path, query)
            with fake.lock:
                fake.requests.append((method, url.path, status))
            data = (json.dumps(body) if isinstance(body, dict) else str(body)).encode()
            self.send_response(status)
            ctype = "application/json" if isinstance(body, dict) else "text/plain"
            self.send_header("Content-Type", f"{ctype};charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
