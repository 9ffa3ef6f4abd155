"""The handoff record: its published schema, every scenario's transfer against it, and its delivery
into Redis (per-call key, the queue's stream, the channel) exactly once, against a real redis-server."""

from __future__ import annotations

import functools
import json
import secrets
import time
from pathlib import Path

import pytest
import redis
from jsonschema import Draft202012Validator

from voicebot.commands.context import chat_identity
from voicebot.config import load_settings
from voicebot.flow import load_flow
from voicebot.handoff.contract import CALLBACK_REQUESTED, SCHEMA_VERSION, callback_record, handoff_record, seconds_since
from voicebot.handoff.jobs import CHANNEL, CONTEXT_KEY, DELIVERED_KEY, publish_record, stream_key
from voicebot.simulator import load_scenarios, run_scenario

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs" / "handoff.schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
FILES = sorted((REPO / "flows" / "scenarios").glob("*.yaml"))


def problems(record: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(record)]


@functools.cache
def scenario_handoffs() -> tuple[tuple[str, dict], ...]:
    """Every transfer context the scenario files produce, run as tests/test_scenarios.py runs them."""
    found = []
    for file in FILES:
        defaults, scenarios = load_scenarios(file)
        flow = load_flow(defaults["flow"])
        identity = chat_identity(load_settings(), flow, shared=False, customers=defaults.get("customers"))
        for scenario in scenarios:
            result = run_scenario(flow, scenario, caller=defaults.get("caller", "+31612345678"),
                                  at=defaults.get("at"), identity=identity)
            if result.handoff is not None:
                found.append((f"{file.stem}:{result.name}", result.handoff))
    return tuple(found)


def test_the_schema_is_a_valid_draft_2020_12_schema_of_this_version():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"] == {"const": SCHEMA_VERSION, "description": "The version of this shape."}
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"])      # every field is always there


def test_every_transfer_the_scenario_files_produce_is_a_valid_record():
    handoffs = scenario_handoffs()
    assert len(handoffs) >= 10                        # the scenarios transfer in many ways; all of them count
    reasons = {context["reason"] for _, context in handoffs}
    assert {"explicit_request", "error"} <= reasons
    for name, context in handoffs:
        for waited in (None, 42.25):
            record = handoff_record(context, waited_seconds=waited)
            assert not problems(record), (name, problems(record))
    # The schema is strict: an engine context without its version and wait is not a record.
    name, context = handoffs[0]
    assert any("schema_version" in p for p in problems(context))


def test_secret_slots_appear_as_provided_and_the_wait_is_rounded():
    context = scenario_handoffs()[0][1]
    record = handoff_record({**context, "slots": {"postcode": "1234AB"}, "secrets_provided": ["pin"]},
                            waited_seconds=12.345)
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["slots"] == {"postcode": "1234AB", "pin": "provided"}
    assert record["waited_seconds"] == 12.3
    assert not problems(record)
    assert handoff_record(record, waited_seconds=None)["waited_seconds"] == 12.3     # a record keeps its wait
    assert handoff_record(context, waited_seconds=-3)["waited_seconds"] == 0.0
    bad = {**record, "slots": {"pin": {"value": "1234"}}}
    assert problems(bad)                                  # a slot value is a plain value, never a structure


def test_a_call_back_task_is_a_valid_record_that_says_why_and_keeps_the_transfers_reason():
    for name, context in scenario_handoffs():
        record = handoff_record(context, waited_seconds=10.0)
        task = callback_record(record, why="no-answer", waited_seconds=55.5)
        assert not problems(task), (name, problems(task))
        assert task["reason"] == CALLBACK_REQUESTED and task["waited_seconds"] == 55.5
        assert task["failures"] == [*record["failures"], {
            "step": record["step"], "kind": "agent_unreachable",
            "detail": {"why": "no-answer", "transfer_reason": record["reason"]}}]
        assert callback_record(task, why="busy", waited_seconds=None) == task     # a task stays one task


def test_seconds_since_reads_local_iso_times():
    assert seconds_since("2026-11-23T10:00:00", "2026-11-23T10:01:30") == 90.0
    assert seconds_since("2026-11-23T10:00:00", "2026-11-23T09:59:00") == 0.0
    assert seconds_since("", "2026-11-23T10:00:00") is None


# -- delivery into Redis --------------------------------------------------------------------------

@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def a_record(queue: str, **extra) -> dict:
    context = scenario_handoffs()[0][1]
    return handoff_record({**context, "call_id": "CA" + secrets.token_hex(16), "queue": queue, **extra},
                          waited_seconds=3.0)


def published(pubsub, call_id: str, quiet: float = 0.3) -> list[dict]:
    """The records announced on the channel for ``call_id`` until the channel has been quiet a while."""
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=quiet)
        if message is None:
            break
        record = json.loads(message["data"])
        if record.get("call_id") == call_id:
            seen.append(record)
    return seen


def test_delivering_twice_adds_one_stream_entry_and_one_announcement(client):
    queue = "q-" + secrets.token_hex(4)
    record = a_record(queue)
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"

    first = publish_record(client, record, keep_seconds=600)
    again = publish_record(client, record, keep_seconds=600)

    assert first and again is None
    entries = client.xrange(stream_key(queue))
    assert [entry_id.decode() for entry_id, _ in entries] == [first]
    fields = entries[0][1]
    assert fields[b"call_id"].decode() == record["call_id"]
    assert json.loads(fields[b"context"]) == record
    assert published(pubsub, record["call_id"]) == [record]
    pubsub.close()
    key = CONTEXT_KEY.format(call_id=record["call_id"])
    assert json.loads(client.get(key)) == record
    for name in (key, DELIVERED_KEY.format(call_id=record["call_id"]), stream_key(queue)):
        assert 0 < client.ttl(name) <= 600                 # nothing of the caller outlives the call


def test_a_delivery_that_fails_takes_its_marker_back_so_a_retry_delivers(client):
    queue = "q-" + secrets.token_hex(4)
    record = a_record(queue)
    client.set(stream_key(queue), "not a stream", ex=60)          # XADD fails: WRONGTYPE
    with pytest.raises(redis.ResponseError):
        publish_record(client, record, keep_seconds=600)
    assert not client.exists(DELIVERED_KEY.format(call_id=record["call_id"]))
    assert not client.exists(CONTEXT_KEY.format(call_id=record["call_id"]))
    client.delete(stream_key(queue))
    assert publish_record(client, record, keep_seconds=600)
    assert client.xlen(stream_key(queue)) == 1


def test_the_stream_is_trimmed_to_its_length(client):
    queue = "q-" + secrets.token_hex(4)
    node = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    for _ in range(2 * node + 50):
        publish_record(client, a_record(queue), keep_seconds=600, max_entries=10)
    # MAXLEN ~ trims whole nodes of the stream: at most one node more than asked for is left.
    assert 10 <= client.xlen(stream_key(queue)) <= 10 + node


def test_entries_older_than_the_call_ttl_are_trimmed(client):
    queue = "q-" + secrets.token_hex(4)
    stream = stream_key(queue)
    old_ms = (int(client.time()[0]) - 3600) * 1000
    for n in range(150):                                  # a whole stream node of entries an hour old
        client.xadd(stream, {"call_id": f"old-{n}", "context": "{}"}, id=f"{old_ms}-{n + 1}")
    publish_record(client, a_record(queue), keep_seconds=600)
    ids = [entry_id.decode() for entry_id, _ in client.xrange(stream)]
    assert len(ids) < 151 and f"{old_ms}-1" not in ids
