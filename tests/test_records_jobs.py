"""Call records from the status callback to the database: the web process queues a job, the worker
writes the record (once, with a real RQ worker), its sweep writes calls no job wrote, it purges and
migrates at start, and `voicebot records` purges, forgets, counts and migrates by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner
from rq.job import Job, JobStatus
from twilio.request_validator import RequestValidator

from conftest import _free_port
from jobs import add
from voicebot.cli import main
from voicebot.handoff.queueing import handoff_queue
from voicebot.records import upkeep as upkeep_module
from voicebot.records.build import build_record, caller_hash
from voicebot.records.db import head, open_engine, revision
from voicebot.records.jobs import RecordNotWritten, configure, flow_timezone, write_call
from voicebot.records.queueing import enqueue_record, job_id, records_queue
from voicebot.records.schema import calls, turns
from voicebot.records.store import RecordStore
from voicebot.records.upkeep import ABANDONED_SECONDS, Upkeep
from voicebot.telephony.runtime import Runtime
from voicebot.telephony.store import PREFIX, CallStore
from voicebot.web import create_app

REPO = Path(__file__).resolve().parent.parent
PUBLIC = "https://bot.example.com"
TOKEN = "records-auth-token"
SALT = "records-salt-" + "3" * 32
CALLER = "+31612345678"


@pytest.fixture
def own(settings, tmp_path):
    """Settings with a records queue and database of the test's own, the Korean test flows and a salt."""
    settings = dataclasses.replace(
        settings, hash_salt=SALT, flows_dir=REPO / "tests" / "data", default_flow="ko_test",
        prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path / "cache"),
        handoff_queue=f"handoff-{uuid.uuid4().hex}",
        records=dataclasses.replace(settings.records, queue=f"records-{uuid.uuid4().hex}",
                                    url=f"sqlite:///{tmp_path / 'records.sqlite3'}"),
        telephony=dataclasses.replace(settings.telephony, auth_token=TOKEN, public_url=PUBLIC))
    configure(settings)
    yield settings
    configure(None)


@pytest.fixture
def connection(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def a_call(settings, **fields) -> str:
    """A finished call of the Korean test flow in the call store; its SID."""
    sid = "CA" + uuid.uuid4().hex
    state = {"flow": "ko_test", "language": "ko", "caller": CALLER, "started_at": "2026-11-23T10:00:00",
             "step": "done", "outcome": "hangup", "visited": ["greet", "done"],
             "transcript": [{"who": "caller", "step": "greet", "text": "예약", "confidence": 0.9,
                             "understood": {"result": "accepted", "intent": "booking", "confidence": 0.95}}]}
    record = {"flow": "ko_test", "language": "ko", "caller": CALLER, "state": state, "status": "completed",
              "duration": "30", "finished": True, **fields}
    CallStore(settings.redis_url, settings.call_ttl_seconds).update(sid, **record)
    return sid


def a_row(call_id: str, flow: str, started: dt.datetime, caller: str | None, turns: int = 0) -> dict:
    """The least a call record holds (``RecordStore.write``'s input), with ``turns`` empty turns."""
    return {"call": {"call_id": call_id, "flow": flow, "outcome": "completed", "started_at": started,
                     "verified": False, "turns": turns, "keypad_only": False, "caller_hash": caller},
            "steps": [], "turns": [{"kind": "no_input", "result": "no_input"} for _ in range(turns)]}


def stored(connection, sid: str) -> dict:
    return {k.decode(): json.loads(v) for k, v in connection.hgetall(PREFIX + sid).items()}


def written(settings) -> list[dict]:
    engine = open_engine(settings.records.url, migrate=False)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(sa.select(calls)).mappings()]
    finally:
        engine.dispose()


def sign(path: str, params: dict) -> str:
    return RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)


def status(client, sid: str, call_status: str = "completed"):
    params = {"CallSid": sid, "AccountSid": "AC1", "CallStatus": call_status, "CallDuration": "30"}
    return client.post("/twilio/status", data=params, headers={"X-Twilio-Signature": sign("/twilio/status", params)})


# -- the web process queues, the worker writes --------------------------------------------------------

def test_the_status_callback_queues_one_job_and_the_worker_writes_the_record_once(own, connection):
    from voicebot.worker import run_worker

    app = create_app(own, runtime=Runtime(own))
    client = app.test_client()
    sid = a_call(own, finished=False, status="in-progress")
    assert status(client, sid).status_code == 204
    job = Job.fetch(job_id(sid), connection=connection, serializer=records_queue(connection, "x").serializer)
    assert job.func_name == "voicebot.records.jobs.record_call" and job.args == [sid]
    assert job.origin == own.records.queue
    assert status(client, sid).status_code == 204                       # a repeated callback: ignored
    assert enqueue_record(connection, own.records.queue, sid, keep_seconds=60) is False   # and unique
    assert records_queue(connection, own.records.queue).count == 1
    before = stored(connection, sid)
    ttl = connection.ttl(PREFIX + sid)

    assert run_worker(own, burst=True) == 0

    assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value(refresh=True) == "written"
    (row,) = [row for row in written(own) if row["call_id"] == sid]
    assert row["flow"] == "ko_test" and row["outcome"] == "completed" and row["turns"] == 1
    assert row["caller_hash"] == caller_hash(CALLER, SALT)
    after = stored(connection, sid)
    assert after.pop("recorded") is True and after == before                # updated_at untouched
    assert 0 < connection.ttl(PREFIX + sid) <= ttl                          # and the TTL not renewed


