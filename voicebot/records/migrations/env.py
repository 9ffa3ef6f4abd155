"""Alembic's environment for the call records: run from ``records.db.migrate`` only.

There is no ``alembic.ini``: ``migrate`` hands over a connection already inside its write
transaction (``config.attributes["connection"]``), so the version check and every migration run
under the lock that keeps two workers from migrating at once, and commit together.

A new migration is a new file in ``versions/`` written by hand (``down_revision`` the previous
one); the test that compares the migrated database with ``records.schema`` says when the two
differ.
"""

from __future__ import annotations

from alembic import context

from voicebot.records.db import VERSION_TABLE
from voicebot.records.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the records migrations run through voicebot.records.db.migrate (or `voicebot records migrate`)")
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
