"""Where a live call's state and its ending live, so any process can serve any request of the call.

The media stream and Twilio's webhooks (after-stream, whisper, status) may land on different
processes or machines, so the call state, the transcript and what ``/twilio/after-stream`` must
answer are kept in Redis under the call SID, with a time-to-live.

A record is a Redis hash with one field per top-level key (its value JSON). An update writes only
the keys it names (HSET and EXPIRE in one MULTI/EXEC, which also returns the whole record), so two
nodes writing different keys of one call never undo each other: the node that answered
``/twilio/voice`` and later takes the status callback does not write back the stale copy it holds
over the stream's state and ending written by another node. Reads go to Redis first.

Redis is not allowed to break a call: every write goes to this process's memory as well, a failed
Redis operation is logged and skipped, and after a failure Redis is left alone for a few seconds (a
dead Redis must not add a socket timeout to every turn). A call in progress therefore keeps working
from memory, and its transfer still happens when the after-stream request reaches the same process.
Keys written while Redis could not be reached are remembered and written with the call's next
successful update, so Redis catches up with what this process decided during the outage.

Some keys are written once per call whoever comes first: the call's ending is decided by the
stream's session, but ``/twilio/after-stream`` on another thread or node decides one too when it
finds none (a caller who hangs up during the transfer announcement can make it ask before the
session has stored its own). ``update_first`` writes such a key only when the record has none yet,
atomically in Redis (one script), and says whether it did, so only the first writer enqueues the
agent's context and counts the transfer.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import redis

from voicebot.redis_clients import redis_client

log = logging.getLogger("voicebot.store")

PREFIX = "voicebot:call:"
RETRY_AFTER = 5.0
_FIRST = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
"""HSET the fields (ARGV[3..], name/value pairs) unless the record holds ARGV[2]; 1 when written."""
_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
"""HSET the fields (name/value pairs) of an existing record, its TTL untouched; 1 when written."""
MEMORY_LIMIT = 5000
"""Calls kept in this process's memory; the least recently written one goes first."""
clock = time.monotonic
"""When Redis may be tried again is measured on this clock (tests replace it)."""


