"""Jobs the RQ worker runs for a warm transfer: putting the call's handoff record where agents' screens read it.

The agent must see intent, identity, details, summary and transcript before saying a word, and
the caller must never repeat themselves. The web process enqueues ``deliver`` the moment the
dialog decides to transfer, before the goodbye prompt has even finished, so the record is ready
before Twilio rings the agent. The job stores the record (``handoff/contract.py``) under
``voicebot:handoff:<call id>`` (for a desktop that looks a call up when it rings), adds it to the
queue's stream ``voicebot:handoff:stream:<queue>`` (for desktops that take the next call: they read
it with a consumer group and acknowledge) and publishes it on the channel ``voicebot:handoff`` (for
a desktop that is listening). It runs in the worker, never on a call's thread, so a slow agents'
side cannot hold up a live call.

Delivery happens once per call (and once more for a call-back task, see ``delivery_id``) however often the job runs: RQ retries a failed job, a worker
killed mid-job leaves it to run again, and the same call may be enqueued twice. One Redis script
sets the marker ``voicebot:handoff:delivered:<call id>`` (``SET NX``) and, only when it was not
there, adds the stream entry, stores the per-call key and publishes; a script runs whole or not
at all, and when adding to the stream fails the marker is taken back so a retry delivers.

After the delivery it queues the record's CRM webhooks (handoff/webhooks.py) and measures the
delay from the transfer decision (handoff/stats.py).

Nothing of a caller is kept longer than the call itself (``redis.call_ttl_seconds``): the per-call
key and the marker expire then, and the stream keeps at most ``STREAM_MAX_ENTRIES`` entries, none
older than that (trimmed on every delivery; a stream nobody adds to expires as a whole).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from rq import get_current_job

from voicebot.handoff.contract import CALLBACK_REQUESTED
from voicebot.handoff.stats import observe_delay
from voicebot.handoff.webhooks import enqueue_webhooks

log = logging.getLogger("voicebot.handoff")

CONTEXT_KEY = "voicebot:handoff:{call_id}"
STREAM_KEY = "voicebot:handoff:stream:{queue}"
DELIVERED_KEY = "voicebot:handoff:delivered:{call_id}"
CHANNEL = "voicebot:handoff"
STREAM_MAX_ENTRIES = 1000
KEEP_SECONDS = 24 * 3600
"""How long a record is kept when the enqueuer does not say (the default ``redis.call_ttl_seconds``)."""

_DELIVER = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return false end
local id = redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'call_id', ARGV[3], 'context', ARGV[2])
if type(id) == 'table' and id.err then
  redis.call('DEL', KEYS[1])
  return id
end
local now = redis.call('TIME')
redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%d', (tonumber(now[1]) - tonumber(ARGV[1])) * 1000))
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[2])
return id
"""
"""KEYS: marker, per-call key, stream. ARGV: seconds to keep, the record as JSON, call id, stream
length, channel. The new entry's id, or false when the call was delivered before."""


def stream_key(queue: str) -> str:
    return STREAM_KEY.format(queue=queue)


def delivery_id(record: dict[str, Any]) -> str:
    """What a delivery is unique by: the call, and a call-back task of that call apart from its
    transfer (a caller nobody answered asks for a call back after the transfer was delivered)."""
    call_id = str(record["call_id"])
    return f"{call_id}-callback" if record.get("reason") == CALLBACK_REQUESTED else call_id


def publish_record(connection: redis.Redis, record: dict[str, Any], *, keep_seconds: int = KEEP_SECONDS,
                   max_entries: int = STREAM_MAX_ENTRIES) -> str | None:
    """Deliver ``record`` once: the new stream entry's id, or None when this call was delivered
    already (nothing is written then). Raises ``redis.RedisError`` when Redis refuses it."""
    call_id = str(record["call_id"])
    payload = json.dumps(record, ensure_ascii=False)
    keys = [DELIVERED_KEY.format(call_id=delivery_id(record)), CONTEXT_KEY.format(call_id=call_id),
            stream_key(str(record.get("queue", "")))]
    entry = connection.eval(_DELIVER, len(keys), *keys, int(keep_seconds), payload, call_id, int(max_entries), CHANNEL)
    if entry is None:
        return None
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def deliver(context: dict[str, Any], keep_seconds: int = KEEP_SECONDS) -> str:
    """The RQ job: store and announce one transfer's record, then queue its CRM webhooks; returns
    the key it is stored under.

    The first delivery measures the delay since the enqueue (``enqueued_at`` in the job's meta) for
    ``voicebot_handoff_delay_seconds`` (handoff/stats.py) and notes ``delivered_at`` and
    ``delay_seconds`` in the meta. The webhooks are queued on every run (once per record and URL):
    a run that died after the delivery and before them leaves them to its retry."""
    job = get_current_job()
    connection = job.connection
    entry = publish_record(connection, context, keep_seconds=keep_seconds)
    if entry is not None:
        _measure(job, connection)
    enqueue_webhooks(connection, job.origin, job.serializer, context, delivery_id(context), keep_seconds)
    return CONTEXT_KEY.format(call_id=context["call_id"])


def _measure(job: Any, connection: redis.Redis) -> None:
    """The delay from the enqueue to now; a figure lost to a Redis error is not worth a redelivery."""
    delivered = time.time()
    enqueued = (job.meta or {}).get("enqueued_at")
    if not isinstance(enqueued, (int, float)):
        return
    delay = max(0.0, delivered - float(enqueued))
    try:
        observe_delay(connection, delay)
        job.meta.update(delivered_at=delivered, delay_seconds=round(delay, 4))
        job.save_meta()
    except (redis.RedisError, OSError) as exc:
        log.warning("handoff %s: delay not recorded (%s)", job.id, exc)
