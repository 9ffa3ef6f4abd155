"""Putting a transfer's record on the handoff queue: the one place that says how RQ carries it.

The web process calls ``enqueue_context`` the moment the dialog decides to transfer; the worker
(``voicebot worker``, through ``handoff_queue``) runs ``voicebot.handoff.jobs.deliver``. Both sides
use RQ's JSON serializer: a job holds the caller's record, and JSON in Redis is what any reader
can check, where a pickle is code to whoever loads it. The job id is derived from the call, so a
second enqueue of the same call's record is the same job, and ``deliver`` adds no second card.

Nothing of the caller stays in RQ longer than the call's own record (``redis.call_ttl_seconds``):
a job nobody picks up expires then (``ttl``), and so do a finished job and a failed one
(``result_ttl``, ``failure_ttl``; RQ's defaults keep a failed job for a year). A failed delivery
is retried with back-off (``RETRY``), which needs the worker's scheduler (``voicebot worker``
runs it).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from voicebot.handoff.contract import handoff_record
from voicebot.handoff.jobs import KEEP_SECONDS, delivery_id

DELIVER = "voicebot.handoff.jobs.deliver"
RETRY_INTERVALS = [1, 2, 5, 10, 30]
"""Seconds before each retry of a failed delivery: five more tries within a minute."""
SERIALIZER = JSONSerializer
RETRY = Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS)
"""A delivery that failed, or whose worker died under it, is tried again after these seconds."""


def job_id(call_id: str) -> str:
    """The job of a call's delivery; ``call_id`` may be a ``jobs.delivery_id`` (a call-back task)."""
    return f"handoff-{call_id}"


def handoff_queue(connection: redis.Redis, queue_name: str) -> Queue:
    """The RQ queue of handoff jobs, as the web process and the worker must both see it."""
    return Queue(queue_name, connection=connection, serializer=SERIALIZER)


def enqueue_context(connection: redis.Redis, queue_name: str, context: dict[str, Any], *,
                    keep_seconds: int = KEEP_SECONDS, decided_at: float | None = None) -> str:
    """Queue ``context`` for delivery; returns the job id. Raises ``redis.RedisError``/``OSError``
    when Redis cannot take it (the caller decides what to do then).

    ``context`` is the handoff record (``handoff/contract.py``); an engine context without its
    version is made one (wait unknown). ``keep_seconds``: ``redis.call_ttl_seconds``, how long the
    job, its result and its failure, and the delivered record, may be kept. ``decided_at``: when
    the transfer was decided (unix seconds; default now), kept as ``enqueued_at`` in the job's
    meta: the worker measures the delay to delivery from it (a record held back while Redis was
    down should pass the time it was decided)."""
    record = context if "schema_version" in context else handoff_record(context, waited_seconds=None)
    call_id = delivery_id(record)
    # A short description: RQ logs it, and the record (full postcode, transcript) must not be logged.
    handoff_queue(connection, queue_name).enqueue(
        DELIVER, record, keep_seconds, job_id=job_id(call_id),
        description=f"handoff of call {call_id} to {record.get('queue')}",
        ttl=keep_seconds, result_ttl=keep_seconds, failure_ttl=keep_seconds,
        meta={"enqueued_at": time.time() if decided_at is None else float(decided_at)},
        retry=RETRY)
    return job_id(call_id)
