"""Hand-built call records for the figures' tests, and a records database to write them to.

``records_database(request, tmp_path)`` gives an engine on a fresh, migrated database for one
test: SQLite in the test's folder, or (param ``postgresql``, with the session's ``postgres_url``
fixture) a database of its own on the test PostgreSQL server, dropped afterwards. ``two_days``
writes the calls whose figures the tests know by heart.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Iterator

import sqlalchemy as sa

from voicebot.records.db import open_engine
from voicebot.records.store import RecordStore

UTC = dt.timezone.utc


def records_database(request: Any, tmp_path: Any) -> Iterator[sa.Engine]:
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    server = sa.engine.make_url(request.getfixturevalue("postgres_url"))
    name = f"figures_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = open_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def turn(step: str | None, result: str, *, recognition_ms: int | None = None, response_ms: int | None = None,
         kind: str = "speech", text: str = "iets") -> dict[str, Any]:
    """One caller turn as ``build_record`` makes it."""
    return {"step": step, "kind": kind, "text": text if kind == "speech" else "", "digits": None,
            "asr_confidence": 0.9 if kind == "speech" else None, "intent": None, "intent_confidence": None,
            "result": result, "recognition_ms": recognition_ms, "response_ms": response_ms}


def record(call_id: str, start: str, *, flow: str = "energie", version: str = "v1", outcome: str = "completed",
           reason: str | None = None, end_step: str | None = None, visited: tuple[str, ...] = (),
           turns: tuple[dict[str, Any], ...] = (), feedback: int | None = None, comment: str | None = None,
           intent: str | None = None) -> dict[str, Any]:
    """A record as ``build_record`` returns it; ``start`` is UTC (ISO, without zone)."""
    started = dt.datetime.fromisoformat(start).replace(tzinfo=UTC)
    call = {
        "call_id": call_id, "flow": flow, "flow_version": version, "language": "nl",
        "started_at": started, "ended_at": started + dt.timedelta(minutes=2), "duration_seconds": 120,
        "outcome": outcome, "reason": reason, "end_step": end_step or (visited[-1] if visited else None),
        "intent": intent, "intent_confidence": None, "identity_level": None, "verified": False,
        "feedback": feedback, "feedback_comment": comment, "turns": len(turns), "keypad_only": False,
        "caller_hash": None,
    }
    return {"call": call, "steps": list(visited), "turns": list(turns)}


def write(engine: sa.Engine, *records: dict[str, Any]) -> None:
    store = RecordStore(engine)
    for one in records:
        assert store.write(one)


def two_days(engine: sa.Engine) -> None:
    """Two days of the energie flow (Monday 2 and Tuesday 3 November 2026, CET = UTC+1), with calls
    just outside the period, an unanswered call and a call of another flow."""
    write(
        engine,
        # 2 November local
        record("c11", "2026-11-01T23:00:00", visited=("start", "bye")),                 # 00:00 local
        record("c1", "2026-11-02T08:10:00", visited=("start", "menu", "meter", "bye"),
               turns=(turn("menu", "accepted"), turn("meter", "accepted")),
               feedback=5, intent="meterstand", comment="Prima geholpen"),
        record("c2", "2026-11-02T09:20:00", outcome="transferred", reason="explicit_request", end_step="menu",
               visited=("start", "menu"),
               turns=(turn("menu", "not_understood"), turn("menu", "no_input", kind="no_input"),
                      turn("menu", "agent"))),
        # 3 November local (23:30 UTC on the 2nd is 00:30 on the 3rd)
        record("c3", "2026-11-02T23:30:00", outcome="transferred", reason="low_confidence", end_step="menu",
               visited=("start", "menu"), turns=(turn("menu", "low_confidence"), turn("menu", "low_confidence"))),
        record("c4", "2026-11-03T10:00:00", outcome="hung_up", reason="caller_hangup",
               visited=("start", "menu", "meter"),
               turns=(turn("menu", "confirm"), turn("menu", "confirmed"), turn("meter", "no_input", kind="no_input"))),
        record("c5", "2026-11-03T10:05:00", version="v2", visited=("start", "menu", "meter", "bye"),
               turns=(turn("menu", "accepted"), turn("meter", "invalid_key", kind="keys"),
                      turn("meter", "accepted", kind="keys")),
               feedback=3, intent="meterstand", comment="<script>alert(1)</script> duurde lang"),
        record("c6", "2026-11-03T12:00:00", outcome="unanswered", reason="busy"),
        # c7 comes back to the menu: the funnel counts it there once
        record("c7", "2026-11-03T13:00:00", version="v2", visited=("start", "menu", "storing", "menu", "bye"),
               turns=(turn("menu", "accepted"),), feedback=4, intent="storing"),
        # outside the period or the flow
        record("c10", "2026-11-01T22:59:00", outcome="transferred", reason="flow", visited=("start",)),
        record("c9", "2026-11-03T23:00:00", outcome="transferred", reason="flow", visited=("start",)),
        record("c8", "2026-11-02T10:00:00", flow="webshop", visited=("welkom",), feedback=1,
               comment="andere flow"),
    )
