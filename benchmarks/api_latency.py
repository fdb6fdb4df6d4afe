"""HTTP API throughput and latency against a real ``marvin api`` subprocess on loopback.

Marvin runs as ``python -m marvin --config <tmp> api`` (uvicorn, the key check, the policy
authorizer with the static directory, an audit row per request) with one fast command; the
key comes from ``marvin keys create``. The client is httpx, one ``Client`` (keep-alive) per
concurrent client thread, in this process. For ``POST /executions`` (the fast command, by ref)
and ``GET /executions/{id}``, with 1 and 20 concurrent clients: requests per second and p50/p99
latency. Rate limits are raised out of the way; everything else is as deployed.

    python benchmarks/api_latency.py [--requests 600]

One ``name=value`` figure per line. Both ends share this machine's cores, so the figures are
a floor for what a separate client would see.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.noop_config import noop_config  # noqa: E402

EMAIL = "bench@example.com"


def _config(tmp: Path) -> Path:
    # Rate limits and queues out of the way: the figure is the API's own cost.
    return noop_config(
        tmp,
        EMAIL,
        rule="groups: [ops]",
        extra="jobs: {workers: 32, queue: 100000, per_user: 100000}\n"
        "api: {rate_per_minute: 100000000, burst: 1000000, replies_kept: 100000}\n",
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure(
    url: str,
    key: str,
    clients: int,
    total: int,
    make: callable,  # type: ignore[valid-type]
) -> tuple[float, list[float]]:
    """``total`` requests split over ``clients`` threads; (requests per second, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    per = total // clients
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        mine = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
            barrier.wait()
            for i in range(per):
                started = time.perf_counter()
                r = make(http, i)
                mine.append(time.perf_counter() - started)
                assert r.status_code in (200, 202), r.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - began), latencies


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=600)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        base = [sys.executable, "-m", "marvin", "--config", str(config)]
        key = subprocess.run(
            [*base, "keys", "create", "--owner", EMAIL, "--name", "bench"],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "api.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [*base, "api", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("marvin api did not start")
                time.sleep(0.1)
            body = {"ref": "bench.noop"}
            ids: list[str] = []

            def post(http: httpx.Client, i: int) -> httpx.Response:
                r = http.post("/api/v1/executions", json=body)
                ids.append(r.json()["id"])
                return r

            def get(http: httpx.Client, i: int) -> httpx.Response:
                return http.get(f"/api/v1/executions/{ids[i % len(ids)]}")

            _measure(url, key, 4, 100, post)  # warm up: threads, caches, the store
            for name, make in (("post_executions", post), ("get_execution", get)):
                for clients in (1, 20):
                    rps, lat = _measure(url, key, clients, args.requests, make)
                    tag = f"{name}_c{clients}"
                    print(f"{tag}_rps={rps:.0f}")
                    print(f"{tag}_p50_ms={_p(lat, 50):.2f}")
                    print(f"{tag}_p99_ms={_p(lat, 99):.2f}")
        finally:
            proc.terminate()
            proc.wait(15)
            log.close()


if __name__ == "__main__":
    main()
