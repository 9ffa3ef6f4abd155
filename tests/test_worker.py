"""`voicebot worker` and the handoff jobs it runs: RQ's JSON serializer, time-to-lives no longer than
the call's, retries with back-off, and a record delivered once however often its job runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import signal
import socket
import time
import uuid
import zlib

import pytest
import redis
from rq.job import JobStatus

from jobs import add
from voicebot.handoff.contract import handoff_record
from voicebot.handoff.jobs import CHANNEL, CONTEXT_KEY, DELIVERED_KEY, stream_key
from voicebot.handoff.queueing import RETRY_INTERVALS, enqueue_context, handoff_queue, job_id
from voicebot.worker import run_worker

KEEP = 900


@pytest.fixture
def own_queue(settings):
    """Settings with a queue of their own, so jobs other tests leave on "handoff" are not run here."""
    return dataclasses.replace(settings, handoff_queue=f"test-{uuid.uuid4().hex}")


@pytest.fixture
def connection(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def a_record(queue: str) -> dict:
    context = {"call_id": "CA" + secrets.token_hex(16), "flow": "ko_test", "language": "ko", "caller": "+82101",
               "called": "+8220", "started_at": "2026-11-23T10:00:00", "queue": queue, "reason": "explicit_request",
               "after_hours": False, "intent": None, "slots": {"number": "123"}, "partial_slots": [],
               "keypad_only": False, "secrets_provided": ["pin"],
               "identity": {"verified": False, "level": "none", "method": None, "customer": None, "attempts": []},
               "step": "booking", "turns": 2, "failures": [], "sources": [], "summary": "예약",
               "transcript": [{"who": "caller", "step": "booking", "text": "예약", "confidence": 0.9}],
               "earlier_call": None}
    return handoff_record(context, waited_seconds=7.0)


def test_worker_runs_a_queued_job(own_queue, connection):
    settings = own_queue
    job = handoff_queue(connection, settings.handoff_queue).enqueue(add, 2, 3)
    before = signal.getsignal(signal.SIGINT)

    assert run_worker(settings, burst=True) == 0

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value(refresh=True) == 5
    assert signal.getsignal(signal.SIGINT) is before


def test_worker_without_redis_fails_with_a_clear_message(settings, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"

    assert run_worker(dataclasses.replace(settings, redis_url=url)) == 1

    err = capsys.readouterr().err
    assert f"cannot reach Redis at {url}" in err
    assert "Traceback" not in err


def test_worker_error_hides_the_redis_password(settings, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://user:s3cret@127.0.0.1:{port}/0"

    assert run_worker(dataclasses.replace(settings, redis_url=url)) == 1

    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert f"redis://user:***@127.0.0.1:{port}/0" in err


def test_a_handoff_job_is_json_in_redis_with_ttls_no_longer_than_the_call(own_queue, connection):
    record = a_record("agents-" + secrets.token_hex(4))
    job = enqueue_context(connection, own_queue.handoff_queue, record, keep_seconds=KEEP)
    raw = connection.hgetall(f"rq:job:{job}")
    data = json.loads(zlib.decompress(raw[b"data"]))      # JSON, readable by anyone; a pickle would not load
    assert data[0] == "voicebot.handoff.jobs.deliver" and data[2] == [record, KEEP]
    assert b"summary" not in raw[b"description"]                          # RQ logs the description
    assert int(raw[b"ttl"]) == KEEP and int(raw[b"result_ttl"]) == KEEP and int(raw[b"failure_ttl"]) == KEEP
    assert json.loads(raw[b"retry_intervals"]) == RETRY_INTERVALS and int(raw[b"retries_left"]) == 5
    assert 0 < connection.ttl(f"rq:job:{job}") <= KEEP                  # a job nobody runs goes away

    assert run_worker(own_queue, burst=True) == 0

    fetched = handoff_queue(connection, own_queue.handoff_queue).fetch_job(job)
    assert fetched.get_status(refresh=True) == JobStatus.FINISHED
    assert 0 < connection.ttl(f"rq:job:{job}") <= KEEP                  # nor is a finished one kept longer
    assert json.loads(connection.get(CONTEXT_KEY.format(call_id=record["call_id"]))) == record
    assert 0 < connection.ttl(CONTEXT_KEY.format(call_id=record["call_id"])) <= KEEP


def test_an_engine_context_is_enqueued_as_a_versioned_record(own_queue, connection):
    record = a_record("agents-" + secrets.token_hex(4))
    context = {k: v for k, v in record.items() if k not in ("schema_version", "waited_seconds")}
    job = enqueue_context(connection, own_queue.handoff_queue, context, keep_seconds=KEEP)
    (args, _kwargs) = json.loads(zlib.decompress(connection.hget(f"rq:job:{job}", "data")))[2:]
    assert args[0]["schema_version"] == 1 and args[0]["waited_seconds"] is None
    assert args[0]["slots"] == {"number": "123", "pin": "provided"}


def test_a_failed_delivery_is_retried_with_back_off_and_delivered_once(own_queue, connection):
    queue = "agents-" + secrets.token_hex(4)
    record = a_record(queue)
    connection.set(stream_key(queue), "not a stream", ex=60)       # the first delivery fails: WRONGTYPE
    job = enqueue_context(connection, own_queue.handoff_queue, record, keep_seconds=KEEP)
    rq_queue = handoff_queue(connection, own_queue.handoff_queue)

    assert run_worker(own_queue, burst=True) == 0

    fetched = rq_queue.fetch_job(job)
    assert fetched.get_status(refresh=True) == JobStatus.SCHEDULED and fetched.retries_left == 4
    assert job in rq_queue.scheduled_job_registry.get_job_ids()      # after its pause, not at once
    assert not connection.exists(DELIVERED_KEY.format(call_id=record["call_id"]))
    assert not connection.exists(CONTEXT_KEY.format(call_id=record["call_id"]))
    assert job not in rq_queue.failed_job_registry.get_job_ids()

    connection.delete(stream_key(queue))                              # whatever failed is over
    due = rq_queue.scheduled_job_registry.get_scheduled_time(job)
    deadline = time.monotonic() + 30
    while dt.datetime.now(dt.timezone.utc) < due:                     # the first pause (1 s) passes
        assert time.monotonic() < deadline
        time.sleep(0.1)

    assert run_worker(own_queue, burst=True) == 0                     # its scheduler puts the retry back

    assert rq_queue.fetch_job(job).get_status(refresh=True) == JobStatus.FINISHED
    entries = connection.xrange(stream_key(queue))
    assert len(entries) == 1 and json.loads(entries[0][1][b"context"]) == record
    assert json.loads(connection.get(CONTEXT_KEY.format(call_id=record["call_id"]))) == record


def test_a_call_enqueued_and_run_twice_is_delivered_once(own_queue, connection):
    queue = "agents-" + secrets.token_hex(4)
    record = a_record(queue)
    pubsub = connection.pubsub()
    pubsub.subscribe(CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    for _ in range(2):
        assert enqueue_context(connection, own_queue.handoff_queue, record, keep_seconds=KEEP) == \
            job_id(record["call_id"])
        assert run_worker(own_queue, burst=True) == 0
    assert connection.xlen(stream_key(queue)) == 1
    announced = []
    for _ in range(100):                                  # until the channel has been quiet for a while
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is None:
            break
        announced += [m for m in [json.loads(message["data"])] if m["call_id"] == record["call_id"]]
    pubsub.close()
    assert announced == [record]


def test_worker_queues_what_the_outbox_holds_before_it_starts_working(settings, redis_url):
    from voicebot.handoff.outbox import Outbox

    settings = dataclasses.replace(settings, handoff_queue=f"test-{uuid.uuid4().hex}")
    call_id = f"CA-outbox-{uuid.uuid4().hex[:8]}"
    outbox = Outbox(settings.outbox_path, settings.call_ttl_seconds, settings.outbox_max_entries)
    outbox.put({"call_id": call_id, "queue": "agents", "summary": "kept while Redis was away"})

    assert run_worker(settings, burst=True) == 0

    connection = redis.Redis.from_url(redis_url)
    assert json.loads(connection.get(f"voicebot:handoff:{call_id}"))["summary"] == "kept while Redis was away"
    assert outbox.pending() == 0


def _delay_samples(connection) -> dict[str, float]:
    """voicebot_handoff_delay_seconds as /metrics shows it (read from Redis at the scrape)."""
    from voicebot.telephony.metrics import Metrics

    samples = {}
    for row in Metrics(shared=connection).render().decode().splitlines():
        if row.startswith("voicebot_handoff_delay_seconds"):
            name, value = row.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_the_time_from_the_transfer_decision_to_delivery_is_measured_once(own_queue, connection):
    record = a_record("agents-" + secrets.token_hex(4))
    before = _delay_samples(connection)
    decided = time.time() - 2.0                      # decided two seconds ago (held back, say)
    job = enqueue_context(connection, own_queue.handoff_queue, record, keep_seconds=KEEP, decided_at=decided)
    assert run_worker(own_queue, burst=True) == 0

    meta = handoff_queue(connection, own_queue.handoff_queue).fetch_job(job).get_meta()
    assert meta["enqueued_at"] == decided and meta["delay_seconds"] >= 2.0
    assert meta["delivered_at"] - meta["enqueued_at"] == pytest.approx(meta["delay_seconds"], abs=1e-3)
    enqueue_context(connection, own_queue.handoff_queue, record, keep_seconds=KEEP)     # the same call again
    assert run_worker(own_queue, burst=True) == 0                                     # delivers nothing more
    after = _delay_samples(connection)
    count = "voicebot_handoff_delay_seconds_count"
    assert after[count] == before.get(count, 0) + 1
    below = 'voicebot_handoff_delay_seconds_bucket{le="1.0"}'
    assert after[below] == before.get(below, 0)       # the observation is the two seconds, not less
    assert after["voicebot_handoff_delay_seconds_sum"] >= before.get("voicebot_handoff_delay_seconds_sum", 0) + 2.0
