"""The operations pages' shared state: the call records database, opened on first use and never created here."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from voicebot.config import Settings
from voicebot.records.location import missing_database, shown_url

log = logging.getLogger("voicebot.ops")


class RecordsUnavailable(Exception):
    """The call records cannot be read; the message says why, in words for the page."""


class OpsState:
    """What the operations pages share in one process: the records URL and its engine, made on first use."""

    def __init__(self, settings: Settings):
        self.url = settings.records.url
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()

    def engine(self) -> sa.Engine:
        """The records engine; RecordsUnavailable when there is no database yet or it cannot be opened.

        A missing SQLite file is never created here (it is looked for on every use, as connecting
        would make an empty one): the worker makes and migrates the database."""
        from voicebot.records.db import open_engine

        with self._lock:
            missing = missing_database(self.url)
            if missing:
                raise RecordsUnavailable(f"No call records yet: {missing}.")
            if self._engine is not None:
                return self._engine
            try:
                self._engine = open_engine(self.url, migrate=False)
            except (sa.exc.SQLAlchemyError, OSError, ValueError, ImportError) as exc:
                log.error("the call records database %s cannot be opened: %s", shown_url(self.url),
                          type(exc).__name__)
                raise RecordsUnavailable(f"The call records database ({shown_url(self.url)}) cannot be opened "
                                         f"({type(exc).__name__}); the server's log says more.") from None
            return self._engine

