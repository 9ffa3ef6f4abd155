"""The embedded customer directory: one SQLite file that works without any other service.

This file is the operator's master data about customers (who they are, how to reach them, how
to check it is them); it holds nothing about calls, so call retention rules do not apply to it
and nothing in voicebot deletes customers. Keep it like any other customer register: backed up,
readable only by the service's user (it is created with mode 0600), PINs inside only as scrypt
hashes.

The web process (several threads) and the RQ worker (another process, forking per job) read it
at the same time as ``voicebot customers import`` writes it: the file is in WAL mode, so readers
never wait for a writer; each process keeps one connection behind a lock (reopened after a fork),
and every wait is bounded (the lock, SQLite's busy timeout). Any SQLite or file error becomes
``DirectoryUnavailable`` with the file named, and verification fails closed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.identity import Customer, Directory, DirectoryUnavailable, fields
from voicebot.identity.pins import hash_pin, verify_pin, waste_time_like_a_check
from voicebot.sqlite_files import create_private, immediate

if TYPE_CHECKING:
    from voicebot.config import IdentitySection

log = logging.getLogger("voicebot.directory")

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 2000          # how long a statement waits for another process's write lock
LOCK_TIMEOUT_SECONDS = 5.0      # how long a thread waits for this process's connection
MAX_MATCHES = 50                # a lookup by phone or address returns at most this many customers

# Each version's statements, applied in order inside one transaction. Never edit a released
# version: add the next one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE customers (
               number       TEXT PRIMARY KEY,
               name         TEXT NOT NULL,
               postcode     TEXT NOT NULL,
               house_number TEXT NOT NULL,
               birth_date   TEXT,              -- ISO YYYY-MM-DD, NULL when not known
               pin_hash     TEXT               -- scrypt$n$r$p$salt$hash, NULL when no PIN
           )""",
        """CREATE TABLE phones (
               customer_number TEXT NOT NULL REFERENCES customers (number) ON DELETE CASCADE,
               position        INTEGER NOT NULL,
               e164            TEXT NOT NULL,
               PRIMARY KEY (customer_number, e164)
           )""",
        "CREATE INDEX phones_by_number ON phones (e164)",
        "CREATE INDEX customers_by_address ON customers (postcode, house_number)",
    ),
}


class CustomerExists(Exception):
    """An import without ``update`` met a customer number that is already in the directory."""

    def __init__(self, number: str):
        self.number = number
        super().__init__(f"customer {number} already exists")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path | str = "the customer directory") -> int:
    """Bring the schema to ``SCHEMA_VERSION``; returns the version the file had.

    The write lock is taken only when something is to be done, so opening an up-to-date file
    never waits for another process's import.
    """
    found = schema_version(conn)
    if found == SCHEMA_VERSION:
        return found
    if found > SCHEMA_VERSION:
        raise DirectoryUnavailable(f"{path} has schema version {found}, newer than this voicebot knows "
                                   f"({SCHEMA_VERSION}): upgrade voicebot")
    with immediate(conn):
        found = schema_version(conn)          # another process may have migrated meanwhile
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
    if found < SCHEMA_VERSION:
        log.info("customer directory %s: schema version %d -> %d", path, found, SCHEMA_VERSION)
    return found


def _canonical(customer: Customer) -> Customer:
    """The customer with every field in its stored form; ``ValueError`` names what is wrong."""
    phones = tuple(dict.fromkeys(fields.phone(p) for p in customer.phones))
    if not phones:
        raise ValueError("a customer needs at least one phone number")
    return Customer(number=fields.customer_number(customer.number), name=fields.name(customer.name),
                    phones=phones, postcode=fields.postcode(customer.postcode),
                    house_number=fields.house_number(customer.house_number),
                    birth_date=customer.birth_date, has_pin=customer.has_pin)


_COLUMNS = "number, name, postcode, house_number, birth_date, pin_hash IS NOT NULL"


