"""Putting a transfer's context on the handoff queue: the one place that talks to RQ for it.

The web process calls ``enqueue_context`` the moment the dialog decides to transfer; the worker
runs ``voicebot.handoff.jobs.deliver``. The job id is derived from the call, so a second enqueue
of the same call's context is the same job, not a second card for the agents.
"""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue, Retry

DELIVER = "voicebot.handoff.jobs.deliver"
RETRY = Retry(max=5, interval=[1, 2, 5, 10, 30])
"""A delivery that failed, or whose worker died under it, is tried again after these seconds."""


def job_id(call_id: str) -> str:
    return f"handoff-{call_id}"


def enqueue_context(connection: redis.Redis, queue_name: str, context: dict[str, Any]) -> str:
    """Queue ``context`` for delivery; returns the job id. Raises ``redis.RedisError``/``OSError``
    when Redis cannot take it (the caller decides what to do then)."""
    queue = Queue(queue_name, connection=connection)
    call_id = str(context["call_id"])
    # A short description: RQ logs it, and the context (full postcode, transcript) must not be logged.
    queue.enqueue(DELIVER, context, job_id=job_id(call_id), retry=RETRY,
                  description=f"handoff of call {call_id} to {context.get('queue')}")
    return job_id(call_id)
