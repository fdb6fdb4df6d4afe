"""AWS clients for the action library: one boto3 session per process, from the ``aws:``
section. boto3's standard configuration applies too (AWS_ENDPOINT_URL, credentials)."""

from __future__ import annotations

import threading
from typing import Any

from marvin.actions.clients import client
from marvin.config import Config, Setting, declare

__all__ = ["aws_client"]

declare(
    "aws",
    {
        "region": Setting(str, "us-east-1", None, "an AWS region name"),
        "poll_seconds": Setting(
            (int, float), 10, lambda v: 0 < v <= 300, "seconds between 0 and 300"
        ),
    },
)
_lock = threading.Lock()  # boto3 sessions are not safe to create clients from concurrently


def aws_client(config: Config, service: str) -> Any:
    import boto3  # here, not at import: the console and tests without AWS start faster

    with _lock:
        return boto3.session.Session(region_name=config.get("aws.region")).client(service)


@client("rds")
def _rds(config: Config) -> Any:
    return aws_client(config, "rds")


@client("autoscaling")
def _autoscaling(config: Config) -> Any:
    return aws_client(config, "autoscaling")


@client("ecs")
def _ecs(config: Config) -> Any:
    return aws_client(config, "ecs")


@client("logs")
def _logs(config: Config) -> Any:
    return aws_client(config, "logs")


@client("ssm")
def _ssm(config: Config) -> Any:
    return aws_client(config, "ssm")


@client("ec2")
def _ec2(config: Config) -> Any:
    return aws_client(config, "ec2")
