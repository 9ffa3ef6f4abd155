"""Keeping an unfinished call for a while, so that a caller who calls back can go on with it.

A call is unfinished when the caller hung up or was cut off, or its media stream broke, before the
flow was done: before a transfer, a hang-up step or feedback. What the engine needs to offer it
again (the step, the intent, the values given, the transcript) is kept in Redis under
``voicebot:unfinished:<flow>:<HMAC of the calling number>`` for the flow's
``resume.window_minutes`` and then expires. The next call from that number takes it, reading and
deleting it in one transaction so that it is offered once, and hands it to the engine as
``CallStarted.earlier``.

What is kept is chosen field by field (``KEPT``): never the hashes of secret answers, never
identity or a verification in progress. The key holds no phone number, only an HMAC with
``VOICEBOT_HASH_SALT``; without a salt nothing is kept, because a hash of a phone number alone is
undone by trying every number. Withheld and malformed numbers are never kept: two callers who both
withhold their number must not be offered each other's call. A state larger than ``MAX_BYTES`` is
refused. Redis is not allowed to break a call: a failure is logged in one line and the call goes
on without an offer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any

import redis

from voicebot.dialog.state import CallState
from voicebot.flow import Flow
from voicebot.telephony.logsafe import esc

log = logging.getLogger("voicebot.resume")

KEY = "voicebot:unfinished:{flow}:{caller}"
MAX_BYTES = 64 * 1024
TRANSCRIPT_ENTRIES = 50
"""The last entries of the transcript kept: what an agent reads of the earlier call."""
KEPT = ("call_id", "flow", "started_at", "step", "intent", "intent_confidence", "slots", "transcript", "outcome")
"""The fields of a call's state that are kept; everything else stays with the call's own record."""
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
WITHHELD = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"})
"""The numbers Twilio gives for anonymous, restricted, blocked, unavailable and unknown callers."""


def caller_key(flow_id: str, caller: Any, salt: str) -> str | None:
    """The Redis key for this flow and calling number; None when the number cannot be kept for."""
    if not salt or not isinstance(caller, str):
        return None
    number = caller.strip()
    if not E164.fullmatch(number) or number in WITHHELD:
        return None
    digest = hmac.new(salt.encode(), number.encode(), hashlib.sha256).hexdigest()
    return KEY.format(flow=flow_id, caller=digest)


def is_unfinished(state: dict[str, Any], flow: Flow) -> bool:
    """The call stopped before the flow was done, at a point worth going on from: it has an intent
    (the engine offers nothing without one), it ended neither by a transfer nor a hang-up step, and
    it had not reached feedback (a caller who hangs up at the rating question is done)."""
    step = flow.spec.steps.get(state.get("step") or "")
    return (state.get("outcome") in (None, "caller_hangup") and step is not None and step.type != "feedback"
            and bool(state.get("intent")))


def remember_unfinished(client: redis.Redis | None, state: CallState | dict[str, Any], flow: Flow,
                        salt: str) -> bool:
    """Keep an unfinished call for the flow's resume window; True when it was stored."""
    data = state.to_dict() if isinstance(state, CallState) else dict(state)
    window = flow.spec.resume.window_minutes
    if client is None or not window or data.get("flow") != flow.id or not is_unfinished(data, flow):
        return False
    key = caller_key(flow.id, data.get("caller"), salt)
    if key is None:
        return False
    kept = {name: data.get(name) for name in KEPT}
    kept["transcript"] = list(data.get("transcript") or [])[-TRANSCRIPT_ENTRIES:]
    payload = json.dumps(kept, ensure_ascii=False)
    call_id = esc(data.get("call_id"))
    if len(payload.encode()) > MAX_BYTES:
        log.warning("call %s: unfinished call not kept: %d bytes (at most %d)", call_id, len(payload.encode()),
                    MAX_BYTES)
        return False
    try:
        client.set(key, payload, ex=window * 60)
    except (redis.RedisError, OSError) as exc:
        log.warning("call %s: unfinished call not kept, Redis failed (%s)", call_id, exc)
        return False
    return True


def take_unfinished(client: redis.Redis | None, flow: Flow, caller: str, salt: str) -> dict[str, Any] | None:
    """The unfinished call kept for this number and flow, deleted as it is read (offered once)."""
    if client is None or not flow.spec.resume.window_minutes:
        return None
    key = caller_key(flow.id, caller, salt)
    if key is None:
        return None
    try:
        pipe = client.pipeline(transaction=True)
        pipe.get(key)
        pipe.delete(key)
        raw = pipe.execute()[0]
    except (redis.RedisError, OSError) as exc:
        log.warning("no earlier call looked up for flow %s, Redis failed (%s); the call starts afresh",
                    esc(flow.id), exc)
        return None
    if raw is None or len(raw) > MAX_BYTES:
        return None
    try:
        earlier = json.loads(raw)
    except ValueError:
        log.error("a kept unfinished call of flow %s is not JSON; ignoring it", esc(flow.id))
        return None
    return earlier if isinstance(earlier, dict) else None


def forget_unfinished(client: redis.Redis | None, flow: Flow, caller: str, salt: str) -> None:
    """The caller reached a person after all (a broken stream handed over): nothing to go on with."""
    key = caller_key(flow.id, caller, salt)
    if client is None or key is None or not flow.spec.resume.window_minutes:
        return
    try:
        client.delete(key)
    except (redis.RedisError, OSError) as exc:
        log.warning("unfinished call of flow %s not forgotten, Redis failed (%s)", esc(flow.id), exc)
