"""Call records with misunderstood sentences, written as the worker writes them (``build_record`` and
``RecordStore.write``), for the review queue's and the operations pages' tests."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import sqlalchemy as sa

from voicebot.records.build import build_record
from voicebot.records.db import open_engine
from voicebot.records.store import RecordStore

SALT = "review-test-salt"


def records_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'records.sqlite3'}"


def a_call(flow: str, turns: list[tuple], *, started: dt.datetime | None = None, call_id: str | None = None,
           language: str = "nl") -> dict:
    """A finished call of ``flow`` whose caller said ``turns``: ``(step, text, result, intent, confidence)``."""
    started = started or dt.datetime(2026, 3, 2, 10, 15)
    transcript = []
    for step, text, result, intent, confidence in turns:
        transcript.append({"who": "bot", "step": step, "text": "Waarmee kan ik u helpen?"})
        transcript.append({"who": "caller", "step": step, "text": text, "confidence": 0.9,
                           "understood": {"result": result, "intent": intent, "confidence": confidence}})
    state = {"flow": flow, "language": language, "started_at": started.isoformat(), "step": "einde",
             "outcome": "hangup", "reason": "completed", "visited": ["welkom", "menu", "einde"],
             "transcript": transcript}
    stored = {"state": state, "flow": flow, "flow_version": "0123456789ab", "language": language,
              "caller": "+31612345678", "status": "completed",
              "updated_at": started.replace(tzinfo=dt.timezone.utc).timestamp() + 60}
    return build_record(call_id or "CA" + secrets.token_hex(16), stored, SALT, timezone="UTC")


def write_calls(url: str, records: list[dict]) -> sa.Engine:
    engine = open_engine(url)
    store = RecordStore(engine)
    for record in records:
        assert store.write(record)
    return engine