def test_a_status_callback_redis_does_not_take_is_counted_and_logged(own, caplog):
    dead = dataclasses.replace(own, redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    runtime = Runtime(dead)
    client = create_app(dead, runtime=runtime).test_client()
    with caplog.at_level(logging.ERROR, logger="voicebot.web"):
        assert status(client, "CA-unqueued").status_code == 204
    assert runtime.metrics.registry.get_sample_value("voicebot_records_unqueued_total") == 1
    assert "call 'CA-unqueued': its call record job was not queued" in caplog.text


def test_the_job_writes_a_call_once_and_says_what_happened(own, connection):
    engine = open_engine(own.records.url)
    store = CallStore(own.redis_url, own.call_ttl_seconds)
    sid = a_call(own)
    assert write_call(own, engine, store, sid) == "written"
    assert write_call(own, engine, store, sid) == "already"              # marked recorded in Redis
    connection.hdel(PREFIX + sid, "recorded")
    assert write_call(own, engine, store, sid) == "already"              # and in the database once
    assert write_call(own, engine, store, "CA-expired") == "missing"
    assert RecordStore(engine).count() == 1
    engine.dispose()


def test_a_write_the_database_refuses_is_retried_without_the_callers_words(own, records_url, monkeypatch):
    from voicebot.records import jobs as jobs_module

    def broken(*args, **kwargs):
        record = build_record(*args, **kwargs)
        record["turns"][0].update(kind=None, text="mijn geheime woorden")      # NOT NULL: refused
        return record

    monkeypatch.setattr(jobs_module, "build_record", broken)
    engine = open_engine(records_url)
    sid = a_call(own)
    with pytest.raises(RecordNotWritten) as refused:
        write_call(own, engine, CallStore(own.redis_url, own.call_ttl_seconds), sid)
    assert f"call '{sid}':" in str(refused.value) and "turns" in str(refused.value)
    assert "geheime" not in str(refused.value) and "\n" not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert RecordStore(engine).count() == 0
    engine.dispose()


def test_the_flows_time_zone_is_read_from_its_file(own, tmp_path):
    assert flow_timezone(REPO / "flows", "energie") == "Europe/Amsterdam"
    (tmp_path / "other-name.yaml").write_text("flow: tokyo\n"
                                              "hours: {timezone: Asia/Tokyo, weekly: {mon: 09:00-17:00}}\n")
    (tmp_path / "broken.yaml").write_text("flow: [\n")
    assert flow_timezone(tmp_path, "tokyo") == "Asia/Tokyo"
    assert flow_timezone(tmp_path, "nowhere") is None
    assert flow_timezone(REPO / "tests" / "data", "ko_test") is None        # no hours: this machine's time


def test_the_worker_migrates_and_purges_at_start(own):
    from voicebot.worker import run_worker

    engine = open_engine(own.records.url)
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=own.records.retention_days + 1)
    RecordStore(engine).write(a_row("CA-old", "ko_test", long_ago, None))
    engine.dispose()

    assert run_worker(own, burst=True) == 0
    assert "CA-old" not in [row["call_id"] for row in written(own)]

    fresh = dataclasses.replace(own, records=dataclasses.replace(
        own.records, url=own.records.url.replace("records.sqlite3", "fresh/records.sqlite3")))
    assert run_worker(fresh, burst=True) == 0
    created = open_engine(fresh.records.url, migrate=False)
    assert revision(created) == head()
    created.dispose()


