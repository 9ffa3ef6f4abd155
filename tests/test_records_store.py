"""The call records database on SQLite and on a real PostgreSQL: migrations equal to the schema,
each call written once (also by writers racing), purge by each flow's retention, forget a caller,
and a deleted call's steps, turns and reviews deleted with it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from voicebot.config import RecordsSection
from voicebot.records import store as store_module
from voicebot.records.db import VERSION_TABLE, head, is_migrated, migrate, open_engine, revision
from voicebot.records.schema import calls, metadata, reviews, steps, turns
from voicebot.records.store import RecordStore

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def a_record(call_id: str, *, flow: str = "energie", days_ago: float = 1, caller: str | None = "hash-a",
             n_turns: int = 2) -> dict:
    started = NOW - dt.timedelta(days=days_ago)
    call = {"call_id": call_id, "flow": flow, "flow_version": "0123456789ab", "language": "nl",
            "started_at": started, "ended_at": started + dt.timedelta(seconds=90), "duration_seconds": 90,
            "outcome": "completed", "reason": "completed", "end_step": "goodbye", "intent": "meterstand_doorgeven",
            "intent_confidence": 0.9, "identity_level": "customer", "verified": True, "feedback": 5,
            "feedback_comment": None, "turns": n_turns, "keypad_only": False, "caller_hash": caller}
    turn = {"step": "intent", "kind": "speech", "text": "meterstand", "digits": None, "asr_confidence": 0.8,
            "intent": "meterstand_doorgeven", "intent_confidence": 0.9, "result": "not_understood",
            "recognition_ms": 150, "response_ms": 400}
    return {"call": call, "steps": ["welcome", "intent", "goodbye"], "turns": [dict(turn) for _ in range(n_turns)]}


@pytest.fixture
def engine(records_url):
    engine = open_engine(records_url)
    yield engine
    engine.dispose()


def rows(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def review(engine, call_id: str, seq: int = 1) -> None:
    with engine.begin() as conn:
        conn.execute(reviews.insert(), [{"call_id": call_id, "turn_seq": seq, "flow": "energie", "text": "meterstand",
                                         "label": "noise", "intent": None, "reviewer": "ops",
                                         "reviewed_at": NOW}])


# -- schema and migrations --------------------------------------------------------------------------

def test_the_migrated_database_is_the_schema(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []
    assert revision(engine) == head() == "0001"


def test_migrating_again_changes_nothing(engine):
    migrate(engine)
    open_engine(str(engine.url.render_as_string(hide_password=False))).dispose()
    assert revision(engine) == head()
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one() == 1


def test_without_migrate_nothing_is_created(records_url):
    engine = open_engine(records_url, migrate=False)
    assert is_migrated(engine) is False
    if records_url.startswith("sqlite"):
        with pytest.raises(sa.exc.OperationalError):
            revision(engine)
        assert not Path(records_url[len("sqlite:///"):]).exists()
    else:
        assert revision(engine) is None
        assert sa.inspect(engine).get_table_names() == []
    open_engine(records_url).dispose()
    assert is_migrated(engine) is True
    engine.dispose()


def test_workers_starting_together_migrate_one_after_the_other(records_url):
    engines, errors = [], []

    def start():
        try:
            engines.append(open_engine(records_url))
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert revision(engines[0]) == head()
    with engines[0].connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one() == 1
    for engine in engines:
        engine.dispose()


def test_a_postgres_url_without_a_driver_uses_psycopg(postgres_url):
    engine = open_engine(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    assert engine.dialect.driver == "psycopg"
    assert revision(engine) == head()
    engine.dispose()


def test_other_databases_are_refused():
    with pytest.raises(ValueError, match="sqlite:/// or postgresql://"):
        open_engine("mysql://root@localhost/records")


def test_the_sqlite_file_is_private_and_every_connection_enforces_foreign_keys(tmp_path):
    path = tmp_path / "new" / "records.sqlite3"
    engine = open_engine(f"sqlite:///{path}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    reader = open_engine(f"sqlite:///{path}", migrate=False)
    for each in (engine, reader):
        with each.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    engine.dispose()
    reader.dispose()


# -- writing ------------------------------------------------------------------------------------------

def test_a_call_is_written_whole_and_once(engine):
    store = RecordStore(engine)
    assert store.write(a_record("CA1"), now=NOW) is True
    assert store.write(a_record("CA1"), now=NOW) is False
    assert (rows(engine, calls), rows(engine, steps), rows(engine, turns)) == (1, 3, 2)
    with engine.connect() as conn:
        row = conn.execute(sa.select(calls).where(calls.c.call_id == "CA1")).mappings().one()
        seqs = conn.execute(sa.select(turns.c.seq).order_by(turns.c.seq)).scalars().all()
        order = conn.execute(sa.select(steps.c.step).order_by(steps.c.seq)).scalars().all()
    assert row["flow"] == "energie" and row["verified"] is True and row["feedback"] == 5
    started = row["started_at"] if row["started_at"].tzinfo else row["started_at"].replace(tzinfo=UTC)
    assert started == NOW - dt.timedelta(days=1)
    assert seqs == [1, 2] and order == ["welcome", "intent", "goodbye"]


def test_times_in_another_zone_are_stored_as_the_same_instant(engine):
    record = a_record("CA1")
    amsterdam = dt.timezone(dt.timedelta(hours=1))
    record["call"]["started_at"] = dt.datetime(2026, 11, 23, 10, 3, tzinfo=amsterdam)
    RecordStore(engine).write(record, now=NOW)
    with engine.connect() as conn:
        started = conn.execute(sa.select(calls.c.started_at)).scalar_one()
    assert (started if started.tzinfo else started.replace(tzinfo=UTC)) == dt.datetime(2026, 11, 23, 9, 3, tzinfo=UTC)


def test_a_call_that_cannot_be_written_whole_leaves_nothing(engine):
    record = a_record("CA1")
    record["turns"][1]["kind"] = None           # NOT NULL: the second turn fails after the call's row
    with pytest.raises(sa.exc.IntegrityError):
        RecordStore(engine).write(record, now=NOW)
    assert (rows(engine, calls), rows(engine, steps), rows(engine, turns)) == (0, 0, 0)


def test_writers_racing_on_one_call_write_it_once(records_url, engine):
    results, errors = [], []
    barrier = threading.Barrier(4)

    def write():
        own = open_engine(records_url, migrate=False)
        try:
            barrier.wait(30)
            results.append(RecordStore(own).write(a_record("CA1", n_turns=20), now=NOW))
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    assert (rows(engine, calls), rows(engine, turns)) == (1, 20)


def test_count(engine):
    store = RecordStore(engine)
    for i, flow in enumerate(["energie", "energie", "webshop"]):
        store.write(a_record(f"CA{i}", flow=flow), now=NOW)
    assert (store.count(), store.count("energie"), store.count("webshop"), store.count("none")) == (3, 2, 1, 0)


# -- deleting -----------------------------------------------------------------------------------------

def test_purge_keeps_each_flow_for_its_own_retention(engine):
    store = RecordStore(engine)
    ages = {"energie": [10, 29, 31, 100], "webshop": [10, 89, 91], "ko_test": [100]}
    for flow, days in ages.items():
        for day in days:
            store.write(a_record(f"{flow}-{day}", flow=flow, days_ago=day), now=NOW)
    review(engine, "energie-31")
    section = RecordsSection(retention_days=90, flow_retention_days={"energie": 30})

    assert store.purge(section, NOW, dry_run=True) == {"energie": 2, "ko_test": 1, "webshop": 1}
    assert store.count() == 8

    assert store.purge(section, NOW) == {"energie": 2, "ko_test": 1, "webshop": 1}
    with engine.connect() as conn:
        kept = sorted(conn.execute(sa.select(calls.c.call_id)).scalars())
        orphans = conn.execute(sa.select(sa.func.count()).select_from(turns).where(
            turns.c.call_id.not_in(sa.select(calls.c.call_id)))).scalar_one()
    assert kept == ["energie-10", "energie-29", "webshop-10", "webshop-89"]
    assert (rows(engine, steps), rows(engine, turns), rows(engine, reviews), orphans) == (12, 8, 0, 0)
    assert store.purge(section, NOW) == {}


def test_purge_works_in_batches(engine, monkeypatch):
    monkeypatch.setattr(store_module, "BATCH", 2)
    store = RecordStore(engine)
    for i in range(5):
        store.write(a_record(f"CA{i}", days_ago=100), now=NOW)
    store.write(a_record("CA-new", days_ago=1), now=NOW)
    assert store.purge(RecordsSection(), NOW) == {"energie": 5}
    assert store.count() == 1


def test_forget_deletes_one_callers_calls_with_their_turns_and_reviews(engine):
    store = RecordStore(engine)
    store.write(a_record("CA1", caller="hash-a"), now=NOW)
    store.write(a_record("CA2", caller="hash-a", days_ago=40), now=NOW)
    store.write(a_record("CA3", caller="hash-b"), now=NOW)
    store.write(a_record("CA4", caller=None), now=NOW)
    review(engine, "CA1", 2)
    review(engine, "CA3", 1)

    assert store.forget("hash-a") == 2
    assert store.forget("hash-a") == 0
    assert store.forget("") == 0
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(calls.c.call_id)).scalars()) == ["CA3", "CA4"]
        assert conn.execute(sa.select(reviews.c.call_id)).scalars().all() == ["CA3"]
        assert sorted(set(conn.execute(sa.select(turns.c.call_id)).scalars())) == ["CA3", "CA4"]
        assert sorted(set(conn.execute(sa.select(steps.c.call_id)).scalars())) == ["CA3", "CA4"]


def test_the_default_retention_applies_to_flows_not_named(engine):
    store = RecordStore(engine)
    store.write(a_record("old", flow="other", days_ago=8), now=NOW)
    store.write(a_record("new", flow="other", days_ago=6), now=NOW)
    section = dataclasses.replace(RecordsSection(), retention_days=7, flow_retention_days={"energie": 365})
    assert store.purge(section, NOW) == {"other": 1}
