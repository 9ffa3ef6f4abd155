"""The prompt audio cache: files shared by every process, with an in-memory LRU in front.

A file is ``<cache_dir>/<sha256>.ulaw``, raw 8 kHz mono mu-law. The hash (``cache_key``) covers
the espeak-ng voice, the rate and the exact text, plus a format tag, because any of these changes
the audio. Files are written to a temp file and moved into place with ``os.replace``, so two
processes sharing the directory never read half a file.

The memory part is ``cachetools.LRUCache`` sized in bytes (``getsizeof=len``): prompts differ a
lot in length, so a budget in bytes, not in entries, is what bounds the memory. ``functools.lru_cache``
counts entries only and memoises a function, so it cannot hold audio put in by another path
(synthesis) or be cleared per instance.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from cachetools import LRUCache

log = logging.getLogger("voicebot.speech.cache")

CACHE_FORMAT = "ulaw8k-1"
"""Part of the cache key: change it when the conversion changes, so old files are not reused."""
MEMORY_BYTES = 32 * 1024 * 1024
"""In-memory LRU budget: about an hour of prompts at 8 kB per second."""


def cache_key(voice: str, rate: int, text: str) -> str:
    """The synthesis cache's key: everything that changes the audio."""
    return hashlib.sha256(f"{CACHE_FORMAT}\n{voice}\n{rate}\n{text}".encode("utf-8")).hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PromptCache:
    """Audio by cache key: memory first, then the directory. Not thread-safe: the caller locks
    around the memory methods (``get``, ``put``, ``in_memory``, ``clear``); file reads and writes
    need no lock."""

    def __init__(self, cache_dir: str | Path, memory_bytes: int = MEMORY_BYTES):
        self.cache_dir = Path(cache_dir)
        self._memory: LRUCache[str, bytes] = LRUCache(maxsize=memory_bytes, getsizeof=len)

    def path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.ulaw"

    def get(self, key: str) -> bytes | None:
        """From memory only (and marked as recently used)."""
        return self._memory.get(key)

    def put(self, key: str, audio: bytes) -> None:
        """Into memory; audio larger than the whole budget is not kept."""
        if len(audio) <= self._memory.maxsize:
            self._memory[key] = audio

    def in_memory(self, key: str) -> bool:
        return key in self._memory

    def clear(self) -> None:
        self._memory.clear()

    def read(self, key: str) -> bytes | None:
        """The file's audio; None when there is none or it cannot be read (then it is made again)."""
        path = self.path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("prompt cache file %s cannot be read (%s); synthesising again", path, exc)
            return None

    def write(self, key: str, audio: bytes) -> bool:
        """Store rendered audio; False (and a warning) when the cache directory cannot be written."""
        path = self.path(key)
        try:
            write_atomically(path, audio)
        except OSError as exc:  # the caller still gets the audio; only the next call pays again
            log.warning("prompt cache %s cannot be written: %s", path.parent, exc)
            return False
        return True
