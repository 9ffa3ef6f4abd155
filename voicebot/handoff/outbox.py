"""The handoff outbox: a transfer's context that Redis could not take, kept on local disk until it can.

A caller is transferred whether Redis answers or not, and the agent's context must not be lost on
the way. When ``enqueue_context`` fails, the web process puts the context here, in one SQLite
file in the data directory (``queues.outbox``), and whichever process sees Redis answer first
queues it: the web process's drain thread (every few seconds, only while the outbox holds
something) or `voicebot worker` (before it starts working, then every few seconds). An entry is
removed only after its enqueue succeeded. The job id derived from the call makes a second
enqueue of the same context (two processes draining, a re-enqueue by ``/twilio/after-stream``)
the same job, and a lease keeps two drainers from taking the same entry at once.

The entries are personal data (transcript, identity, slots): the file is created with mode 0600
in a folder of mode 0700 (SQLite gives its WAL files the same mode), deleted rows are overwritten
(``secure_delete``) and the write-ahead log is truncated when the outbox empties, an entry older
than the call TTL (``redis.call_ttl_seconds``) is deleted unsent, and at most
``queues.outbox_max_entries`` entries of at most ``MAX_CONTEXT_BYTES`` each are kept: beyond
that the oldest goes, with an error log and a count. Logs name calls and counts, never a context.

Every operation opens its own short connection with a bounded busy timeout, so the handoff
threads, a forked gunicorn worker and the RQ worker share the file without a connection crossing
a thread or a fork. Times are wall-clock (entries outlive a restart).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from rq.exceptions import DuplicateJobError

from voicebot.handoff.jobs import KEEP_SECONDS
from voicebot.handoff.queueing import enqueue_context
from voicebot.sqlite_files import FILE_MODE, create_private, immediate

log = logging.getLogger("voicebot.outbox")

BUSY_TIMEOUT_SECONDS = 2.0      # how long a statement waits for another process's write lock
MAX_CONTEXT_BYTES = 256 * 1024  # one context as JSON; a 1000-turn transcript fits
BATCH = 100                     # entries one drain takes at most
LEASE_SECONDS = 60.0            # entries a drainer took and never gave back (it died) are free again after this
DRAIN_SECONDS = 5.0             # how often a drain thread tries again
STOP_SECONDS = 5.0              # how long stopping waits for a drain in progress

clock = time.time
"""When an entry was put and when it expires (tests replace it)."""

EventCounter = Callable[[str, int], None]
"""Told of what happened to entries: ``put``, ``drained``, ``expired`` or ``dropped``, and how many."""

SCHEMA = """CREATE TABLE IF NOT EXISTS entries (
    call_id       TEXT PRIMARY KEY,
    context       TEXT NOT NULL,                -- the context as JSON
    created       REAL NOT NULL,                -- Unix time of the first put
    claimed_until REAL NOT NULL DEFAULT 0       -- a drainer holds the entry until then
)"""


def enqueue_or_known(connection: redis.Redis, queue_name: str, context: dict[str, Any], *,
                     keep_seconds: int = KEEP_SECONDS) -> None:
    """``enqueue_context``, where a job that already exists for the call counts as queued."""
    try:
        enqueue_context(connection, queue_name, context, keep_seconds=keep_seconds)
    except DuplicateJobError:
        pass


class Outbox:
    """Handoff contexts waiting for Redis, one per call, in the SQLite file at ``path``."""

    def __init__(self, path: Path, ttl_seconds: int, max_entries: int, on_event: EventCounter | None = None):
        self.path = Path(path)
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._on_event = on_event

    # -- the file ----------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (transactions are explicit), created private if missing."""
        if not self.path.exists():
            create_private(self.path)
        elif self.path.stat().st_mode & 0o077:
            log.warning("outbox %s was readable by others: made private (mode 0600)", self.path)
            os.chmod(self.path, FILE_MODE)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(SCHEMA)
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn, immediate(conn):
            yield conn

    def _count(self, event: str, n: int = 1) -> None:
        if n and self._on_event is not None:
            self._on_event(event, n)

    def _expire(self, conn: sqlite3.Connection, now: float) -> int:
        expired = conn.execute("DELETE FROM entries WHERE created <= ?", (now - self.ttl,)).rowcount
        if expired:
            log.warning("outbox %s: %d handoff context(s) older than the call TTL (%d s) deleted unsent",
                        self.path, expired, self.ttl)
        return expired

    def _truncate_log_if_empty(self, conn: sqlite3.Connection) -> None:
        """Deleted contexts may still be in the write-ahead log: empty it once nothing is waiting."""
        if conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 0:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- putting -----------------------------------------------------------------------------------

    def put(self, context: dict[str, Any]) -> bool:
        """Keep ``context`` until it can be queued; False when it cannot be kept (logged and counted).

        A second put for the same call keeps the first (the context of a call is decided once).
        """
        call_id = str(context.get("call_id") or "")
        payload = json.dumps(context, ensure_ascii=False)
        if not call_id or len(payload.encode()) > MAX_CONTEXT_BYTES:
            log.error("call %s: handoff context %s: not kept in the outbox", call_id or "?",
                      "without a call id" if not call_id else f"over {MAX_CONTEXT_BYTES} bytes")
            self._count("dropped")
            return False
        now = clock()
        try:
            with self._transaction() as conn:
                expired = self._expire(conn, now)
                added = conn.execute("INSERT OR IGNORE INTO entries (call_id, context, created) VALUES (?, ?, ?)",
                                     (call_id, payload, now)).rowcount
                over = conn.execute("SELECT count(*) FROM entries").fetchone()[0] - self.max_entries
                oldest = [row[0] for row in conn.execute(
                    "SELECT call_id FROM entries ORDER BY created, rowid LIMIT ?", (max(over, 0),))]
                conn.executemany("DELETE FROM entries WHERE call_id = ?", [(c,) for c in oldest])
        except (sqlite3.Error, OSError) as exc:
            log.error("call %s: handoff context cannot be kept in the outbox %s (%s): it is lost",
                      call_id, self.path, exc)
            self._count("dropped")
            return False
        self._count("expired", expired)
        self._count("put", added)
        if oldest:
            log.error("outbox %s is full (queues.outbox_max_entries %d): the oldest context(s) dropped unsent, "
                      "calls %s", self.path, self.max_entries, ", ".join(oldest))
            self._count("dropped", len(oldest))
        return True

    # -- draining ----------------------------------------------------------------------------------

    def pending(self) -> int:
        """Entries waiting (expired ones included until the next put or drain); 0 without a file."""
        if not self.path.exists():
            return 0
        with self._connect() as conn:
            return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    def drain(self, enqueue: Callable[[dict[str, Any]], Any], limit: int = BATCH) -> int:
        """Queue up to ``limit`` waiting contexts with ``enqueue``, oldest first; how many were queued.

        Stops at the first Redis or connection error (Redis is still away: the rest waits for the
        next drain). An entry is removed only after its enqueue returned.
        """
        if not self.path.exists():
            return 0
        taken = self._take(limit)
        drained = 0
        for i, (call_id, payload) in enumerate(taken):
            try:
                context = json.loads(payload)
            except ValueError:
                log.error("call %s: unreadable entry in the outbox %s: dropped", call_id, self.path)
                self._remove(call_id)
                self._count("dropped")
                continue
            try:
                enqueue(context)
            except (redis.RedisError, OSError) as exc:
                log.warning("outbox %s: Redis does not take handoff contexts yet (%s); %d wait",
                            self.path, exc, len(taken) - i)
                self._give_back([c for c, _ in taken[i:]])
                break
            except Exception:
                log.exception("call %s: handoff context in the outbox could not be queued; kept", call_id)
                self._give_back([call_id])
                continue
            self._remove(call_id)
            drained += 1
        if drained:
            log.info("outbox %s: %d handoff context(s) queued now that Redis answers", self.path, drained)
            self._count("drained", drained)
        return drained

    def forget(self, call_id: str) -> None:
        """The call's context was queued another way: its entry, if any, is not needed any more."""
        if self.path.exists():
            self._remove(call_id)

    def _take(self, limit: int) -> list[tuple[str, str]]:
        """Claim up to ``limit`` entries no other drainer holds, after deleting the expired ones."""
        now = clock()
        try:
            with self._transaction() as conn:
                expired = self._expire(conn, now)
                taken = conn.execute(
                    "SELECT call_id, context FROM entries WHERE claimed_until <= ? ORDER BY created, rowid LIMIT ?",
                    (now, limit)).fetchall()
                conn.executemany("UPDATE entries SET claimed_until = ? WHERE call_id = ?",
                                 [(now + LEASE_SECONDS, c) for c, _ in taken])
        except (sqlite3.Error, OSError) as exc:
            log.error("outbox %s cannot be read (%s)", self.path, exc)
            return []
        self._count("expired", expired)
        if expired and not taken:
            self._tidy()
        return taken

    def _tidy(self) -> None:
        try:
            with self._connect() as conn:
                self._truncate_log_if_empty(conn)
        except (sqlite3.Error, OSError) as exc:
            log.error("outbox %s: write-ahead log not emptied (%s)", self.path, exc)

    def _give_back(self, call_ids: list[str]) -> None:
        try:
            with self._transaction() as conn:
                conn.executemany("UPDATE entries SET claimed_until = 0 WHERE call_id = ?", [(c,) for c in call_ids])
        except (sqlite3.Error, OSError) as exc:   # they come free when the lease runs out
            log.error("outbox %s: entries not given back (%s)", self.path, exc)

    def _remove(self, call_id: str) -> None:
        try:
            with self._connect() as conn:
                conn.execute("DELETE FROM entries WHERE call_id = ?", (call_id,))
                self._truncate_log_if_empty(conn)
        except (sqlite3.Error, OSError) as exc:   # queued again after the lease: the same job, no second card
            log.error("call %s: outbox entry not removed (%s)", call_id, exc)


class Drainer:
    """A thread that drains an outbox every ``DRAIN_SECONDS``, bounded and stoppable.

    Without ``keep_going`` (the web process) it runs only while the outbox holds something: ``kick``
    starts it after a put or at start-up, and it ends when the outbox is empty. With ``keep_going``
    (the worker, which never puts but must find what web processes put) it runs until ``stop``.
    """

    def __init__(self, outbox: Outbox, enqueue: Callable[[dict[str, Any]], Any], *,
                 interval: float | None = None, keep_going: bool = False, name: str = "voicebot-outbox"):
        self.outbox = outbox
        self.enqueue = enqueue
        self.interval = DRAIN_SECONDS if interval is None else interval
        self.keep_going = keep_going
        self.name = name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def kick(self) -> None:
        """Make sure the thread runs (it is not started again after ``stop``)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.outbox.drain(self.enqueue)
                if self.keep_going:
                    continue
                with self._lock:     # a put after this check kicks a new thread
                    if self.outbox.pending() == 0:
                        self._thread = None
                        return
            except Exception:
                log.exception("outbox %s: drain failed; trying again in %.0f s", self.outbox.path, self.interval)
        with self._lock:
            self._thread = None
