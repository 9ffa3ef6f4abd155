"""Simulated calls (``records.simulated``) and `voicebot records simulate`, written to a real SQLite file
through ``records.build.build_record`` and ``records.store.RecordStore`` as the worker writes calls."""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from voicebot.cli import main
from voicebot.dialog.outcomes import MISUNDERSTOOD, TURN_RESULTS
from voicebot.flow import load_flow
from voicebot.records.build import build_record
from voicebot.records.db import open_engine
from voicebot.records.schema import calls, turns
from voicebot.records.simulated import simulate_calls
from voicebot.simulator import Simulation

REPO = Path(__file__).resolve().parent.parent
ENERGIE = load_flow(REPO / "flows" / "energie.yaml")
NOW = dt.datetime(2026, 11, 23, 15, 30, tzinfo=dt.timezone.utc)
ZONE = "Europe/Amsterdam"


@pytest.fixture(scope="module")
def three_hundred():
    """300 simulated calls, each built into its rows."""
    made = list(simulate_calls(ENERGIE, calls=300, days=14, seed=11, now=NOW))
    return made, [build_record(c.call_id, c.stored, "salt", timezone=ZONE) for c in made]


def test_the_same_seed_gives_the_same_calls_and_another_seed_other_calls():
    first = [(c.call_id, c.stored) for c in simulate_calls(ENERGIE, calls=25, days=3, seed=5, now=NOW)]
    again = [(c.call_id, c.stored) for c in simulate_calls(ENERGIE, calls=25, days=3, seed=5, now=NOW)]
    other = [(c.call_id, c.stored) for c in simulate_calls(ENERGIE, calls=25, days=3, seed=6, now=NOW)]
    assert first == again
    assert [s["state"]["transcript"] for _, s in first] != [s["state"]["transcript"] for _, s in other]
    assert {call_id for call_id, _ in first} == {f"SIM-5-{n:05d}" for n in range(1, 26)}


def test_simulated_calls_end_every_way_a_call_can(three_hundred):
    _, records = three_hundred
    outcomes = collections.Counter(r["call"]["outcome"] for r in records)
    reasons = collections.Counter(r["call"]["reason"] for r in records if r["call"]["outcome"] == "transferred")
    assert set(outcomes) == {"completed", "transferred", "hung_up"}
    assert min(outcomes.values()) >= 15
    assert {"explicit_request", "flow", "low_confidence", "no_input"} <= set(reasons)
    assert len({r["call"]["intent"] for r in records} - {None}) >= 5
    assert len({r["call"]["end_step"] for r in records if r["call"]["outcome"] == "hung_up"}) >= 3


def test_simulated_turns_show_what_the_review_queue_and_the_funnel_need(three_hundred):
    _, records = three_hundred
    rows = [t for r in records for t in r["turns"]]
    results = collections.Counter(t["result"] for t in rows)
    assert set(results) <= set(TURN_RESULTS)
    assert {"accepted", "confirm", "confirmed", "no_input", "agent", *MISUNDERSTOOD} <= set(results)
    assert {"speech", "keys", "no_input"} == {t["kind"] for t in rows}
    misunderstood = [t for t in rows if t["result"] in MISUNDERSTOOD and t["kind"] == "speech" and t["text"]]
    assert len({t["text"] for t in misunderstood}) >= 10
    assert any(t["intent"] and t["intent_confidence"] for t in misunderstood)       # what it was guessed as


def test_simulated_feedback_scores_and_comments(three_hundred):
    _, records = three_hundred
    scores = collections.Counter(r["call"]["feedback"] for r in records if r["call"]["feedback"])
    assert set(scores) == {1, 2, 3, 4, 5}
    comments = [r["call"]["feedback_comment"] for r in records if r["call"]["feedback_comment"]]
    assert len(comments) >= 10 and len(set(comments)) >= 4
    assert all(r["call"]["feedback"] for r in records if r["call"]["feedback_comment"])


