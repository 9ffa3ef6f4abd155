"""The RQ worker that runs warm-transfer (handoff) jobs, apart from the web process.

Handoff work (building the agent's context, talking to the agents' side) is slow and may fail;
keeping it in its own process means a stuck handoff never holds up a thread serving a live call.
"""

from __future__ import annotations

import signal
import sys
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, Worker

from voicebot.config import Settings

# Long enough for a Redis on another host, short enough that a wrong REDIS_URL is reported
# promptly instead of looking like a hung worker.
PROBE_TIMEOUT = 5.0


def _shown_url(url: str) -> str:
    """REDIS_URL may carry a password: error messages end up in logs, the password must not."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***" if parts.username else ":***"
        return urlunsplit(parts._replace(netloc=f"{user}@{host}"))
    except ValueError:
        return "<unparsable Redis URL>"


def _probe(url: str) -> str | None:
    """Ping Redis once; return why it failed, or None.

    A separate short-timeout client, because RQ's own connection must keep a long socket timeout
    for its blocking dequeue.
    """
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=PROBE_TIMEOUT,
            socket_connect_timeout=PROBE_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        return f"not a valid Redis URL ({exc})"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def _fail(url: str, reason: str) -> int:
    print(
        f"voicebot worker: cannot reach Redis at {_shown_url(url)}: {reason}\n"
        "Start redis-server (`make run` does) or set REDIS_URL to a Redis that is running.",
        file=sys.stderr,
    )
    return 1


def run_worker(settings: Settings, burst: bool = False) -> int:
    """Process handoff jobs until stopped (or, with ``burst``, until the queue is empty).

    Returns an exit code instead of raising, so a missing Redis is one readable line for
    `voicebot worker` rather than a traceback. Uses RQ's forking ``Worker``: each job runs in a
    child process, so a job that crashes or leaks cannot take the worker down with it.
    """
    url = settings.redis_url
    reason = _probe(url)
    if reason is not None:
        return _fail(url, reason)

    connection = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT)
    # RQ installs its own SIGINT/SIGTERM handlers for a warm shutdown; put the caller's back
    # afterwards so an in-process caller (the tests) is left as it was.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = Worker([Queue(settings.handoff_queue, connection=connection)], connection=connection)
        worker.work(burst=burst)
    except redis.ConnectionError as exc:
        # Redis went away between the probe and the worker's start-up; inside its loop RQ logs
        # and stops by itself.
        return _fail(url, str(exc))
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
        connection.close()
    return 0
