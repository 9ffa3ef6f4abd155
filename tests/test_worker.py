from __future__ import annotations

import dataclasses
import json
import signal
import socket
import uuid

import redis
from rq import Queue
from rq.job import JobStatus

from jobs import add
from voicebot.worker import run_worker


def test_worker_runs_a_queued_job(settings, redis_url):
    # A queue of its own, so jobs other tests leave on "handoff" are not run here.
    settings = dataclasses.replace(settings, handoff_queue=f"test-{uuid.uuid4().hex}")
    connection = redis.Redis.from_url(redis_url)
    job = Queue(settings.handoff_queue, connection=connection).enqueue(add, 2, 3)
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
