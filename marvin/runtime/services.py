"""Clients and settings handed to commands as ``ctx.services``; built lazily, once."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from marvin.config import Config

__all__ = ["Services"]


class Services:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()

    @cached_property
    def cloudformation(self) -> Any:
        # boto3's standard configuration applies: AWS_ENDPOINT_URL, credentials, AWS_REGION.
        import boto3  # imported here: the console and tests without AWS start faster

        with self._lock:
            return boto3.session.Session(region_name=self.config.get("aws.region")).client(
                "cloudformation"
            )

    @cached_property
    def rds(self) -> Any:
        import boto3

        with self._lock:
            return boto3.session.Session(region_name=self.config.get("aws.region")).client("rds")

    @cached_property
    def environment_template(self) -> str:
        return self.config.file("cloudformation.template").read_text()
