"""What every SQLite file of voicebot does alike: the customer directory, the handoff outbox and
the agents' accounts each hold personal data or secrets, so each is created readable by its owner
only, and each writes in explicit ``BEGIN IMMEDIATE`` transactions (autocommit connections), so a
writer takes the lock at once instead of failing half-way when another process writes.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def create_private(path: Path) -> None:
    """Create the file (and its folders) readable by this user only, if it does not exist yet;
    SQLite gives its WAL and shared-memory files the same mode."""
    path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on an autocommit connection: all of it or nothing. A COMMIT that fails
    (the database busy past its timeout) is rolled back too, so the connection is never left inside
    a transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
