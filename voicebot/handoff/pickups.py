"""Which agent's call took which caller from a Twilio queue, for the agents' screens.

With a Twilio queue as the transfer target, an agent's phone takes "the next caller"
(``<Dial><Queue url=".../twilio/queue-pickup">``): only at that moment is it known which caller
that is. Twilio tells us then (the dequeued caller's CallSid and the agent's call as
``DequeingCallSid``), and the pairing is published on ``voicebot:handoff:pickup`` so a desk can show
that caller's card to that agent. Only call ids, the queue name and the wait: nothing of the
caller. A Redis that does not answer loses the announcement, never the call.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

log = logging.getLogger("voicebot.handoff")

PICKUP_CHANNEL = "voicebot:handoff:pickup"


def announce_pickup(connection: redis.Redis | None, picked: dict[str, Any]) -> bool:
    """Publish ``picked`` (call_id, agent_call, queue, queue_seconds); False when Redis did not take it."""
    if connection is None:
        return False
    try:
        connection.publish(PICKUP_CHANNEL, json.dumps(picked))
    except (redis.RedisError, OSError) as exc:
        log.warning("call %s: queue pick-up not announced (%s)", picked.get("call_id"), exc)
        return False
    return True
