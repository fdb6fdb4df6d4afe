"""``GET /openapi.json``: the API described in OpenAPI 3.1 (see docs/api.md for prose)."""

from __future__ import annotations

from typing import Any

__all__ = ["document"]


def _json(schema: dict[str, Any] | str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"content": {"application/json": {"schema": ref}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Unknown, ambiguous or invalid input (the message is chat's)",
        401: "No key, or an unknown, expired or revoked one",
        403: "Refused: identity, policy, confirmation required, or not yours to cancel",
        404: "No such execution among yours",
        409: "The lock is held (environment busy), your per-user limit, or already finished",
        413: "Request body too large",
        429: "Rate limit for this key; see Retry-After",
        503: "Marvin is busy or restarting; see Retry-After",
    }
    return {str(c): {"description": text[c], **_json("Error")} for c in codes}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTH = [{"bearer": []}]


def document(version: str = "1") -> dict[str, Any]:
    ex = "/api/v1/executions"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Marvin API",
            "version": version,
            "description": "Run Marvin's commands as the person who owns the API key, under "
            "the same policy as chat.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "id": {"type": "string"},
                        "ref": {"type": "string"},
                    },
                },
                "Run": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "ref": {"type": "string", "example": "platform.create"},
                        "params": {"type": "object", "example": {"environment": "demo01"}},
                        "text": {
                            "type": "string",
                            "example": "create platform environment named demo01",
                        },
                        "confirm": {"type": "boolean", "default": False},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "ref": {"type": "string"},
                        "state": {"const": "accepted"},
                        "links": {"type": "object"},
                    },
                },
                "Execution": {
                    "type": "object",
                    "properties": {
                        k: {} for k in ("id", "ref", "params", "state", "reason", "progress")
                    }
                    | {
                        "result": {"type": ["string", "null"]},
                        "replies": {"type": ["array", "null"]},
                        "audit": {"type": "array"},
                    },
                },
            },
        },
        "paths": {
            ex: {
                "post": {
                    "summary": "Run a command by ref and parameters, or by text",
                    "security": _AUTH,
                    "requestBody": {"required": True, **_json("Run")},
                    "responses": {
                        "202": {
                            "description": "Accepted; follow the Location",
                            **_json("Accepted"),
                        },
                        "200": {"description": "A built-in answered at once (help, whoami)"},
                        **_errors(400, 401, 403, 409, 413, 429, 503),
                    },
                }
            },
            ex + "/{id}": {
                "get": {
                    "summary": "State, progress, result, replies and audit trail",
                    "security": _AUTH,
                    "parameters": [_ID],
                    "responses": {
                        "200": {"description": "The execution", **_json("Execution")},
                        **_errors(401, 403, 404, 429),
                    },
                }
            },
            ex + "/{id}/events": {
                "get": {
                    "summary": "Server-Sent Events: state, progress, reply; the last is the "
                    "final state",
                    "security": _AUTH,
                    "parameters": [_ID],
                    "responses": {
                        "200": {"description": "text/event-stream"},
                        **_errors(401, 403, 404, 429),
                    },
                }
            },
            ex + "/{id}/cancel": {
                "post": {
                    "summary": "Cancel (the requester, or the cancel groups)",
                    "security": _AUTH,
                    "parameters": [_ID],
                    "responses": {
                        "202": {"description": "Removed from the queue, or asked to stop"},
                        **_errors(401, 403, 404, 409, 429),
                    },
                }
            },
            "/api/v1/commands": {
                "get": {
                    "summary": "What this key's owner may run, with parameters and examples",
                    "security": _AUTH,
                    "responses": {"200": {"description": "Commands"}, **_errors(401, 403, 429)},
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {}}}},
            "/healthz": {"get": {"summary": "200 while serving", "responses": {"200": {}}}},
            "/metrics": {
                "get": {"summary": "Prometheus text format", "responses": {"200": {}}},
            },
        },
    }
