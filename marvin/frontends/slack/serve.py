"""``marvin serve``: Marvin on Slack over Socket Mode.

Start-up order: settings and tokens (a missing or malformed token exits 2 with one line saying
which and how to get it) -> auth.test with the bot token (rejected: exit 2) -> Marvin with the
security chain's authorizer on the same WebClient -> Bolt + socket (a rejected app token:
exit 2) -> recover executions a previous process left behind -> wait. SIGTERM: drain running
commands, close the socket, exit 0.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError, SlackClientError

from marvin.config import Config
from marvin.frontends.slack.bot import SlackBot, web_client
from marvin.frontends.slack.health import HealthServer
from marvin.frontends.slack.settings import (
    DEFAULT_API_URL,
    SlackSettings,
    TokenError,
    check_tokens,
    rejected,
)

__all__ = ["serve"]

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
    from marvin.security import build_authorizer

    # Socket Mode wants each envelope acknowledged within 3 s and we aim for milliseconds: a
    # shorter GIL switch interval lets the socket reader thread ack promptly while worker
    # threads are busy rendering replies (CPython's default is 5 ms).
    sys.setswitchinterval(0.0005)
    app = build_app(config, authorizer=build_authorizer(config, slack_client=client))
    bot = SlackBot(app, client, app_token, settings, bot_user_id=who.get("user_id"))
    health = None
    if getattr(args, "health_port", None) is not None:
        health = HealthServer(args.health_port, bot.connected, settings.health_host).start()
        log.info("health endpoint listening", port=health.port, path="/healthz")
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
    recover = getattr(app, "recover", None)
    if recover is not None:
        recover(bot.notify_interrupted)
    # Actions due later (a maintenance window's end), posted in the thread that asked for them.
    from marvin.runtime import due

    due.start(app, bot.notify_interrupted)
    _on_sigterm(app, bot, health)
    try:
        threading.Event().wait()  # everything runs on other threads; signals end this
    except KeyboardInterrupt:
        log.info("interrupted; stopping")
        _stop(app, bot, health)
    return 0


def _fail(text: str, status: int) -> int:
    print(f"marvin: {text}", file=sys.stderr, flush=True)
    return status


def _stop(app: Any, bot: SlackBot, health: HealthServer | None) -> None:
    bot.close()
    if health is not None:
        health.stop()
    shutdown = getattr(app, "shutdown", None)
    if shutdown is not None:
        shutdown(timeout=5)


def _on_sigterm(app: Any, bot: SlackBot, health: HealthServer | None) -> None:
    """SIGTERM: ``app.drain()`` (running commands get ``jobs.grace_seconds``; new ones are
    told Marvin is restarting), then close the socket, exit 0. The work runs on a thread, not
    in the handler, which may interrupt the main thread anywhere; the exit is ``os._exit``
    because Bolt's and the socket client's threads are not ours to join."""
    started = threading.Event()

    def stop() -> None:
        try:
            drain = getattr(app, "drain", None)
            if drain is not None:
                drain(None)
        except Exception:
            log.exception("drain failed")
        finally:
            bot.close()
            if health is not None:
                health.stop()
            log.info("stopped")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def handler(_signum: int, _frame: Any) -> None:
        if not started.is_set():  # a second SIGTERM does not start a second drain
            started.set()
            log.info("SIGTERM: draining, then closing the socket")
            threading.Thread(target=stop, name="marvin-drain", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
