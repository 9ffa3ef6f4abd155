"""Where a live call's state and its ending live, so any process can serve any request of the call.

The media stream and Twilio's webhooks (after-stream, whisper, status) may land on different
processes or machines, so the call state, the transcript and what ``/twilio/after-stream`` must
answer are kept in Redis under the call SID, with a time-to-live. Redis is not allowed to break a
call: every write goes to this process's memory as well, a failed Redis operation is logged and
skipped, and after a failure Redis is left alone for a few seconds (a dead Redis must not add a
socket timeout to every turn). A call in progress therefore keeps working from memory, and its
transfer still happens when the after-stream request reaches the same process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("voicebot.store")

PREFIX = "voicebot:call:"
REDIS_TIMEOUT = 0.25
RETRY_AFTER = 5.0
MEMORY_LIMIT = 5000


class CallStore:
    """Call records (plain JSON dicts) by call SID: Redis when it answers, this process's memory always."""

    def __init__(self, url: str, ttl_seconds: int):
        self.ttl = ttl_seconds
        self._memory: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0
        try:
            self._redis: redis.Redis | None = redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), 0))
        except ValueError as exc:
            log.error("redis.url is not a valid Redis URL (%s): call state stays in this process only", exc)
            self._redis = None

    @property
    def redis(self) -> redis.Redis | None:
        return self._redis

    def _usable(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._down_until

    def _failed(self, what: str, call_sid: str, exc: Exception) -> None:
        self._down_until = time.monotonic() + RETRY_AFTER
        log.warning("call %s: Redis %s failed (%s); continuing from memory", call_sid, what, exc)

    def get(self, call_sid: str) -> dict[str, Any] | None:
        if self._usable():
            try:
                raw = self._redis.get(PREFIX + call_sid)  # type: ignore[union-attr]
                if raw is not None:
                    return json.loads(raw)
            except (redis.RedisError, OSError) as exc:
                self._failed("read", call_sid, exc)
            except ValueError:
                log.error("call %s: stored record is not JSON; ignoring it", call_sid)
        with self._lock:
            record = self._memory.get(call_sid)
            return json.loads(json.dumps(record)) if record is not None else None

    def update(self, call_sid: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the call's record and store it everywhere it can go."""
        with self._lock:
            record = dict(self._memory.get(call_sid) or {})
        if not record and self._usable():
            try:
                raw = self._redis.get(PREFIX + call_sid)  # type: ignore[union-attr]
                record = json.loads(raw) if raw else {}
            except (redis.RedisError, OSError, ValueError) as exc:
                self._failed("read", call_sid, exc)
        record.update(fields)
        record["updated_at"] = time.time()
        with self._lock:
            self._memory[call_sid] = record
            if len(self._memory) > MEMORY_LIMIT:
                oldest = min(self._memory, key=lambda k: self._memory[k].get("updated_at", 0))
                self._memory.pop(oldest, None)
        if self._usable():
            try:
                self._redis.set(PREFIX + call_sid, json.dumps(record), ex=self.ttl)  # type: ignore[union-attr]
            except (redis.RedisError, OSError) as exc:
                self._failed("write", call_sid, exc)
        return record

    def forget_local(self, call_sid: str) -> None:
        """Drop the memory copy once the call is over and Redis has it (kept while Redis is failing)."""
        if not self._usable():
            return
        with self._lock:
            self._memory.pop(call_sid, None)
