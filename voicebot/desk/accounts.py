"""Agents' accounts for the desk: one SQLite file (``desk.accounts``), passwords only as scrypt hashes.

An account is a name, a role and a password hash (``identity.pins``' scrypt format: a per-account
random salt, the cost parameters stored with the hash). The role is ``agent`` (the desk at /agent)
or ``operator`` (the desk too, and the operations pages at /ops: call figures and the review of
what callers said); files made before roles existed get the column on first use, every account in
them an agent. The role is read on every request, so a changed role counts at once. Each account
also has an ``epoch``, a number
carried in the agent's signed session cookie: changing the password, removing the account or
logging out raises it, and every cookie that carries an older one stops working at once, on every
browser, although the cookie itself cannot be taken back.

Wrong passwords are counted per account name (whether or not such an account exists, so a locked
name tells a guesser nothing) and per client address, within ``desk.lockout_minutes``; once either
count reaches its limit, log-ins for that name or from that address are refused without even
checking the password, until the window has passed. An unknown name costs as much time as a wrong
password, so timing does not tell which names exist.

The file is small and written rarely (log-ins, `voicebot agents`): every operation opens its own
connection (web threads, the CLI and other processes share the file safely in WAL mode) with a
bounded busy timeout; a check runs in one write transaction so two guesses at once cannot both slip
under the limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voicebot.identity.pins import hash_pin, verify_pin, waste_time_like_a_check
from voicebot.sqlite_files import FILE_MODE, immediate

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024            # characters; scrypt runs over the whole of it
BUSY_TIMEOUT_SECONDS = 2.0
MAX_FAILURE_ROWS = 10000       # the failures table never holds more than this (oldest dropped)
ROLES = ("agent", "operator")
"""agent: the desk; operator: the desk and the operations pages (/ops)."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agents (
           name          TEXT PRIMARY KEY,
           password_hash TEXT NOT NULL,
           epoch         INTEGER NOT NULL DEFAULT 1,
           created_at    REAL NOT NULL,
           role          TEXT NOT NULL DEFAULT 'agent'
       )""",
    """CREATE TABLE IF NOT EXISTS failures (
           kind TEXT NOT NULL,      -- 'name' or 'address'
           key  TEXT NOT NULL,
           at   REAL NOT NULL
       )""",
    "CREATE INDEX IF NOT EXISTS failures_by_key ON failures (kind, key, at)",
)


def _add_roles(conn: sqlite3.Connection) -> None:
    """A file from before roles: the column added, every account in it an agent."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(agents)")}
    if "role" not in columns:
        with immediate(conn):
            columns = {row[1] for row in conn.execute("PRAGMA table_info(agents)")}
            if "role" not in columns:        # another process may have added it meanwhile
                conn.execute("ALTER TABLE agents ADD COLUMN role TEXT NOT NULL DEFAULT 'agent'")


class AccountError(ValueError):
    """A name or password that cannot be used, or an account that is (or is not) there; the message says which."""


@dataclass(frozen=True)
class LoginResult:
    """``agent`` and ``epoch`` when the log-in succeeded; ``locked_for`` seconds when refused by the lockout."""

    agent: str | None = None
    epoch: int = 0
    locked_for: float = 0.0

    @property
    def ok(self) -> bool:
        return self.agent is not None


