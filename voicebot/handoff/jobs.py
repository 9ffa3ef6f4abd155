"""Jobs the RQ worker runs for a warm transfer: putting the call's context where agents' screens read it.

The agent must see intent, identity, details, summary and transcript before saying a word, and
the caller must never repeat themselves. The web process enqueues ``deliver`` the moment the
dialog decides to transfer, before the goodbye prompt has even finished, so the context is ready
before Twilio rings the agent. The job stores the context under ``voicebot:handoff:<call id>``
(for a desktop that looks a call up when it rings), appends it to the queue's list
``voicebot:handoff:queue:<queue>`` (for a desktop that takes the next call) and publishes it on
the channel ``voicebot:handoff`` (for a desktop that is listening). It runs in the worker, never
on a call's thread, so a slow agents' side cannot hold up a live call.
"""

from __future__ import annotations

import json
from typing import Any

from rq import get_current_job

CONTEXT_KEY = "voicebot:handoff:{call_id}"
QUEUE_KEY = "voicebot:handoff:queue:{queue}"
CHANNEL = "voicebot:handoff"
TTL_SECONDS = 24 * 3600


def deliver(context: dict[str, Any]) -> str:
    """Store and announce one transfer's context; returns the key it is stored under."""
    connection = get_current_job().connection
    payload = json.dumps(context, ensure_ascii=False)
    key = CONTEXT_KEY.format(call_id=context["call_id"])
    pipe = connection.pipeline()
    pipe.set(key, payload, ex=TTL_SECONDS)
    pipe.rpush(QUEUE_KEY.format(queue=context.get("queue", "")), payload)
    pipe.expire(QUEUE_KEY.format(queue=context.get("queue", "")), TTL_SECONDS)
    pipe.publish(CHANNEL, payload)
    pipe.execute()
    return key
