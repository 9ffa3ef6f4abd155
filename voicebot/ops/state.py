"""The operations pages' shared state: the call records database, opened on first use and never created here."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from voicebot.config import Settings
from voicebot.records.db import RecordsUnavailable, open_reader

log = logging.getLogger("voicebot.ops")


class OpsState:
    """What the operations pages share in one process: the records URL and its engine, made on first use."""

    def __init__(self, settings: Settings):
        self.url = settings.records.url
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()

    def engine(self) -> sa.Engine:
        """The records engine; ``RecordsUnavailable`` when there is no database yet or it cannot be
        opened (``records.db.open_reader``: a missing SQLite file is never created here)."""
        with self._lock:
            if self._engine is None:
                try:
                    self._engine = open_reader(self.url)
                except RecordsUnavailable as exc:
                    log.warning("operations pages: %s", exc)
                    raise
            return self._engine
