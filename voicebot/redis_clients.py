"""Every Redis client voicebot makes, by purpose: how long it may wait and whether it retries.

A live call must never wait on Redis, a health check must answer promptly, and RQ's blocking
dequeue must be allowed to block; so the timeouts differ by purpose, and they are all here:

- ``probe``: one PING by `voicebot doctor` and /healthz (0.5 s: a health check that hangs is worse
  than one that says "down", load balancers time out long before a default socket timeout);
- ``startup``: the worker's PING before it starts (5 s: a Redis on another host may be slow to
  answer, but a wrong REDIS_URL is still reported promptly instead of looking like a hung worker);
- ``store``: call state read and written during a call (0.25 s; sms limits and stream claims
  share the store's client);
- ``enqueue``: the web process pushing a handoff job (1 s);
- ``desk``: the agent desk reading its board and claiming (1 s: a person is waiting for the page,
  and a desk that says "Redis does not answer" beats one that hangs);
- ``listen``: a web process's subscription to `voicebot flows reload` requests, and that command's
  own (1 s to connect, 5 s to read a message already there; the subscriber waits for messages a
  second at a time itself, and PINGs an idle connection every 30 s so a Redis that went away
  unannounced is noticed and the subscription made again);
- ``queue``: the RQ worker's own connection (5 s to connect, no read timeout: its dequeue blocks;
  redis-py's own retry policy, as RQ expects).

The others never retry: a retry with back-off would turn a 0.25 s limit into seconds. A malformed URL raises ``ValueError`` here, when the client is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@dataclass(frozen=True)
class Purpose:
    connect_timeout: float
    read_timeout: float | None      # None: wait as long as the command takes (RQ's blocking pop)
    retry: bool = False             # True: redis-py's default retry policy
    health_check_seconds: int = 0   # PING a connection idle this long before using it (0: never)


PURPOSES = {
    "probe": Purpose(0.5, 0.5),
    "store": Purpose(0.25, 0.25),
    "enqueue": Purpose(1.0, 1.0),
    "desk": Purpose(1.0, 1.0),
    "startup": Purpose(5.0, 5.0),
    "listen": Purpose(1.0, 5.0, health_check_seconds=30),
    "queue": Purpose(5.0, None, retry=True),
}


def redis_client(url: str, purpose: str) -> redis.Redis:
    """A client for ``purpose`` (a key of ``PURPOSES``); ValueError when ``url`` is not a Redis URL."""
    timings = PURPOSES[purpose]
    options: dict = {} if timings.retry else {"retry": Retry(NoBackoff(), 0)}
    if timings.health_check_seconds:
        options["health_check_interval"] = timings.health_check_seconds
    return redis.Redis.from_url(url, socket_connect_timeout=timings.connect_timeout,
                                socket_timeout=timings.read_timeout, **options)


def ping(url: str, purpose: str = "probe") -> str | None:
    """PING once; why it failed, or None when Redis answered."""
    try:
        client = redis_client(url, purpose)
    except ValueError as exc:
        return f"not a valid Redis URL ({exc})"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def shown_url(url: str) -> str:
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
