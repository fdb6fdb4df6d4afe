"""``marvin serve``: Marvin on Slack over Socket Mode.

Start-up order: settings and tokens (a missing or malformed token exits 2 with one line saying
which and how to get it) -> auth.test with the bot token (rejected: exit 2) -> Marvin with the
security chain's authorizer on the same WebClient -> Bolt + socket (a rejected app token:
exit 2) -> recover executions a previous process left behind -> wait. SIGTERM: drain running
commands, close the socket, exit 0.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from marvin.config import Config
from marvin.core.authz import FrontEnd
from marvin.core.facade import Operations
from marvin.frontends.http.server import ApiService
from marvin.frontends.lifecycle import install_sigterm
from marvin.frontends.slack.bot import SlackBot, web_client
from marvin.frontends.slack.health import HealthServer
from marvin.frontends.slack.settings import (
    DEFAULT_API_URL,
    SlackSettings,
    TokenError,
    check_tokens,
    rejected,
    retired,
)
from marvin.security import build_slack_identity

__all__ = ["serve", "front_end"]

log = structlog.get_logger("marvin.slack")

# auth.test / apps.connections.open errors that mean "this token is wrong", not "Slack is down".
_BAD_TOKEN = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_allowed_token_type",
    "missing_scope",
}


def serve(config: Config, args: Any, env: Mapping[str, str] | None = None) -> int:
    """Run until SIGTERM (exit 0) or Ctrl-C; 2 for bad tokens, 1 when Slack is unreachable."""
    env = os.environ if env is None else env
    settings = SlackSettings.from_config(config)  # ConfigError: the CLI prints it, exit 2
    for warning in retired(config):
        log.warning(warning)
    try:
        bot_token, app_token = check_tokens(env)
    except TokenError as exc:
        return _fail(str(exc), 2)
    api_url = env.get("SLACK_API_URL") or DEFAULT_API_URL
    client = web_client(bot_token, api_url)
    try:
        who = client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        if error in _BAD_TOKEN:
            return _fail(str(rejected("SLACK_BOT_TOKEN", error)), 2)
        return _fail(f"Slack refused auth.test ({error}); try again later.", 1)
    except (SlackClientError, OSError) as exc:
        return _fail(f"cannot reach Slack at {api_url}: {exc}", 1)

    from marvin.bootstrap import build_app

    # Socket Mode wants each envelope acknowledged within 3 s and we aim for milliseconds: a
    # shorter GIL switch interval lets the socket reader thread ack promptly while worker
    # threads are busy rendering replies (CPython's default is 5 ms).
    sys.setswitchinterval(0.0005)
    api = ApiService.from_config(config, args.api_port)  # the HTTP API beside Bolt, if enabled
    frontends = [front_end(config, client), *([api.front_end] if api else [])]
    app = build_app(config, frontends=frontends)
    bot = SlackBot(app, client, app_token, settings, bot_user_id=who.get("user_id"))
    health = None
    if args.health_port is not None:
        health = HealthServer(args.health_port, bot.connected, settings.health_host).start()
        log.info("health endpoint listening", port=health.port, path="/healthz")
    if api is not None:
        try:
            api.start(app)
        except OSError as exc:
            _stop(app, bot, health)
            return _fail(f"cannot serve the API on {api.settings.host}: {exc}", 1)
    try:
        bot.connect()
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        _stop(app, bot, health)
        if error in _BAD_TOKEN:
            return _fail(str(rejected("SLACK_APP_TOKEN", error)), 2)
        return _fail(f"Slack refused apps.connections.open ({error}); try again later.", 1)
    except (SlackClientError, OSError) as exc:
        _stop(app, bot, health)
        return _fail(f"cannot reach Slack at {api_url}: {exc}", 1)
    log.info(
        "connected to slack",
        team=who.get("team_id"),
        bot_user=who.get("user_id"),
        api_url=api_url,
        socket=bot.connected(),  # if False, the supervisor keeps retrying with backoff
    )
    # Interrupted executions, and actions due later (a maintenance window's end), are told in
    # the thread that asked for them.
    app.start(bot.notify_interrupted)
    install_sigterm(app, after=lambda: _close(bot, health, api))
    try:
        stop = threading.Event()
        while not stop.wait(0.5):  # short waits: the main thread handles signals at once
            pass
    except KeyboardInterrupt:
        log.info("interrupted; stopping")
        _stop(app, bot, health, api)
    return 0


def front_end(config: Config, client: WebClient) -> FrontEnd:
    """Slack vouches for its users through ``users.info`` on the event's user id alone (never
    a display name or a claimed email); it is a chat channel."""
    identity = build_slack_identity(config, client)
    return FrontEnd("slack", "chat", identity, fresh=identity.fresh)


def _fail(text: str, status: int) -> int:
    print(f"marvin: {text}", file=sys.stderr, flush=True)
    return status


def _close(bot: SlackBot, health: HealthServer | None, api: ApiService | None = None) -> None:
    bot.close()
    if health is not None:
        health.stop()
    if api is not None:
        api.stop()


def _stop(
    app: Operations, bot: SlackBot, health: HealthServer | None, api: ApiService | None = None
) -> None:
    _close(bot, health, api)
    app.shutdown(timeout=5)
