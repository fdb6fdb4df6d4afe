"""The HTTP API: Marvin's third front end (JSON under ``/api/v1``, Server-Sent Events,
Prometheus metrics), served by ``marvin serve`` beside Slack and by ``marvin api`` alone.

Requests are made with API keys (``marvin keys``); each key acts for its owner, whose groups
come from the directory on every request, through the same chain as chat. See docs/api.md.
Modules: settings, identity (the FrontEnd), app (routes, keys, limits, audit), executions,
feeds (replies and SSE), views, openapi, server (uvicorn), keys_cli (``marvin keys``).
"""