class CallStore:
    """Call records (plain JSON dicts) by call SID: Redis when it answers, this process's memory always."""

    def __init__(self, url: str, ttl_seconds: int, memory_limit: int = MEMORY_LIMIT):
        self.ttl = ttl_seconds
        self.memory_limit = memory_limit
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, set[str]] = {}  # call -> keys Redis has not got yet
        self._lock = threading.Lock()
        self._first_lock = threading.Lock()
        self._down_until = 0.0
        try:
            self._redis: redis.Redis | None = redis_client(url, "store")
        except ValueError as exc:
            log.error("redis.url is not a valid Redis URL (%s): call state stays in this process only", exc)
            self._redis = None

    @property
    def redis(self) -> redis.Redis | None:
        return self._redis

    def _usable(self) -> bool:
        return self._redis is not None and clock() >= self._down_until

    def _failed(self, what: str, call_sid: str, exc: Exception) -> None:
        self._down_until = clock() + RETRY_AFTER
        log.warning("call %r: Redis %s failed (%s); continuing from memory", call_sid, what, exc)

    def get(self, call_sid: str) -> dict[str, Any] | None:
        """The call's record: Redis's, with keys this process could not write there yet laid over it."""
        stored = self._read(call_sid) if self._usable() else None
        with self._lock:
            local = self._memory.get(call_sid)
            if stored is None:
                return copy.deepcopy(local) if local is not None else None
            for key in self._pending.get(call_sid, ()):
                if local is not None and key in local:
                    stored[key] = copy.deepcopy(local[key])
            return stored

    def update(self, call_sid: str, **fields: Any) -> dict[str, Any]:
        """Set the given top-level keys of the call's record (others untouched) and return the whole record."""
        fields = {**fields, "updated_at": time.time()}
        encoded = {key: json.dumps(value) for key, value in fields.items()}  # TypeError before anything changes
        return self._update(call_sid, fields, encoded)

    def update_first(self, call_sid: str, key: str, value: Any, **fields: Any) -> bool:
        """Set ``key`` (and ``fields`` with it) only when the call's record has no ``key`` yet.

        True when this call wrote it; False when the record already had one (written by this
        process or, through Redis, by any other), and then nothing is written. Without Redis,
        this process's memory decides."""
        fields = {**fields, key: value, "updated_at": time.time()}
        encoded = {name: json.dumps(item) for name, item in fields.items()}
        with self._first_lock:                   # two threads of this process: one after the other
            with self._lock:
                local = self._memory.get(call_sid)
                if local is not None and key in local:
                    return False
            written = self._write_first(call_sid, key, encoded) if self._usable() else None
            if written is False:
                return False
            if written:
                with self._lock:
                    self._remember(call_sid, fields)
            else:                                # Redis failed: memory decides, Redis catches up later
                self._update(call_sid, fields, encoded)
            return True

    def _remember(self, call_sid: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Lay ``fields`` over this process's copy of the call (under the lock); the copy."""
        local = self._memory.pop(call_sid, None) or {}
        local.update(copy.deepcopy(fields))
        self._memory[call_sid] = local
        while len(self._memory) > self.memory_limit:
            oldest, _ = self._memory.popitem(last=False)
            self._pending.pop(oldest, None)
        return local

    def _update(self, call_sid: str, fields: dict[str, Any], encoded: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            local = self._remember(call_sid, fields)
            pending = self._pending.setdefault(call_sid, set())
            pending.update(fields)
            encoded.update({key: json.dumps(local[key]) for key in pending if key in local and key not in encoded})
        if self._usable():
            stored = self._write(call_sid, encoded)
            if stored is not None:
                with self._lock:
                    if self._pending.get(call_sid) is pending:
                        pending.difference_update(encoded)
                        if not pending:
                            self._pending.pop(call_sid, None)
                    if call_sid in self._memory:
                        self._memory[call_sid] = copy.deepcopy(stored)
                return stored
        with self._lock:
            return copy.deepcopy(self._memory.get(call_sid, local))

    def mark(self, call_sid: str, **fields: Any) -> bool:
        """Set keys of a finished call's record in Redis only: not ``updated_at`` (the end of the call
        to whoever reads it later), not its time-to-live (nothing of a caller is kept longer for it),
        and never a record that has expired. True when Redis holds the record and took the keys."""
        if not self._usable():
            return False
        pairs = [item for name, value in fields.items() for item in (name, json.dumps(value))]
        try:
            return bool(self._redis.eval(_MARK, 1, PREFIX + call_sid, *pairs))  # type: ignore[union-attr]
        except (redis.RedisError, OSError) as exc:
            self._failed("write", call_sid, exc)
            return False

    def forget_local(self, call_sid: str) -> None:
        """Drop the memory copy once the call is over and Redis has it (kept while Redis is failing)."""
        if not self._usable():
            return
        with self._lock:
            if not self._pending.get(call_sid):
                self._memory.pop(call_sid, None)
                self._pending.pop(call_sid, None)

    def _write(self, call_sid: str, encoded: dict[str, str]) -> dict[str, Any] | None:
        """HSET the keys and renew the TTL in one transaction; the whole record as Redis then holds it."""
        key = PREFIX + call_sid
        try:
            pipe = self._redis.pipeline(transaction=True)  # type: ignore[union-attr]
            pipe.hset(key, mapping=encoded)
            pipe.expire(key, self.ttl)
            pipe.hgetall(key)
            return _decode(call_sid, pipe.execute()[-1])
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                return self._replace_legacy(call_sid, encoded)
            self._failed("write", call_sid, exc)
        except (redis.RedisError, OSError) as exc:
            self._failed("write", call_sid, exc)
        return None

    def _write_first(self, call_sid: str, key: str, encoded: dict[str, str]) -> bool | None:
        """True: written; False: ``key`` was there already; None: not written (Redis failed, or the
        record is an earlier version's string, which ``_update`` converts)."""
        pairs = [item for pair in encoded.items() for item in pair]
        try:
            return bool(self._redis.eval(_FIRST, 1, PREFIX + call_sid, self.ttl, key, *pairs))  # type: ignore[union-attr]
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):        # an earlier version's record: the ordinary write converts it
                legacy = self._legacy(call_sid)
                return False if legacy and key in legacy else None
            self._failed("write", call_sid, exc)
        except (redis.RedisError, OSError) as exc:
            self._failed("write", call_sid, exc)
        return None

    def _read(self, call_sid: str) -> dict[str, Any] | None:
        key = PREFIX + call_sid
        try:
            raw = self._redis.hgetall(key)  # type: ignore[union-attr]
            return _decode(call_sid, raw) if raw else None
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                return self._legacy(call_sid)
            self._failed("read", call_sid, exc)
        except (redis.RedisError, OSError) as exc:
            self._failed("read", call_sid, exc)
        return None

    def _legacy(self, call_sid: str) -> dict[str, Any] | None:
        """A record written by an earlier version as one JSON string (kept until its TTL runs out)."""
        try:
            raw = self._redis.get(PREFIX + call_sid)  # type: ignore[union-attr]
            record = json.loads(raw) if raw else None
        except (redis.RedisError, OSError) as exc:
            self._failed("read", call_sid, exc)
            return None
        except ValueError:
            log.error("call %r: stored record is not JSON; ignoring it", call_sid)
            return None
        return record if isinstance(record, dict) else None

    def _replace_legacy(self, call_sid: str, encoded: dict[str, str]) -> dict[str, Any] | None:
        """Turn an earlier version's JSON string into a hash, the new keys written over it."""
        old = self._legacy(call_sid) or {}
        merged = {**{k: json.dumps(v) for k, v in old.items()}, **encoded}
        key = PREFIX + call_sid
        try:
            pipe = self._redis.pipeline(transaction=True)  # type: ignore[union-attr]
            pipe.delete(key)
            pipe.hset(key, mapping=merged)
            pipe.expire(key, self.ttl)
            pipe.hgetall(key)
            return _decode(call_sid, pipe.execute()[-1])
        except (redis.RedisError, OSError) as exc:
            self._failed("write", call_sid, exc)
            return None


def _decode(call_sid: str, raw: dict[bytes, bytes]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name, value in raw.items():
        key = name.decode("utf-8", "replace")
        try:
            record[key] = json.loads(value)
        except ValueError:
            log.error("call %r: stored key %r is not JSON; ignoring it", call_sid, key)
    return record
