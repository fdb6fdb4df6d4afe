"""Slack front end: ``marvin serve`` on slack-bolt's Socket Mode handler.

``serve`` wires it together (tokens, start-up checks, SIGTERM, recovery); ``bot`` holds the
Bolt App and its listeners; ``events`` decides which events are commands and drops duplicates;
``responder`` talks back (``text`` splits long output); ``confirm`` owns the Confirm/Cancel
buttons; ``socket`` acknowledges envelopes at once and keeps the connection up; ``health``
answers ``/healthz``; ``settings`` validates the ``slack:`` section and the tokens.
"""
