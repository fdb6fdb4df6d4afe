"""Marvin: a ChatOps bot for Slack. Command authors need only what is exported here."""

from marvin.core.checks import Verdict, check
from marvin.core.model import Cancelled, Refusal, Reply, User
from marvin.core.params import (
    ENVIRONMENT,
    VERSION,
    Boolean,
    Choice,
    Integer,
    Json,
    Pairs,
    Param,
    ParamError,
    Text,
)
from marvin.core.registry import command
from marvin.runtime.execution import Context

__all__ = [
    "command",
    "check",
    "Verdict",
    "Context",
    "Cancelled",
    "Refusal",
    "Reply",
    "User",
    "Param",
    "ParamError",
    "Text",
    "Integer",
    "Choice",
    "Boolean",
    "Json",
    "Pairs",
    "ENVIRONMENT",
    "VERSION",
]
