"""A loopback proxy in front of moto's ECS for what moto cannot do across a process boundary:
a task whose container exits non-zero (moto's always exit 0) after writing to its awslogs
stream. Point a subprocess at it with ``AWS_ENDPOINT_URL_ECS``; every request goes to moto
unchanged. While ``exit_code`` is set, a ``RunTask`` also writes ``log_lines`` to the new
task's stream (``<prefix>/<container>/<task id>``) in moto's CloudWatch Logs, and a STOPPED
task in ``DescribeTasks`` reports that exit code for ``container``."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

_TARGET = "AmazonEC2ContainerServiceV20141113."


class EcsExitProxy:
    def __init__(self, moto_url: str, container: str, group: str, prefix: str) -> None:
        self.moto_url, self.container, self.group, self.prefix = moto_url, container, group, prefix
        self.exit_code: int | None = None
        self.log_lines: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @classmethod
    @contextmanager
    def start(cls, moto_url: str, **kwargs: str) -> Iterator[EcsExitProxy]:
        proxy = cls(moto_url, **kwargs)
        thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield proxy
        finally:
            proxy.server.shutdown()
            proxy.server.server_close()

    def rewrite(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.exit_code is None:
            return body
        if target == "RunTask":
            for task in body.get("tasks", []):
                self._write_logs(task["taskArn"].rsplit("/", 1)[-1])
        if target == "DescribeTasks":
            for task in body.get("tasks", []):
                if task.get("lastStatus") != "STOPPED":
                    continue
                task["stoppedReason"] = "Essential container in task exited"
                for box in task.get("containers", []):
                    if box.get("name") == self.container:
                        box["exitCode"] = self.exit_code
        return body

    def _write_logs(self, task_id: str) -> None:
        logs = boto3.client("logs", endpoint_url=self.moto_url)
        stream = f"{self.prefix}/{self.container}/{task_id}"
        try:
            logs.create_log_group(logGroupName=self.group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        logs.create_log_stream(logGroupName=self.group, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now + i, "message": m} for i, m in enumerate(self.log_lines)]
        logs.put_log_events(logGroupName=self.group, logStreamName=stream, logEvents=events)


def _handler(proxy: EcsExitProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            skip = {"host", "content-length", "connection", "accept-encoding"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            request = urllib.request.Request(
                proxy.moto_url + self.path, data=data, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    status, body = resp.status, resp.read()
                    ctype = resp.headers.get("Content-Type", "application/x-amz-json-1.1")
            except urllib.error.HTTPError as err:
                status, body = err.code, err.read()
                ctype = err.headers.get("Content-Type", "application/x-amz-json-1.1")
            target = (self.headers.get("X-Amz-Target") or "").removeprefix(_TARGET)
            if status == 200 and target in ("RunTask", "DescribeTasks"):
                body = json.dumps(proxy.rewrite(target, json.loads(body))).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
