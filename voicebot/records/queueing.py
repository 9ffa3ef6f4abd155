"""Putting a finished call on the records queue: what the web process does instead of writing it.

The status callback's handler (``web._finalise``) calls ``enqueue_record`` with the call SID; the
worker (``voicebot worker``, which also reads ``records.queue``) runs
``voicebot.records.jobs.record_call``. The job carries the call SID only: the record itself stays
in the call store (Redis) until the job reads it, so nothing of the caller sits in the queue.
Like the handoff queue it uses RQ's JSON serializer (``handoff.queueing.SERIALIZER``).

The job id is derived from the call SID and the enqueue is unique (``DuplicateJobError`` when the
job exists), so a status callback that comes twice, on one node or two, queues one job. A job
that fails (the database is down) is retried with back-off (``RETRY``); a call whose job was
never queued or ran out of retries is written by the worker's sweep (``records.upkeep``).
"""

from __future__ import annotations

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from voicebot.handoff.queueing import SERIALIZER

RECORD = "voicebot.records.jobs.record_call"
RETRY_INTERVALS = [5, 30, 120, 600]
"""Seconds before each retry of a failed write: a database restart or fail-over is waited out."""
RETRY = Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS)


def job_id(call_sid: str) -> str:
    return f"record-{call_sid}"


def records_queue(connection: redis.Redis, queue_name: str) -> Queue:
    """The RQ queue of record jobs, as the web process and the worker must both see it."""
    return Queue(queue_name, connection=connection, serializer=SERIALIZER)


def enqueue_record(connection: redis.Redis, queue_name: str, call_sid: str, *, keep_seconds: int) -> bool:
    """Queue the job that writes the call's record; False when it is queued (or done) already.

    Raises ``redis.RedisError``/``OSError`` when Redis does not take it. ``keep_seconds``: the
    call store's time-to-live (``redis.call_ttl_seconds``): after it the record the job would read
    is gone, so neither the job nor its result or failure is kept longer."""
    try:
        records_queue(connection, queue_name).enqueue(
            RECORD, call_sid, job_id=job_id(call_sid), unique=True, description=f"record of call {call_sid}",
            ttl=keep_seconds, result_ttl=keep_seconds, failure_ttl=keep_seconds, retry=RETRY)
    except DuplicateJobError:
        return False
    return True
