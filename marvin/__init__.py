"""Marvin: a ChatOps bot for Slack. Command authors need only what is exported here."""

from marvin.execution import Cancelled, Context
from marvin.model import Reply, User
from marvin.params import (
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
from marvin.registry import command

__all__ = [
    "command",
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
