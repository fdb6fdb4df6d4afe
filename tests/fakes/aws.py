"""moto in server mode: boto3 reaches it over loopback HTTP via its standard AWS_ENDPOINT_URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.ports import free_port as _free_port

# What boto3 needs to reach moto, besides AWS_ENDPOINT_URL (for module-scoped fixtures too).
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (in this process and in subprocesses) at the moto server."""
    import urllib.request

    urllib.request.urlopen(f"{moto_server}/moto-api/reset", data=b"").read()
    for key, value in {"AWS_ENDPOINT_URL": moto_server, **ENV}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server
