"""Where the call records database is, told safely: its SQLite file (readers must not create one),
and its URL as pages, logs and commands may show it (never a password)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL, or None (another database, or SQLite in memory)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def shown_url(url: str) -> str:
    """The records URL without its password."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not an SQLAlchemy URL)"


def missing_database(url: str) -> str | None:
    """Why there is nothing to read yet (an SQLite file not made), or None."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return (f"the call records database {path} does not exist yet: the worker creates it (`voicebot worker`, "
                "or `voicebot records migrate`) and writes every finished call to it")
    return None
