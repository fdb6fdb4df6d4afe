"""Plays the Jenkins EC2 plugin between moto's auto-scaling group and the fake Jenkins: each
in-service instance of the group connects as agent ``agent-<instance id>`` (the id also in its
description, as the plugin writes it) after ``boot`` seconds; a terminated instance's agent
disconnects and goes away, failing any build still running on it."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.fakes.jenkins import FakeJenkins


class AgentSync:
    def __init__(self, jenkins: FakeJenkins, asg: Any, group: str, boot: float = 0.2) -> None:
        self.jenkins, self.asg, self.group, self.boot = jenkins, asg, group, boot
        self._seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> AgentSync:
        self.sync()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sync()

    def sync(self) -> None:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])
        live = {
            i["InstanceId"]
            for g in groups["AutoScalingGroups"]
            for i in g["Instances"]
            if i["LifecycleState"] in ("InService", "Pending")
        }
        now = time.monotonic()
        for instance in live:
            self._seen.setdefault(instance, now)
            name = f"agent-{instance}"
            if name not in self.jenkins.nodes and now - self._seen[instance] >= self.boot:
                self.jenkins.add_node(name, description=f"EC2 agent ({instance})")
        for name in [n for n in self.jenkins.nodes if n.startswith("agent-i-")]:
            if name.removeprefix("agent-") not in live:
                self.jenkins.remove_node(name)
