"""A call record end to end: a real `voicebot serve` on the energie flow, `voicebot call`'s Twilio
emulator placing the README's meter reading by keys (verified by date of birth), the status
callback queueing the record job, and a real RQ worker (`voicebot worker --burst`) writing it.

The record says what happened (completed, verified, the steps, every key turn) and holds no
secret: not the date of birth keyed, not the caller's number.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import redis
import sqlalchemy as sa

from demo_customers import DEMO_CSV
from servers import ACCOUNT, REPO, SALT, TOKEN, Server
from test_energie_call import always_open_flows
from voicebot.emulator import place_call
from voicebot.emulator.scenario import load_scenario
from voicebot.records.build import caller_hash
from voicebot.records.db import open_engine
from voicebot.records.queueing import job_id, records_queue
from voicebot.records.schema import calls, steps, turns
from voicebot.telephony.store import PREFIX

METER_CALL = REPO / "flows" / "calls" / "meterstand_toetsen.yaml"
QUEUE = "records-live"


@pytest.fixture(scope="module")
def system(tmp_path_factory, redis_url):
    tmp = tmp_path_factory.mktemp("records-live")
    database = tmp / "customers.sqlite3"
    records = f"sqlite:///{tmp / 'records' / 'records.sqlite3'}"
    settings = f"identity: {{database: {database}}}\nrecords: {{queue: {QUEUE}}}\n"
    config = tmp / "import.yaml"
    config.write_text(settings)
    imported = subprocess.run([sys.executable, "-m", "voicebot", "customers", "import", str(DEMO_CSV)],
                              env={**os.environ, "VOICEBOT_CONFIG": str(config)}, capture_output=True, text=True,
                              timeout=120)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    server = Server(tmp, redis_url, "records", flows=always_open_flows(tmp / "flows"), default_flow="energie",
                    settings=settings, environ={"VOICEBOT_RECORDS_URL": records})
    yield server, records
    server.stop()


def test_a_verified_call_is_recorded_by_the_worker_without_its_secrets(system, redis_url):
    server, records = system
    scenario = load_scenario(METER_CALL)
    expect = scenario.pop("expect")
    report = place_call(server.url, scenario.pop("turns"), auth_token=TOKEN, account_sid=ACCOUNT, expect=expect,
                        redis_url=redis_url, **scenario)
    assert report.passed, (report.failures, report.events, server.output()[-3000:])
    sid = report.call_sid
    connection = redis.Redis.from_url(redis_url)
    queue = records_queue(connection, QUEUE)
    assert job_id(sid) in queue.job_ids                      # queued at the status callback, by the web process
    assert not os.path.exists(records[len("sqlite:///"):])   # which never opened the database

    worker = subprocess.run([sys.executable, "-m", "voicebot", "worker", "--burst"], timeout=120,
                            env={**os.environ, "VOICEBOT_CONFIG": str(server.config), "REDIS_URL": redis_url,
                                 "VOICEBOT_HASH_SALT": SALT, "VOICEBOT_RECORDS_URL": records},
                            capture_output=True, text=True)
    assert worker.returncode == 0, worker.stdout + worker.stderr

    path = records[len("sqlite:///"):]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    engine = open_engine(records, migrate=False)
    with engine.connect() as conn:
        call = conn.execute(sa.select(calls).where(calls.c.call_id == sid)).mappings().one()
        visited = conn.execute(sa.select(steps.c.step).where(steps.c.call_id == sid)
                               .order_by(steps.c.seq)).scalars().all()
        said = conn.execute(sa.select(turns).where(turns.c.call_id == sid).order_by(turns.c.seq)).mappings().all()
        everything = json.dumps([[list(row) for row in conn.execute(sa.select(table))]
                                 for table in (calls, steps, turns)], default=str)
    engine.dispose()
    assert call["flow"] == "energie" and call["outcome"] == "completed" and call["verified"] is True
    assert call["intent"] == "meterstand_doorgeven" and call["feedback"] == 5 and call["keypad_only"] is True
    assert call["caller_hash"] == caller_hash(scenario["caller"], SALT)
    assert visited[:2] == ["welkom", "menu"] and visited[-1] == "feedback"    # in the order it went
    assert visited.index("identificatie") < visited.index("meter_stand")
    keyed = [turn["dtmf"] for turn in load_scenario(METER_CALL)["turns"]]
    assert call["turns"] == len(said) == len(keyed)
    assert [turn["kind"] for turn in said] == ["keys"] * len(keyed)
    assert [turn["digits"] for turn in said] == ["1", "100001", "[verborgen]", "12345", "1", "2", "5"]
    assert said[2]["step"] == "identificatie"
    assert "14031975" not in everything and "1975" not in everything          # the date of birth
    assert "612345678" not in everything                                       # the caller's number
    assert json.loads(connection.hget(PREFIX + sid, "recorded")) is True
    connection.close()
