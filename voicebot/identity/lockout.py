"""Counting failed identity checks across calls, so that guessing over many calls fails too.

A check first *takes* an attempt on every counter it concerns (the claimed customer number, the
calling number): refused when any counter has already reached the limit, else each is counted and
its window restarts. Only then are the values compared. Taking the attempt before comparing, in
one atomic step, matters: checked and counted separately, many calls in parallel could each pass
the check before any failure was counted, and so get many guesses instead of a few. An attempt
that turns out not to be a failure (a match, an unreachable directory) is *given back*.

Two implementations: ``RedisLockout`` (every node of a service shares the counters; what
``voicebot serve`` uses, failing closed when Redis does not answer) and ``MemoryLockout`` (one
process; `voicebot chat` without Redis). Keys are opaque to both: the service passes HMACs,
never a number.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

if TYPE_CHECKING:
    import redis

# Atomic: refuse when any counter is at the limit, else count on all of them (window restarts).
_TAKE = """
local limit = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  if (tonumber(redis.call('GET', key)) or 0) >= limit then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[2])
end
return 1
"""

# Never below zero, never a counter without expiry (DECR keeps the TTL; a missing key stays missing).
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if (tonumber(redis.call('GET', key)) or 0) > 0 then redis.call('DECR', key) end
end
return 1
"""


class LockoutUnavailable(Exception):
    """The counters cannot be read or written: the check must fail closed."""


class Lockout(Protocol):
    limit: int
    window_seconds: int

    def take(self, keys: Sequence[str]) -> bool:
        """Count one attempt on every key; False (nothing counted) when any is already at the limit."""

    def locked(self, keys: Sequence[str]) -> bool:
        """Whether any key is at the limit, counting nothing."""

    def give_back(self, keys: Sequence[str]) -> None:
        """Undo one taken attempt on each key."""

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the keys' failures."""


class RedisLockout:
    """Counters in Redis, shared by every process of the service. Any Redis error (down, slow,
    no client because ``redis.url`` is not valid) raises ``LockoutUnavailable``."""

    def __init__(self, client: redis.Redis | None, limit: int, window_seconds: int):
        self.client = client
        self.limit = limit
        self.window_seconds = window_seconds
        self._take = client.register_script(_TAKE) if client is not None else None
        self._give_back = client.register_script(_GIVE_BACK) if client is not None else None

    def take(self, keys: Sequence[str]) -> bool:
        return bool(self._run(lambda: self._take(keys=list(keys), args=[self.limit, self.window_seconds])))

    def locked(self, keys: Sequence[str]) -> bool:
        counts = self._run(lambda: self.client.mget(list(keys)))
        return any(int(count or 0) >= self.limit for count in counts)

    def give_back(self, keys: Sequence[str]) -> None:
        self._run(lambda: self._give_back(keys=list(keys)))

    def clear(self, keys: Sequence[str]) -> None:
        if keys:
            self._run(lambda: self.client.delete(*keys))

    def _run(self, command: Callable):
        if self.client is None:
            raise LockoutUnavailable("no Redis client")
        import redis   # here, not at the top: the text simulator imports this module and needs no Redis

        try:
            return command()
        except (redis.RedisError, OSError, ValueError) as exc:
            # The type only: a Redis error message may quote a key or an argument.
            raise LockoutUnavailable(type(exc).__name__) from None


class MemoryLockout:
    """Counters in this process only, for `voicebot chat` when no Redis answers: a development tool,
    where failed attempts count until the chat ends. Holds at most ``max_keys`` counters (the
    oldest go first), timed on ``clock`` (tests replace it)."""

    def __init__(self, limit: int, window_seconds: int, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()   # key -> (count, expires at)
        self._lock = threading.Lock()

    def take(self, keys: Sequence[str]) -> bool:
        with self._lock:
            if any(self._count(key) >= self.limit for key in keys):
                return False
            expires = self.clock() + self.window_seconds
            for key in keys:
                self._counts[key] = (self._count(key) + 1, expires)
                self._counts.move_to_end(key)
            while len(self._counts) > self.max_keys:
                self._counts.popitem(last=False)
            return True

    def locked(self, keys: Sequence[str]) -> bool:
        with self._lock:
            return any(self._count(key) >= self.limit for key in keys)

    def give_back(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                count = self._count(key)
                if count > 0:
                    self._counts[key] = (count - 1, self._counts[key][1])

    def clear(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._counts.pop(key, None)

    def _count(self, key: str) -> int:
        count, expires = self._counts.get(key, (0, 0.0))
        if count and self.clock() >= expires:
            del self._counts[key]
            return 0
        return count
