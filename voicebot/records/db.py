"""Opening the records database: an SQLAlchemy engine for SQLite or PostgreSQL, its schema current.

One code path for both dialects, with what each needs to be safe under several writers:

- **SQLite** (the default, one worker machine): the file is created readable by its owner only
  (``sqlite_files.create_private``: call records are personal data), and every connection turns
  on foreign keys (so deleting a call deletes its steps, turns and reviews), write-ahead logging
  (readers never wait for the writer) and a busy timeout (a writer waits for another's lock
  instead of failing at once). pysqlite's own transaction handling is switched off and each
  transaction is begun here: a read transaction with ``BEGIN``, a write transaction
  (``writing``) with ``BEGIN IMMEDIATE``, which takes the write lock at its start; a deferred
  transaction that reads first and writes later could fail half-way when another process wrote
  in between, where an immediate one waits its turn. It also makes migrations transactional.
- **PostgreSQL** (more than one worker machine): ``postgresql://`` URLs use the psycopg (3)
  driver; connections are checked before use (``pool_pre_ping``: a restarted server does not
  fail the next job), connecting gives up after ``CONNECT_TIMEOUT_SECONDS`` and waiting for a row
  lock after ``LOCK_TIMEOUT_MS``.

Statement parameters are never shown in errors or logs (``hide_parameters``): they are callers'
words, and a failed job's error ends up in the worker's log and in Redis. For the same reason
errors are logged as their first line only (``described``).

Migrations are Alembic's, run from code (no ``alembic.ini``): the scripts live in
``records/migrations`` and ``migrate`` upgrades to their head inside one write transaction, so
two workers starting together migrate one after the other (SQLite: the immediate lock;
PostgreSQL: an advisory lock). ``open_engine(url)`` migrates; ``open_engine(url, migrate=False)``
never writes the schema and never creates the database (a missing SQLite file is an error when
the first connection is made, not an empty file).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote

import sqlalchemy as sa
from sqlalchemy import event

from voicebot.sqlite_files import create_private

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "voicebot_records_version"
"""Alembic's version table, named for this schema so a PostgreSQL database shared with other
applications' migrations keeps them apart."""
BUSY_TIMEOUT_MS = 10_000
"""How long an SQLite statement waits for another connection's write lock."""
CONNECT_TIMEOUT_SECONDS = 10
"""How long connecting to PostgreSQL may take before the attempt fails."""
LOCK_TIMEOUT_MS = 30_000
"""How long a PostgreSQL statement waits for a lock (a purge and a write of the same call)."""
MIGRATION_LOCK = 0x766F6963  # "voic"
"""PostgreSQL advisory lock key held while migrating."""
WRITE = "voicebot_write"
"""Execution option that makes an SQLite transaction ``BEGIN IMMEDIATE``."""


def open_engine(url: str, *, migrate: bool = True) -> sa.Engine:
    """An engine for ``url`` (``sqlite:///PATH`` or ``postgresql[+psycopg]://...``).

    With ``migrate`` the schema is brought up to date (an SQLite file and its folder are made,
    readable by this user only). Readers and code that must not change the schema pass
    ``migrate=False``. ValueError for another kind of database."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, create=migrate)
    elif backend in ("postgresql", "postgres"):
        engine = _postgresql_engine(parsed)
    else:
        raise ValueError(f"records.url must be sqlite:/// or postgresql://, not {backend}://")
    if migrate:
        _upgrade(engine)
    return engine


class RecordsUnavailable(Exception):
    """The call records cannot be read; the message says why, in words for a page or a terminal."""


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL, or None (another database, SQLite in memory, or not a URL)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def open_reader(url: str) -> sa.Engine:
    """The records database for reading (and review marks), never created or migrated here:
    ``RecordsUnavailable`` when there is none yet (the worker makes it) or it cannot be opened."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise RecordsUnavailable(f"no call records yet: the database {path} does not exist; the worker creates it "
                                 "(`voicebot worker`, or `voicebot records migrate`) and writes every finished call")
    try:
        engine = open_engine(url, migrate=False)
        ready = is_migrated(engine)
    except (sa.exc.SQLAlchemyError, OSError, ValueError, ImportError) as exc:
        raise RecordsUnavailable(f"the call records database {_shown_url(url)} cannot be opened: "
                                 f"{described(exc)}") from None
    if not ready:
        engine.dispose()
        raise RecordsUnavailable(f"no call records yet: the database {_shown_url(url)} has no tables; the worker "
                                 "creates them (`voicebot worker`, or `voicebot records migrate`)")
    return engine


def _shown_url(url: str) -> str:
    try:
        return shown(url)
    except sa.exc.ArgumentError:
        return "(records.url is not a database URL)"


def described(exc: BaseException) -> str:
    """A database error in one line for logs and messages: the driver's message only. What follows
    it can hold callers' words (PostgreSQL's DETAIL repeats a failing row) and the statement."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def shown(engine_or_url: sa.Engine | str) -> str:
    """The database's URL for messages and logs: without its password."""
    url = engine_or_url.url if isinstance(engine_or_url, sa.Engine) else sa.engine.make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


@contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One write transaction (committed at the end, rolled back on an exception). On SQLite it
    takes the write lock at once (``BEGIN IMMEDIATE``), waiting up to the busy timeout for it."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            yield conn


def migrate(engine: sa.Engine) -> None:
    """Upgrade the schema to the newest migration (``records/migrations/versions``)."""
    _upgrade(engine)


def _upgrade(engine: sa.Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def revision(engine: sa.Engine) -> str | None:
    """The schema's migration revision, or None when it has none (not migrated yet)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def is_migrated(engine: sa.Engine) -> bool:
    """True when the database exists and has its tables (of any revision): what a reader opened with
    ``migrate=False`` checks before it says "no records yet" instead of failing on a missing table."""
    database = engine.url.database or ""
    if engine.dialect.name == "sqlite" and database.startswith("file:") and engine.url.query.get("mode") == "rw":
        if not Path(unquote(database[len("file:"):])).exists():
            return False
    return revision(engine) is not None


def head() -> str:
    """The newest migration's revision: what ``migrate`` brings a database to."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    found = ScriptDirectory.from_config(config).get_current_head()
    assert found is not None
    return found


def _sqlite_engine(url: sa.URL, *, create: bool) -> sa.Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        engine = sa.create_engine(url, hide_parameters=True)
    else:
        path = Path(database).expanduser().absolute()
        if create:
            create_private(path)
            target = url.set(database=str(path))
        else:
            # A read-write URI: connecting fails instead of creating an empty file nobody migrated.
            target = url.set(database="file:" + quote(str(path)), query={**url.query, "mode": "rw", "uri": "true"})
        engine = sa.create_engine(target, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None     # transactions are begun by ``_begin`` only
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return engine


def _postgresql_engine(url: sa.URL) -> sa.Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True,
                              connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
        dbapi_connection.autocommit = autocommit

    return engine