@dataclass(frozen=True)
class Account:
    """What a request needs to know about a logged-in account: its session epoch and its role."""

    name: str
    epoch: int
    role: str

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def normal_name(name: str) -> str:
    """An account name as stored: trimmed and lower case; AccountError when it is not one."""
    cleaned = (name or "").strip().lower()
    if not NAME.match(cleaned):
        raise AccountError("an agent name is 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
    return cleaned


def check_role(role: str) -> str:
    cleaned = (role or "").strip().lower()
    if cleaned not in ROLES:
        raise AccountError(f"a role is one of: {', '.join(ROLES)} (not {role!r})")
    return cleaned


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")
    return password


class Accounts:
    """The accounts file. ``attempts`` and ``address_attempts`` wrong passwords within ``window_seconds``
    lock a name or a client address for the rest of that window."""

    def __init__(self, path: Path, *, attempts: int = 5, address_attempts: int = 20, window_seconds: float = 900.0,
                 clock=time.time):
        self.path = Path(path)
        self.attempts = attempts
        self.address_attempts = address_attempts
        self.window = float(window_seconds)
        self._clock = clock
        self._ready = False            # the schema is made once per instance, not on every request

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
                _add_roles(conn)
                self._ready = True
            yield conn
        finally:
            conn.close()

    # -- the accounts ------------------------------------------------------------------------------

    def add(self, name: str, password: str, role: str = "agent") -> str:
        name = normal_name(name)
        role = check_role(role)
        digest = hash_pin(check_password(password))
        with self._connect() as conn:
            try:
                conn.execute("INSERT INTO agents (name, password_hash, created_at, role) VALUES (?, ?, ?, ?)",
                             (name, digest, self._clock(), role))
            except sqlite3.IntegrityError:
                raise AccountError(f"agent {name} exists already (`voicebot agents passwd {name}` changes the "
                                   "password)") from None
        return name

    def set_password(self, name: str, password: str) -> None:
        """A new password; every session of the agent ends."""
        name = normal_name(name)
        digest = hash_pin(check_password(password))
        with self._connect() as conn:
            changed = conn.execute("UPDATE agents SET password_hash = ?, epoch = epoch + 1 WHERE name = ?",
                                   (digest, name)).rowcount
            conn.execute("DELETE FROM failures WHERE kind = 'name' AND key = ?", (name,))
        if not changed:
            raise AccountError(f"no agent {name}")

    def set_role(self, name: str, role: str) -> None:
        """Make NAME an agent or an operator; their next request counts with the new role."""
        name = normal_name(name)
        role = check_role(role)
        with self._connect() as conn:
            changed = conn.execute("UPDATE agents SET role = ? WHERE name = ?", (role, name)).rowcount
        if not changed:
            raise AccountError(f"no agent {name}")

    def remove(self, name: str) -> bool:
        with self._connect() as conn:
            return conn.execute("DELETE FROM agents WHERE name = ?", (normal_name(name),)).rowcount > 0

    def names(self) -> list[str]:
        return [name for name, _ in self.roles()]

    def roles(self) -> list[tuple[str, str]]:
        """Every account's name and role, by name."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            return [(row[0], row[1]) for row in conn.execute("SELECT name, role FROM agents ORDER BY name")]

    def account(self, name: str) -> Account | None:
        """The account's epoch and role, or None when there is no such account."""
        with self._connect() as conn:
            row = conn.execute("SELECT epoch, role FROM agents WHERE name = ?", (name,)).fetchone()
        return None if row is None else Account(name, int(row[0]), str(row[1]))

    def epoch(self, name: str) -> int | None:
        """The account's session epoch, or None when there is no such account."""
        found = self.account(name)
        return None if found is None else found.epoch

    def end_sessions(self, name: str) -> None:
        """Every cookie this agent holds stops working (log-out)."""
        with self._connect() as conn:
            conn.execute("UPDATE agents SET epoch = epoch + 1 WHERE name = ?", (name,))

    # -- logging in --------------------------------------------------------------------------------

    def log_in(self, name: str, password: str, address: str) -> LoginResult:
        """Check a log-in from client ``address``; counts it when wrong. Never raises for bad input."""
        now = self._clock()
        try:
            name = normal_name(name)
        except AccountError:
            name = (name or "").strip().lower()[:64]
        password = (password or "")[:MAX_PASSWORD]
        address = (address or "unknown")[:64]
        with self._connect() as conn, immediate(conn):
            return self._log_in(conn, name, password, address, now)

    def _log_in(self, conn: sqlite3.Connection, name: str, password: str, address: str, now: float) -> LoginResult:
        since = now - self.window
        conn.execute("DELETE FROM failures WHERE at < ?", (since,))
        locked = max(self._locked_for(conn, "name", name, self.attempts, now),
                     self._locked_for(conn, "address", address, self.address_attempts, now))
        if locked:
            return LoginResult(locked_for=locked)
        row = conn.execute("SELECT password_hash, epoch FROM agents WHERE name = ?", (name,)).fetchone()
        if row is not None and verify_pin(password, row[0]):
            conn.execute("DELETE FROM failures WHERE kind = 'name' AND key = ?", (name,))
            return LoginResult(agent=name, epoch=int(row[1]))
        if row is None:
            waste_time_like_a_check(password)
        conn.executemany("INSERT INTO failures (kind, key, at) VALUES (?, ?, ?)",
                         [("name", name, now), ("address", address, now)])
        conn.execute("DELETE FROM failures WHERE rowid <= (SELECT MAX(rowid) FROM failures) - ?", (MAX_FAILURE_ROWS,))
        locked = max(self._locked_for(conn, "name", name, self.attempts, now),
                     self._locked_for(conn, "address", address, self.address_attempts, now))
        return LoginResult(locked_for=locked)

    def _locked_for(self, conn: sqlite3.Connection, kind: str, key: str, limit: int, now: float) -> float:
        """Seconds ``key`` stays locked: until the window after its last failure, once it has ``limit``."""
        count, last = conn.execute("SELECT COUNT(*), MAX(at) FROM failures WHERE kind = ? AND key = ? AND at >= ?",
                                   (kind, key, now - self.window)).fetchone()
        if count < limit or last is None:
            return 0.0
        return max(1.0, last + self.window - now)
