"""Opening the records database: an SQLAlchemy engine for SQLite or PostgreSQL, its schema current."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from voicebot.records.schema import metadata


def open_engine(url: str, *, migrate: bool = True) -> sa.Engine:
    """An engine for ``url``; with ``migrate`` the tables are brought up to date (a new SQLite file is
    created). Readers (the web process) pass ``migrate=False``."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    if migrate:
        metadata.create_all(engine)
    return engine
