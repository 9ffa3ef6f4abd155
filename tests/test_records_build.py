"""records/build.py: a call store record turned into the rows of a call record, pure and forgiving."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest

from voicebot.records.build import MAX_TEXT, MAX_TURNS, build_record, caller_hash

SALT = "records-build-salt-" + "7" * 20
UTC = dt.timezone.utc
END = dt.datetime(2026, 11, 23, 9, 5, 30, tzinfo=UTC)


def stored(**overrides):
    """A call store record of a finished call: a meter reading, verified, with every kind of turn."""
    state = {
        "flow": "energie", "language": "nl", "caller": "+31612345678", "started_at": "2026-11-23T10:03:00",
        "step": "goodbye", "outcome": "hangup", "reason": "completed", "intent": "meterstand_doorgeven",
        "intent_confidence": 0.91, "identity": {"level": "customer", "verified": True}, "feedback": 4,
        "feedback_comment": "snel geholpen", "keypad_only": False,
        "visited": ["welcome", "intent", "verify", "meterstand", "feedback", "goodbye"],
        "transcript": [
            {"who": "bot", "step": "welcome", "text": "Waarmee kan ik u helpen?"},
            {"who": "caller", "step": "intent", "text": "ik wil mijn meterstand doorgeven", "confidence": 0.83,
             "understood": {"result": "accepted", "intent": "meterstand_doorgeven", "confidence": 0.91}},
            {"who": "caller", "step": "verify", "digits": "[geboortedatum]",
             "understood": {"result": "accepted", "intent": "birth_date", "confidence": None}},
            {"who": "caller", "step": "meterstand", "text": "", "event": "no_input"},
            {"who": "caller", "step": "meterstand", "text": "twaalf drie vier vijf", "confidence": 0.7,
             "understood": {"result": "made_up_word", "intent": "meterstand", "confidence": 0.4}},
            {"who": "caller", "step": "feedback", "digits": "4",
             "understood": {"result": "accepted", "intent": "score", "confidence": 1.0}},
        ],
    }
    record = {"state": state, "flow": "energie", "flow_version": "0123456789ab", "language": "nl",
              "caller": "+31612345678", "status": "completed", "duration": "151",
              "ending": {"action": "hangup"}, "updated_at": END.timestamp(),
              "timings": [{"turn": 1, "recognition_ms": 180, "response_ms": 420},
                          {"turn": 4, "recognition_ms": 210, "response_ms": None}]}
    record.update(overrides)
    return record


def test_caller_hash_is_the_hmac_of_the_e164_number_for_every_written_form():
    expected = hmac.new(SALT.encode(), b"+31612345678", hashlib.sha256).hexdigest()
    assert caller_hash("+31612345678", SALT) == expected
    assert caller_hash("06-12345678", SALT) == expected
    assert caller_hash(" 0031 6 1234 5678 ", SALT) == expected
    assert caller_hash("+31612345678", SALT + "x") != expected


@pytest.mark.parametrize("number", ["", "   ", "anonymous", "Restricted", None])
def test_no_number_or_a_withheld_one_has_no_hash(number):
    assert caller_hash(number, SALT) is None


def test_a_caller_id_no_number_plan_knows_is_hashed_as_it_came():
    assert caller_hash("+8210", SALT) == hmac.new(SALT.encode(), b"+8210", hashlib.sha256).hexdigest()


def test_a_finished_call_becomes_its_row_steps_and_turns():
    record = build_record("CA1", stored(), SALT, timezone="Europe/Amsterdam")
    call = record["call"]
    assert call == {
        "call_id": "CA1", "flow": "energie", "flow_version": "0123456789ab", "language": "nl",
        "started_at": dt.datetime(2026, 11, 23, 9, 3, tzinfo=UTC),     # 10:03 in Amsterdam (CET)
        "ended_at": END, "duration_seconds": 151, "outcome": "completed", "reason": "completed",
        "end_step": "goodbye", "intent": "meterstand_doorgeven", "intent_confidence": 0.91,
        "identity_level": "customer", "verified": True, "feedback": 4, "feedback_comment": "snel geholpen",
        "turns": 5, "keypad_only": False, "caller_hash": caller_hash("+31612345678", SALT),
    }
    assert record["steps"] == ["welcome", "intent", "verify", "meterstand", "feedback", "goodbye"]
    turns = record["turns"]
    assert [t["kind"] for t in turns] == ["speech", "keys", "no_input", "speech", "keys"]
    assert turns[0] == {"step": "intent", "kind": "speech", "text": "ik wil mijn meterstand doorgeven",
                        "digits": None, "asr_confidence": 0.83, "intent": "meterstand_doorgeven",
                        "intent_confidence": 0.91, "result": "accepted", "recognition_ms": 180, "response_ms": 420}
    assert turns[1]["digits"] == "[geboortedatum]" and turns[1]["text"] == ""
    assert turns[2]["result"] == "no_input"
    assert turns[3]["result"] == "other"                       # not a word of dialog.outcomes
    assert (turns[3]["recognition_ms"], turns[3]["response_ms"]) == (210, None)   # timings by turn number
    assert turns[4]["recognition_ms"] is None


def test_the_callers_number_is_kept_only_as_its_hash():
    text = json.dumps(build_record("CA1", stored(), SALT), default=str)
    assert "612345678" not in text


@pytest.mark.parametrize("overrides, outcome, reason", [
    ({"ending": {"action": "transfer", "reason": "explicit_request"}}, "transferred", "explicit_request"),
    ({"ending": {"action": "transfer"}, "state": {"step": "intent"}}, "transferred", "unknown"),
    ({"state": {"outcome": "transfer", "reason": "low_confidence"}, "ending": None}, "transferred", "low_confidence"),
    ({"state": {"outcome": "caller_hangup", "step": "verify"}, "ending": None}, "hung_up", "caller_hangup"),
    ({"state": None, "ending": None, "status": "no-answer"}, "unanswered", "no-answer"),
    ({"state": None, "ending": {"action": "transfer", "queue": "agents", "reason": "capacity"}}, "transferred",
     "capacity"),
    ({"state": None, "ending": None, "status": "completed"}, "hung_up", "before_flow"),
    ({"state": {"step": "intent"}, "ending": None}, "hung_up", "caller_hangup"),
])
def test_outcomes(overrides, outcome, reason):
    call = build_record("CA2", stored(**overrides), SALT, now=END)["call"]
    assert (call["outcome"], call["reason"]) == (outcome, reason)


def test_times_without_a_zone_updated_at_or_duration():
    moment = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    record = stored(updated_at=None, duration=None)
    record["state"]["started_at"] = "2026-06-01T13:58:00"        # CEST: 11:58 UTC
    call = build_record("CA3", record, SALT, timezone="Europe/Amsterdam", now=moment)["call"]
    assert call["ended_at"] == moment
    assert call["started_at"] == dt.datetime(2026, 6, 1, 11, 58, tzinfo=UTC)
    assert call["duration_seconds"] == 120


def test_an_unknown_time_zone_falls_back_to_the_machines():
    record = stored()
    call = build_record("CA4", record, SALT, timezone="Mars/Olympus")["call"]
    local = dt.datetime.fromisoformat("2026-11-23T10:03:00").astimezone().astimezone(UTC)
    assert call["started_at"] == local


@pytest.mark.parametrize("garbage", [
    {"state": "not a dict", "timings": "nope", "duration": "ten", "updated_at": "yesterday"},
    {"state": {"transcript": "words", "visited": {"a": 1}, "identity": [], "feedback": "five",
               "started_at": 17}, "timings": [1, {"turn": "1"}]},
    {"state": {"transcript": [None, 3, {"who": "caller", "text": None, "confidence": "high"}]}},
])
def test_malformed_records_say_less_but_are_never_refused(garbage):
    record = build_record("CA5", stored(**garbage), SALT, now=END)
    assert record["call"]["call_id"] == "CA5" and record["call"]["started_at"] is not None
    assert record["call"]["turns"] == len(record["turns"])
    assert all(t["asr_confidence"] is None or isinstance(t["asr_confidence"], float) for t in record["turns"])


def test_feedback_outside_one_to_five_is_not_a_score():
    record = stored()
    record["state"]["feedback"] = 9
    assert build_record("CA6", record, SALT)["call"]["feedback"] is None


def test_texts_and_turns_are_bounded():
    record = stored()
    long_turn = {"who": "caller", "step": "intent", "text": "a" * (MAX_TEXT + 50)}
    record["state"]["transcript"] = [long_turn] * (MAX_TURNS + 5)
    built = build_record("CA7", record, SALT)
    assert len(built["turns"]) == MAX_TURNS == built["call"]["turns"]
    assert len(built["turns"][0]["text"]) == MAX_TEXT