def test_simulated_calls_are_spread_over_the_days_and_hours_and_end_after_they_start(three_hundred):
    _, records = three_hundred
    starts = [r["call"]["started_at"] for r in records]
    assert all(NOW - dt.timedelta(days=14) <= s <= NOW for s in starts)
    assert len({s.date() for s in starts}) >= 10
    local_hours = collections.Counter(s.astimezone(dt.timezone(dt.timedelta(hours=1))).hour for s in starts)
    assert len(local_hours) >= 10
    assert sum(n for h, n in local_hours.items() if 8 <= h < 18) > 0.7 * len(starts)      # office hours are busy
    for r in records:
        call = r["call"]
        assert call["ended_at"] > call["started_at"] and call["duration_seconds"] > 0


def test_simulated_timings_are_plausible_and_only_where_they_can_be(three_hundred):
    _, records = three_hundred
    rows = [t for r in records for t in r["turns"]]
    speech = [t for t in rows if t["kind"] == "speech"]
    assert all(20 < t["recognition_ms"] < 5000 and 50 < t["response_ms"] < 10000 for t in speech)
    assert all(t["recognition_ms"] is None and t["response_ms"] for t in rows if t["kind"] == "keys")
    assert all(t["recognition_ms"] is None and t["response_ms"] is None for t in rows if t["kind"] == "no_input")


def test_a_simulated_calls_store_record_builds_like_a_phone_calls():
    s = Simulation(ENERGIE, at="2026-11-23T10:00:00", call_id="SIM-X", caller="+31612345678")
    s.say("hoe laat zijn jullie open")
    s.say("nee")
    s.say("vier")
    s.say("prima geholpen")
    stored = s.store_record(updated_at=NOW.timestamp())
    assert {"state", "flow", "flow_version", "language", "caller", "ending", "updated_at", "status"} <= set(stored)
    assert stored["ending"] == {"action": "hangup", "reason": "completed"} and stored["flow_version"] == ENERGIE.version
    record = build_record("SIM-X", stored, "salt", timezone=ZONE)
    call = record["call"]
    assert (call["outcome"], call["feedback"], call["feedback_comment"]) == ("completed", 4, "prima geholpen")
    assert call["flow_version"] == ENERGIE.version and call["ended_at"] == NOW
    assert record["steps"][:3] == ["welkom", "menu", "openingstijden_antwoord"]
    assert [t["result"] for t in record["turns"]] == ["accepted", "accepted", "accepted", "accepted"]
    transferred = Simulation(ENERGIE, at="2026-11-23T10:00:00", call_id="SIM-Y")
    transferred.say("medewerker")
    assert transferred.store_record()["ending"] == {"action": "transfer", "queue": "algemeen",
                                                     "reason": "explicit_request"}


def test_the_command_writes_the_calls_once_and_never_a_callers_number(tmp_path):
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    env = {"VOICEBOT_RECORDS_URL": url, "VOICEBOT_HASH_SALT": "test-salt"}
    args = ["--config", str(REPO / "config.yaml"), "records", "simulate", "--flow", "energie", "--calls", "60",
            "--days", "5", "--seed", "9"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "wrote 60 simulated calls of flow energie" in result.output and "seed 9" in result.output
    engine = open_engine(url, migrate=False)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar() == 60
        assert conn.execute(sa.select(sa.func.count()).select_from(turns)).scalar() > 60
        outcomes = {row[0] for row in conn.execute(sa.select(calls.c.outcome).distinct())}
        hashes = [row[0] for row in conn.execute(sa.select(calls.c.caller_hash))]
        versions = {row[0] for row in conn.execute(sa.select(calls.c.flow_version).distinct())}
    assert len(outcomes) >= 2 and versions == {ENERGIE.version}
    assert all(h is None or len(h) == 64 for h in hashes) and any(hashes)
    dumped = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    numbers = {c.stored["caller"] for c in simulate_calls(ENERGIE, calls=60, days=5, seed=9)} - {""}
    assert numbers and not any(n.encode() in dumped or n[1:].encode() in dumped for n in numbers)
    again = CliRunner().invoke(main, args, env=env)
    assert again.exit_code == 0 and "wrote 0 simulated calls" in again.output and "60 were there already" in again.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar() == 60


def test_the_command_names_a_flow_it_cannot_find(tmp_path):
    result = CliRunner().invoke(main, ["--config", str(REPO / "config.yaml"), "records", "simulate", "--flow",
                                       "nothing_here"], env={"VOICEBOT_RECORDS_URL": f"sqlite:///{tmp_path}/r.db"})
    assert result.exit_code != 0 and "no flow 'nothing_here'" in result.output
