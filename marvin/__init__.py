"""Marvin: a ChatOps bot for Slack. Command authors need only what is exported here."""

from marvin.core.checks import Verdict, check
from marvin.core.model import Reply, User
from marvin.core.params import (
    ENVIRONMENT,
    VERSION,
    Boolean,
    Choice,
    Integer,
    Json,
    Param,
    ParamError,
    Text,
)
from marvin.core.registry import command
from marvin.runtime.execution import Cancelled, Context

__all__ = [
    "command",
    "check",
    "Verdict",
    "Context",
    "Cancelled",
    "Reply",
    "User",
    "Param",
    "ParamError",
    "Text",
    "Integer",
    "Choice",
    "Boolean",
    "Json",
    "ENVIRONMENT",
    "VERSION",
]
