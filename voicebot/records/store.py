"""Writing, counting and deleting call records: each call once, whole or not at all.

``write`` stores one call (its row, the steps it visited, its turns) in one transaction. A call
is written once however often it is handed over: the status callback's job, its retries and the
worker's safety-net sweep may all try, on more than one worker at once. The second insert of a
call's row fails on its primary key, which here means "already there" (``write`` says False);
any other failure is raised, and the job's retry tries again.

Records are personal data, so they are deleted:

- ``purge``: calls older than their flow's retention (``records.flow_retention_days``, else
  ``records.retention_days``; counted from the start of the call), in batches of ``BATCH`` calls
  per transaction, so a large purge never holds the write lock for long while the worker writes;
- ``forget``: every call of one caller, found by ``caller_hash`` (the caller's number is never
  stored).

Deleting a call deletes its steps, turns and reviews with it (``ON DELETE CASCADE``; SQLite
connections turn foreign keys on, ``records.db``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from voicebot.config import RecordsSection
from voicebot.records.db import writing
from voicebot.records.schema import calls, steps, turns

BATCH = 500
"""Calls deleted per transaction."""


class RecordStore:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def write(self, record: dict[str, Any], now: dt.datetime | None = None) -> bool:
        """Store ``records.build.build_record``'s record in one transaction; False when the call is
        there already (a job run twice, or two workers at once, write it once)."""
        call = {**record["call"], "recorded_at": now or dt.datetime.now(dt.timezone.utc)}
        for key in ("started_at", "ended_at", "recorded_at"):
            call[key] = _utc(call.get(key))
        call_id = call["call_id"]
        try:
            with writing(self.engine) as conn:
                conn.execute(calls.insert(), [call])
                if record["steps"]:
                    conn.execute(steps.insert(), [{"call_id": call_id, "seq": i, "step": s}
                                                  for i, s in enumerate(record["steps"])])
                if record["turns"]:
                    conn.execute(turns.insert(), [{**t, "call_id": call_id, "seq": i}
                                                  for i, t in enumerate(record["turns"], start=1)])
        except sa.exc.IntegrityError:
            if self.exists(call_id):
                return False
            raise
        return True

    def exists(self, call_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(calls.c.call_id).where(calls.c.call_id == call_id)).first() is not None

    def count(self, flow: str | None = None) -> int:
        """Calls stored (of ``flow``, or of every flow)."""
        query = sa.select(sa.func.count()).select_from(calls)
        if flow is not None:
            query = query.where(calls.c.flow == flow)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def purge(self, records: RecordsSection, now: dt.datetime | None = None, *,
              dry_run: bool = False) -> dict[str, int]:
        """Delete the calls older than their flow's retention; calls deleted (or, with ``dry_run``,
        that would be) by flow. Flows without such calls are left out."""
        now = _utc(now) or dt.datetime.now(dt.timezone.utc)
        named = sorted(records.flow_retention_days)
        expired: dict[str, int] = {}
        with self.engine.connect() as conn:
            for flow in named:
                found = conn.execute(sa.select(sa.func.count()).select_from(calls).where(
                    calls.c.flow == flow, calls.c.started_at < _cutoff(now, records.retention_for(flow)))).scalar_one()
                if found:
                    expired[flow] = int(found)
            others = conn.execute(sa.select(calls.c.flow, sa.func.count()).where(
                calls.c.flow.not_in(named), calls.c.started_at < _cutoff(now, records.retention_days),
            ).group_by(calls.c.flow)).all()
        expired.update({flow: int(found) for flow, found in others})
        if dry_run:
            return dict(sorted(expired.items()))
        return {flow: self._delete(calls.c.flow == flow,
                                   calls.c.started_at < _cutoff(now, records.retention_for(flow)))
                for flow in sorted(expired)}

    def forget(self, caller_hash: str) -> int:
        """Delete every call of the caller whose number hashes to ``caller_hash``; how many."""
        if not caller_hash:
            return 0
        return self._delete(calls.c.caller_hash == caller_hash)

    def _delete(self, *where: Any) -> int:
        """Delete the calls matching ``where``, ``BATCH`` per transaction; how many."""
        deleted = 0
        while True:
            batch = sa.select(calls.c.call_id).where(*where).limit(BATCH)
            with writing(self.engine) as conn:
                gone = conn.execute(sa.delete(calls).where(calls.c.call_id.in_(batch))).rowcount
            deleted += gone
            if gone < BATCH:
                return deleted


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """An aware time in UTC (SQLite keeps times as text without their zone: they must all be UTC)."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.timezone.utc)


def _cutoff(now: dt.datetime, days: int) -> dt.datetime:
    return now - dt.timedelta(days=days)
