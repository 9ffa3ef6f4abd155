"""Server-sent events for the desk: the board pushed to the browser when it changes, within bounds.

A stream holds one of gunicorn's threads and one Redis connection (a pub/sub subscription) for as
long as it is open, so both are bounded: at most ``desk.max_event_streams`` streams per process
(the next desk gets 503 and polls ``/agent/api/transfers`` instead), each open for at most
``desk.event_stream_seconds`` (then the browser opens the next one, and the log-in is checked
again). A quiet stream gets a comment every ``desk.heartbeat_seconds`` so proxies keep it open
and a browser that went away is noticed at the next write.

The announcements (a new transfer on ``voicebot:handoff``, a claim or a close on the desk's
channel) only say "look again": every event carries the whole board, so a missed announcement
costs nothing but latency. At every heartbeat the board is looked at anyway, which also takes in
transfers whose announcement was lost.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import redis

RECONNECT_MS = 3000
"""How long a browser waits before opening the next stream (the SSE ``retry`` field)."""


class StreamSlots:
    """At most ``limit`` open streams in this process."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self.open = 0

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def board_events(client: redis.Redis, channels: list[str], look: Callable[[], tuple[str, dict]], *,
                 heartbeat_seconds: float, max_seconds: float) -> Iterator[str]:
    """The stream's text: the board (``look()`` gives its digest and its payload) whenever the digest
    changes, a heartbeat on a quiet stream, and ``bye`` at the end of its time.

    The stream's slot is given back by the response's close (which runs even when the browser left
    before the first byte), not here: a generator never started never runs its ``finally``."""
    pubsub = None
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        deadline = time.monotonic() + max_seconds
        pubsub = client.pubsub()
        pubsub.subscribe(*channels)
        shown, stale = None, True
        while True:
            if stale:
                digest, payload = look()
                stale = False
                if digest != shown:
                    shown = digest
                    yield event("board", payload)
            left = deadline - time.monotonic()
            if left <= 0:
                yield event("bye", {})
                return
            message = pubsub.get_message(timeout=min(heartbeat_seconds, left))
            if message is None:                    # quiet: keep the line open, and look anyway
                yield ": heartbeat\n\n"
                stale = True
            elif message.get("type") == "message":
                while pubsub.get_message(timeout=0.05) is not None:   # a burst of announcements: one look
                    pass
                stale = True
    except (redis.RedisError, OSError):
        yield event("problem", {"message": "Redis does not answer: the board is not up to date"})
    finally:
        if pubsub is not None:
            try:
                pubsub.close()
            except (redis.RedisError, OSError):
                pass
