"""The worker's side of call records: the RQ job that writes one finished call, and what it needs.

``record_call(call_sid)`` runs in `voicebot worker` (a forked work-horse per job). It reads the
call's record from the call store (Redis), turns it into rows (``records.build``) and writes them
(``records.store``), then marks the Redis record ``recorded`` so the worker's sweep
(``records.upkeep``) leaves it alone. Writing is idempotent: a call already in the database is not
written again, so a retry, a second job or the sweep racing the job do no harm.

What the job needs beyond the call SID comes from the worker's settings (``configure``, called by
the worker before it forks; a worker started some other way reads config.yaml and the
environment as `voicebot` does):

- the database (``records.url``), opened per job: an engine and its connections must not cross
  a fork, and a job is one;
- the salt that keys ``caller_hash``: ``VOICEBOT_HASH_SALT``, or, where it is not set (a
  development machine: `make run` sets it from the same file), the local salt in
  ``.run/hash-salt`` that a development server uses, so ``voicebot records forget`` on the same
  machine finds the calls;
- the flow's time zone (its ``hours.timezone``; no ``hours``: this machine's), which the engine's
  ``started_at`` is written in. It is read from the flow files' YAML at each job (no training, no
  validation), so a flow changed or added while the worker runs is read as it is now.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import sqlalchemy as sa

from voicebot.config import Settings, load_settings
from voicebot.flow_files import flow_file, flow_header
from voicebot.records.build import build_record
from voicebot.records.db import described, open_engine
from voicebot.records.store import RecordStore
from voicebot.telephony.logsafe import esc
from voicebot.telephony.store import CallStore

log = logging.getLogger("voicebot.records")

_settings: Settings | None = None


class RecordNotWritten(Exception):
    """The database refused a call's rows; the message is the error's first line only (a
    PostgreSQL error goes on with the failing row, which RQ would keep and log with the job)."""


def configure(settings: Settings) -> None:
    """The settings record jobs of this process (and the work-horses it forks) use."""
    global _settings
    _settings = settings


def current_settings() -> Settings:
    if _settings is None:
        configure(load_settings())
    assert _settings is not None
    return _settings


def record_call(call_sid: str) -> str:
    """The RQ job: write the finished call's record; what happened (``written``, ``already``
    when it was there, ``missing`` when Redis no longer holds the call)."""
    settings = current_settings()
    try:
        engine = open_engine(settings.records.url, migrate=False)
    except (sa.exc.SQLAlchemyError, ValueError) as exc:
        raise RecordNotWritten(f"call {esc(call_sid)}: {described(exc)}") from None
    try:
        return write_call(settings, engine, CallStore(settings.redis_url, settings.call_ttl_seconds), call_sid)
    finally:
        engine.dispose()


def write_call(settings: Settings, engine: sa.Engine, store: CallStore, call_sid: str,
               now: dt.datetime | None = None) -> str:
    """Write one call from the call store to the database and mark it recorded (see ``record_call``).

    Raises ``RecordNotWritten`` when the database fails, so the job is retried (and the sweep tries
    again later)."""
    stored = store.get(call_sid)
    if not stored:
        log.warning("call %s: no record in the call store (expired?); nothing to write", esc(call_sid))
        return "missing"
    if stored.get("recorded"):
        return "already"
    flow = str(stored.get("flow") or (stored.get("state") or {}).get("flow") or "")
    record = build_record(call_sid, stored, hash_salt(settings),
                          timezone=flow_timezone(settings.flows_dir, flow), now=now)
    try:
        written = RecordStore(engine).write(record)
    except sa.exc.SQLAlchemyError as exc:
        raise RecordNotWritten(f"call {esc(call_sid)}: {described(exc)}") from None
    store.mark(call_sid, recorded=True)
    if written:
        log.info("call %s: record written (%s, %d turns)", esc(call_sid), record["call"]["outcome"],
                 record["call"]["turns"])
    return "written" if written else "already"


def hash_salt(settings: Settings) -> str:
    """``VOICEBOT_HASH_SALT``, else the development salt in ``.run/hash-salt`` (made when missing)."""
    if settings.hash_salt:
        return settings.hash_salt
    from voicebot.telephony.devmode import dev_salt

    return dev_salt(settings.root)


def flow_timezone(flows_dir: Path, flow_id: str) -> str | None:
    """The ``hours.timezone`` of the flow file whose ``flow:`` is ``flow_id``; None when it has none
    (or no file is that flow): then the engine wrote local times of this machine."""
    from voicebot.flow.schema import Hours

    found = flow_file(flows_dir, flow_id) if flow_id else None
    hours = flow_header(found).get("hours") if found else None
    if not isinstance(hours, dict):
        return None
    zone = hours.get("timezone", Hours.model_fields["timezone"].default)
    return zone if isinstance(zone, str) and zone else None
