"""The worker's care of the records database: its schema, its retention, and calls no job wrote.

`voicebot worker` runs ``Upkeep`` beside RQ's loop (a thread of the worker's main process):

- **Schema.** At start the database is created or migrated (``records.db.migrate``). When that
  fails (PostgreSQL not up yet) the worker still starts, for handoffs must not wait on call
  records; each later round tries again, and record jobs fail and are retried meanwhile.
- **Retention.** ``RecordStore.purge`` runs at start and every ``PURGE_SECONDS``. Every worker
  does it; deleting what another worker deleted already deletes nothing.
- **Safety net.** Every ``SWEEP_SECONDS`` a bounded ``SCAN`` of the call store
  (``voicebot:call:*``, at most ``SWEEP_MAX_KEYS`` keys) writes the calls that ended more than
  ``SWEEP_AFTER_SECONDS`` ago and are not marked ``recorded``: the job of such a call was never
  queued (Redis did not answer at the status callback), was lost, or ran out of retries. A call
  whose status callback never came at all (or whose ``finished`` never reached Redis) counts as
  ended once its record has not changed for ``ABANDONED_SECONDS``. At most ``SWEEP_MAX_WRITES``
  calls are written per round, so a backlog is worked off over several rounds rather than in one
  long one. The sweep writes in this process (``records.jobs.write_call``), not through the
  queue: it must work when the queue's job for the call exists but failed.

Each round opens the database and closes it again, so no connection is held while RQ forks its
work-horses. Errors are logged, never raised: the next round tries again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis
import sqlalchemy as sa

from voicebot.config import Settings
from voicebot.records.db import described, open_engine, shown
from voicebot.records.jobs import RecordNotWritten, write_call
from voicebot.records.store import RecordStore
from voicebot.telephony.logsafe import esc
from voicebot.telephony.store import PREFIX, CallStore

log = logging.getLogger("voicebot.records")

SWEEP_SECONDS = 300.0
PURGE_SECONDS = 24 * 3600.0
SWEEP_AFTER_SECONDS = 60.0
"""A finished call younger than this is left to its job."""
ABANDONED_SECONDS = 3 * 3600.0
"""An unfinished record unchanged this long belongs to a call that is over (no call lasts this
long without a turn, a transfer or a status callback updating it)."""
SWEEP_MAX_KEYS = 20_000
SWEEP_MAX_WRITES = 500
SCAN_BATCH = 500
STOP_SECONDS = 10.0

clock = time.time
"""Wall-clock seconds, compared with the records' ``updated_at`` (tests replace it)."""


class Upkeep:
    """Schema, purge and sweep for one worker process; ``start`` runs them in a thread."""

    def __init__(self, settings: Settings, connection: redis.Redis):
        """``connection``: a Redis client for the SCAN (the store's own client reads the records)."""
        self.settings = settings
        self.connection = connection
        self.migrated = False
        self._last_purge: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round ------------------------------------------------------------------------------

    def prepare(self) -> bool:
        """Create or migrate the database; False (logged) when it cannot be reached."""
        url = self.settings.records.url
        try:
            open_engine(url, migrate=True).dispose()
        except (sa.exc.SQLAlchemyError, OSError, ValueError) as exc:
            log.error("call records database %s cannot be opened or migrated: %s; calls wait in Redis "
                      "(up to redis.call_ttl_seconds) and are written when it answers", shown(url), described(exc))
            return False
        self.migrated = True
        log.info("call records in %s: schema up to date", shown(url))
        return True

    def round(self) -> None:
        """What is due now: the schema if not done yet, the daily purge, the sweep."""
        if not self.migrated and not self.prepare():
            return
        try:
            engine = open_engine(self.settings.records.url, migrate=False)
        except (sa.exc.SQLAlchemyError, ValueError) as exc:
            log.error("call records database cannot be opened: %s", described(exc))
            return
        try:
            now = clock()
            if self._last_purge is None or now - self._last_purge >= PURGE_SECONDS:
                self.purge(engine)
            self.sweep(engine)
        finally:
            engine.dispose()

    def purge(self, engine: sa.Engine) -> dict[str, int] | None:
        try:
            deleted = RecordStore(engine).purge(self.settings.records)
        except sa.exc.SQLAlchemyError as exc:
            log.error("call records purge failed: %s; tried again in the next round", described(exc))
            return None
        self._last_purge = clock()
        if deleted:
            log.info("call records purged (older than their retention): %s",
                     ", ".join(f"{flow} {n}" for flow, n in deleted.items()))
        return deleted

    def sweep(self, engine: sa.Engine) -> int:
        """Write the ended calls no job wrote; how many were written."""
        try:
            due = self.unrecorded()
        except (redis.RedisError, OSError) as exc:
            log.warning("call records sweep: Redis did not answer (%s)", exc)
            return 0
        if not due:
            return 0
        store = CallStore(self.settings.redis_url, self.settings.call_ttl_seconds)
        written = 0
        for call_sid in due[:SWEEP_MAX_WRITES]:
            try:
                written += write_call(self.settings, engine, store, call_sid) == "written"
            except RecordNotWritten as exc:
                log.error("call records sweep: %s; tried again in the next round", exc)
                break
            except Exception:          # one malformed record must not stop the others
                log.exception("call records sweep: call %s not written", esc(call_sid))
        if written:
            log.warning("call records sweep wrote %d call(s) whose job had not (Redis away at the status "
                        "callback, or the job gave up)", written)
        return written

    def unrecorded(self) -> list[str]:
        """Call SIDs of ended calls not marked recorded, oldest first (at most ``SWEEP_MAX_KEYS`` scanned)."""
        now = clock()
        found: list[tuple[float, str]] = []
        keys: list[bytes] = []
        for key in self.connection.scan_iter(match=PREFIX + "*", count=SCAN_BATCH):
            keys.append(key)
            if len(keys) >= SWEEP_MAX_KEYS:
                break
        for start in range(0, len(keys), SCAN_BATCH):
            batch = keys[start:start + SCAN_BATCH]
            pipe = self.connection.pipeline(transaction=False)
            for key in batch:
                pipe.hmget(key, "finished", "recorded", "updated_at")
            for key, values in zip(batch, pipe.execute(raise_on_error=False)):
                if isinstance(values, Exception):   # an earlier version's string record: never written
                    continue
                finished, recorded, updated = (_json(v) for v in values)
                if recorded or not isinstance(updated, (int, float)):
                    continue
                age = now - float(updated)
                if (finished and age >= SWEEP_AFTER_SECONDS) or age >= ABANDONED_SECONDS:
                    found.append((float(updated), key.decode("utf-8", "replace")[len(PREFIX):]))
        return [sid for _, sid in sorted(found)]

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="voicebot-records-upkeep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception:      # never let the thread die: the next round tries again
                log.exception("call records upkeep failed")
            self._stop.wait(SWEEP_SECONDS)


def _json(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None

