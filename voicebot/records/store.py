"""Writing call records: each call once, whole or not at all."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from voicebot.records.schema import calls, steps, turns


class RecordStore:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def write(self, record: dict[str, Any], now: dt.datetime | None = None) -> bool:
        """Store ``records.build.build_record``'s record in one transaction; False when the call is
        there already (a job run twice writes it once)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        call = {**record["call"], "recorded_at": now}
        call_id = call["call_id"]
        with self.engine.begin() as conn:
            if conn.execute(sa.select(calls.c.call_id).where(calls.c.call_id == call_id)).first():
                return False
            conn.execute(calls.insert(), [call])
            if record["steps"]:
                conn.execute(steps.insert(), [{"call_id": call_id, "seq": i, "step": s}
                                              for i, s in enumerate(record["steps"])])
            if record["turns"]:
                conn.execute(turns.insert(), [{**t, "call_id": call_id, "seq": i}
                                              for i, t in enumerate(record["turns"], start=1)])
        return True