class SqliteDirectory:
    """The ``Directory`` in a SQLite file, created with its folder on first use."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS):
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._lock_timeout = lock_timeout_seconds
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"SqliteDirectory({str(self.path)!r})"

    def __enter__(self) -> SqliteDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """This process's connection (called with the lock held)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection inherited through fork (the RQ worker's job processes) must not be used
        # or closed here: SQLite's locks belong to the parent. Open our own.
        self._conn = None
        create_private(self.path)
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DirectoryUnavailable(f"customer directory {self.path}: cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")     # durable enough in WAL mode, much faster
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _using(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection for one short piece of work; every failure is ``DirectoryUnavailable``."""
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise DirectoryUnavailable(f"customer directory {self.path}: still busy after "
                                       f"{self._lock_timeout:g} s ({what})")
        try:
            yield self._connect()
        except sqlite3.Error as exc:
            raise DirectoryUnavailable(f"customer directory {self.path}: {what} failed: {exc}") from exc
        except OSError as exc:
            raise DirectoryUnavailable(f"customer directory {self.path}: cannot open: {exc.strerror or exc}") from exc
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it or nothing."""
        with self._using(what) as conn, immediate(conn):
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- reading -----------------------------------------------------------------------------

    def _customers(self, conn: sqlite3.Connection, where: str, params: tuple[str, ...]) -> list[Customer]:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM customers WHERE {where} ORDER BY number LIMIT ?",
                            (*params, MAX_MATCHES)).fetchall()
        found = []
        for number, name, postcode, house_number, birth_date, has_pin in rows:
            phones = tuple(row[0] for row in conn.execute(
                "SELECT e164 FROM phones WHERE customer_number = ? ORDER BY position", (number,)))
            try:
                born = dt.date.fromisoformat(birth_date) if birth_date else None
            except (TypeError, ValueError):
                raise DirectoryUnavailable(f"customer directory {self.path}: customer {number} has a "
                                           "malformed birth date") from None
            found.append(Customer(number=number, name=name, phones=phones, postcode=postcode,
                                  house_number=house_number, birth_date=born, has_pin=bool(has_pin)))
        return found

    def by_number(self, number: str) -> Customer | None:
        try:
            number = fields.customer_number(number)
        except ValueError:
            return None
        with self._using("lookup by customer number") as conn:
            found = self._customers(conn, "number = ?", (number,))
        return found[0] if found else None

    def by_phone(self, e164: str) -> list[Customer]:
        try:
            e164 = fields.phone(e164)
        except ValueError:
            return []
        with self._using("lookup by phone number") as conn:
            return self._customers(conn, "number IN (SELECT customer_number FROM phones WHERE e164 = ?)", (e164,))

    def by_address(self, postcode: str, house_number: str) -> list[Customer]:
        try:
            postcode, house_number = fields.postcode(postcode), fields.house_number(house_number)
        except ValueError:
            return []
        with self._using("lookup by address") as conn:
            return self._customers(conn, "postcode = ? AND house_number = ?", (postcode, house_number))

    def pin_matches(self, number: str, pin: str) -> bool:
        """Whether ``pin`` is this customer's PIN. Takes as long for an unknown customer or one
        without a PIN as for a wrong PIN; the slow hash runs outside the lock."""
        try:
            number = fields.customer_number(number)
        except ValueError:
            return waste_time_like_a_check(pin)
        with self._using("PIN check") as conn:
            row = conn.execute("SELECT pin_hash FROM customers WHERE number = ?", (number,)).fetchone()
        if row is None or not row[0]:
            return waste_time_like_a_check(pin)
        return verify_pin(pin, row[0])

    def count(self) -> int:
        with self._using("count") as conn:
            return int(conn.execute("SELECT count(*) FROM customers").fetchone()[0])

    def existing(self, numbers: Iterable[str]) -> set[str]:
        """Which of these (canonical) customer numbers are in the directory."""
        wanted = list(dict.fromkeys(numbers))
        found: set[str] = set()
        with self._using("lookup of existing customers") as conn:
            for start in range(0, len(wanted), 500):       # SQLite's limit on parameters
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(row[0] for row in conn.execute(
                    f"SELECT number FROM customers WHERE number IN ({marks})", chunk))
        return found

    # -- writing -----------------------------------------------------------------------------

    def upsert(self, customer: Customer, pin: str | None = None) -> bool:
        """Add or change one customer; ``True`` when added. See ``upsert_many``."""
        added, _ = self.upsert_many([(customer, pin)])
        return added == 1

    def upsert_many(self, entries: Iterable[tuple[Customer, str | None]], *, update: bool = True) -> tuple[int, int]:
        """Add or change customers in one transaction; returns (added, updated).

        Fields are brought to their stored form first (``ValueError`` when one cannot be). A PIN
        given is hashed; ``None`` keeps the customer's PIN as it is. Without ``update`` an
        existing customer number raises ``CustomerExists`` and nothing is written.
        """
        prepared = []
        for customer, pin in entries:
            prepared.append((_canonical(customer), None if pin is None else hash_pin(fields.pin(pin))))
        added = updated = 0
        with self._transaction("writing customers") as conn:
            for customer, pin_hash in prepared:
                exists = conn.execute("SELECT 1 FROM customers WHERE number = ?", (customer.number,)).fetchone()
                if exists and not update:
                    raise CustomerExists(customer.number)
                conn.execute(
                    """INSERT INTO customers (number, name, postcode, house_number, birth_date, pin_hash)
                       VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT (number) DO UPDATE SET
                           name = excluded.name, postcode = excluded.postcode,
                           house_number = excluded.house_number, birth_date = excluded.birth_date,
                           pin_hash = coalesce(excluded.pin_hash, customers.pin_hash)""",
                    (customer.number, customer.name, customer.postcode, customer.house_number,
                     customer.birth_date.isoformat() if customer.birth_date else None, pin_hash))
                conn.execute("DELETE FROM phones WHERE customer_number = ?", (customer.number,))
                conn.executemany("INSERT INTO phones (customer_number, position, e164) VALUES (?, ?, ?)",
                                 [(customer.number, i, e164) for i, e164 in enumerate(customer.phones)])
                if exists:
                    updated += 1
                else:
                    added += 1
        return added, updated

    def set_pin(self, number: str, pin: str | None) -> bool:
        """Store ``pin`` (4-8 digits, hashed) for the customer, or remove it with ``None``;
        ``False`` when there is no such customer."""
        number = fields.customer_number(number)
        pin_hash = None if pin is None else hash_pin(fields.pin(pin))
        with self._transaction("setting a PIN") as conn:
            changed = conn.execute("UPDATE customers SET pin_hash = ? WHERE number = ?", (pin_hash, number)).rowcount
        return changed == 1


def open_directory(identity: IdentitySection) -> Directory:
    """The directory ``identity.directory`` names: the SQLite file or the CRM over HTTP."""
    if identity.directory == "http":
        from voicebot.identity.crm import CrmDirectory

        return CrmDirectory.from_settings(identity)
    return SqliteDirectory(identity.database)