def test_a_records_database_that_does_not_answer_never_stops_handoffs(own, connection, caplog):
    from voicebot.worker import run_worker

    broken = dataclasses.replace(own, records=dataclasses.replace(
        own.records, url=f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/records"))
    job = handoff_queue(connection, broken.handoff_queue).enqueue(add, 2, 3)
    with caplog.at_level(logging.ERROR, logger="voicebot.records"):
        assert run_worker(broken, burst=True) == 0
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert "call records database postgresql+psycopg://postgres@127.0.0.1" in caplog.text


# -- the safety net ---------------------------------------------------------------------------------

def test_the_sweep_writes_ended_calls_no_job_wrote(own, connection, monkeypatch):
    done_long_ago = a_call(own)
    just_done = a_call(own)
    recorded = a_call(own, recorded=True)
    abandoned = a_call(own, finished=False)           # its status callback never came
    live = a_call(own, finished=False)
    connection.set(PREFIX + "CA-legacy-string", json.dumps({"finished": True}), ex=60)
    now = time.time()
    for sid, age in ((done_long_ago, 120), (just_done, 10), (recorded, 120), (abandoned, ABANDONED_SECONDS + 5),
                     (live, 600)):
        connection.hset(PREFIX + sid, "updated_at", json.dumps(now - age))
    monkeypatch.setattr(upkeep_module, "clock", lambda: now)
    upkeep = Upkeep(own, connection)

    mine = {done_long_ago, just_done, recorded, abandoned, live}
    assert [sid for sid in upkeep.unrecorded() if sid in mine] == [abandoned, done_long_ago]   # oldest first
    assert upkeep.prepare() is True
    engine = open_engine(own.records.url, migrate=False)
    upkeep.sweep(engine)
    engine.dispose()

    assert sorted(row["call_id"] for row in written(own) if row["call_id"] in mine) == sorted([abandoned,
                                                                                               done_long_ago])
    assert stored(connection, done_long_ago)["recorded"] is True
    assert "recorded" not in stored(connection, just_done)
    assert [sid for sid in upkeep.unrecorded() if sid in mine] == []


def test_the_sweep_is_bounded(own, connection, monkeypatch):
    sids = [a_call(own) for _ in range(3)]
    now = time.time() + 3600
    monkeypatch.setattr(upkeep_module, "clock", lambda: now)
    monkeypatch.setattr(upkeep_module, "SWEEP_MAX_WRITES", 2)
    upkeep = Upkeep(own, connection)
    upkeep.prepare()
    engine = open_engine(own.records.url, migrate=False)
    for sid in [sid for sid in upkeep.unrecorded() if sid not in sids]:
        connection.hset(PREFIX + sid, "recorded", "true")      # other tests' calls: out of the way
    assert upkeep.sweep(engine) == 2
    assert upkeep.sweep(engine) == 1
    engine.dispose()


# -- `voicebot records` ------------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli' / 'records.sqlite3'}"
    monkeypatch.setenv("VOICEBOT_RECORDS_URL", url)
    monkeypatch.setenv("VOICEBOT_HASH_SALT", SALT)

    def run(*args: str):
        return CliRunner().invoke(main, ["--config", str(REPO / "config.yaml"), "records", *args])
    run.url = url
    return run


def test_records_commands(cli):
    counted = cli("count")
    assert counted.exit_code == 1 and "does not exist or has no tables yet" in counted.output
    assert not Path(cli.url[len("sqlite:///"):]).exists()                # counting creates nothing

    migrated = cli("migrate")
    assert migrated.exit_code == 0 and f"schema at revision {head()}" in migrated.output

    engine = open_engine(cli.url, migrate=False)
    now = dt.datetime.now(dt.timezone.utc)
    for call_id, flow, days, caller in (("CA1", "energie", 1, CALLER), ("CA2", "energie", 100, "+31201234567"),
                                        ("CA3", "webshop", 2, CALLER), ("CA4", "webshop", 3, None)):
        RecordStore(engine).write(a_row(call_id, flow, now - dt.timedelta(days=days),
                                        caller and caller_hash(caller, SALT)))
    assert cli("count").output.strip() == "4"
    assert cli("count", "--flow", "webshop").output.strip() == "2"

    dry = cli("purge", "--dry-run")
    assert dry.exit_code == 0 and "energie: 1 call(s) older than 90 days would be deleted" in dry.output
    assert cli("count").output.strip() == "4"
    assert "energie: 1 call(s) older than 90 days deleted" in cli("purge").output
    assert "nothing is older than its retention" in cli("purge").output

    forgot = cli("forget", "06-12345678")                                   # as the caller wrote it down
    assert forgot.exit_code == 0 and "2 call(s) of that number deleted" in forgot.output
    assert "612345678" not in forgot.output.replace("06-12345678", "")
    with engine.connect() as conn:
        assert conn.execute(sa.select(calls.c.call_id)).scalars().all() == ["CA4"]
    assert cli("forget", "anonymous").exit_code == 2
    engine.dispose()


def test_forget_without_a_salt_uses_the_development_salt(cli, monkeypatch, tmp_path):
    from voicebot.telephony.devmode import dev_salt

    config = tmp_path / "config.yaml"
    config.write_text("flows: {dir: " + str(REPO / "flows") + "}\n")
    monkeypatch.delenv("VOICEBOT_HASH_SALT")
    salt = dev_salt(tmp_path)
    engine = open_engine(cli.url)
    RecordStore(engine).write(a_row("CA1", "energie", dt.datetime.now(dt.timezone.utc), caller_hash(CALLER, salt),
                                    turns=1))
    result = CliRunner().invoke(main, ["--config", str(config), "records", "forget", CALLER])
    assert result.exit_code == 0 and "1 call(s) of that number deleted" in result.output
    assert "local development salt" in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(turns)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one() == 0
    engine.dispose()
