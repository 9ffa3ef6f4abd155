"""The HTTP side of voicebot: the Flask app and the gunicorn server that runs it.

Redis is optional on this path: a call must still be answered when Redis is down (only warm
transfer and cross-process call state need it), so nothing here connects to Redis at import or at
start-up, and /healthz reports Redis instead of failing on it.
"""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask, jsonify
from gunicorn.app.base import BaseApplication
from redis.backoff import NoBackoff
from redis.retry import Retry

from voicebot import __version__
from voicebot.config import Settings, load_settings

# A health check that hangs is worse than one that says "down": load balancers and the telephony
# provider's webhooks time out long before a default Redis socket timeout would.
REDIS_PING_TIMEOUT = 0.5


def _redis_client(url: str) -> redis.Redis | None:
    """One client per app so the connection pool is shared by the 32 gunicorn threads.

    A malformed URL gives None (reported as "down") rather than an app that will not start,
    because calls do not need Redis.
    """
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=REDIS_PING_TIMEOUT,
            socket_connect_timeout=REDIS_PING_TIMEOUT,
            # No retries: redis-py's defaults may retry with back-off, which would turn a 0.5 s
            # probe into several seconds.
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError:
        return None


def _redis_status(client: redis.Redis | None) -> str:
    if client is None:
        return "down"
    try:
        client.ping()
    except (redis.RedisError, OSError):
        return "down"
    return "ok"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from explicit settings so tests and `voicebot serve` share one code path."""
    if settings is None:
        settings = load_settings()
    app = Flask("voicebot")
    app.config["VOICEBOT_SETTINGS"] = settings
    health_redis = _redis_client(settings.redis_url)

    @app.get("/healthz")
    def healthz() -> Any:
        # Always 200: the process can take calls without Redis, so an orchestrator must not
        # restart it for a Redis outage; the "redis" field tells monitoring what is degraded.
        return jsonify(status="ok", version=__version__, redis=_redis_status(health_redis))

    return app


class _Server(BaseApplication):
    """gunicorn driven from Python so `voicebot serve` needs no gunicorn command line or config file."""

    def __init__(self, app: Flask, options: dict[str, Any]):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        # gunicorn >= 25.1 opens a control socket at one fixed path in $HOME by default; nothing here
        # uses it, and a second server on the same machine (tests, a second checkout) would fight
        # over that path.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        return self._app


def serve(settings: Settings, port: int | None = None) -> None:
    """Run the app under gunicorn until it is stopped.

    Threads rather than processes, because a live call holds its media websocket (flask-sock),
    and so one thread, for the whole call: 32 threads is 32 concurrent calls. ``timeout`` 0 turns
    off gunicorn's worker timeout, which would otherwise kill the worker in the middle of long
    calls. The app is built here, before gunicorn starts, so a bad
    config stops `voicebot serve` with its own message instead of a worker boot loop.
    """
    app = create_app(settings)
    options = {
        "bind": f"{settings.host}:{port or settings.port}",
        "worker_class": "gthread",
        "workers": 1,
        "threads": 32,
        "timeout": 0,
        "accesslog": "-",
    }
    _Server(app, options).run()
