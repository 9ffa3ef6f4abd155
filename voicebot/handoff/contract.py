"""The handoff record: the one versioned JSON document a warm transfer hands to agents' desktops and CRMs.

Everything that reads a transfer (the per-call key, the queue's stream, the pub/sub channel, the
agent desk, a CRM webhook) gets this record, so outside code builds on one published shape:
``docs/handoff.schema.json`` (JSON Schema 2020-12). ``schema_version`` changes with any change to
that shape; a reader checks it before trusting the rest.

The dialog engine builds the context (``dialog/context.py``) from the call alone; what it cannot
know is added here by the process that hands the call over: how long the caller has waited so far
(the engine has no clock). Secret slots (PIN, date of birth) appear in ``slots`` as "provided",
never with a value: the engine keeps only their salted hash, and the record says they were given.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

SCHEMA_VERSION = 1
PROVIDED = "provided"
"""The value of a secret slot in the record: the caller gave it; the value itself never travels."""
CALLBACK_REQUESTED = "callback_requested"
"""The ``reason`` of a call-back task: no agent took the transfer (or it came after hours) and the
caller asked to be called back. Its ``failures`` end with an ``agent_unreachable`` entry saying why
and what the transfer's own reason was."""


def handoff_record(context: dict[str, Any], *, waited_seconds: float | None) -> dict[str, Any]:
    """The versioned record of ``context`` (the engine's transfer context); a new dict.

    ``waited_seconds``: the caller's time on the line so far, at the transfer; None when the
    process handing over cannot tell. A record passed in again keeps its own version and wait
    unless a wait is given."""
    record = {"schema_version": SCHEMA_VERSION, **copy.deepcopy(context)}
    secrets = [str(name) for name in record.get("secrets_provided") or []]
    record["slots"] = {**(record.get("slots") or {}), **{name: PROVIDED for name in secrets}}
    if waited_seconds is not None or "waited_seconds" not in record:
        record["waited_seconds"] = None if waited_seconds is None else round(max(0.0, float(waited_seconds)), 1)
    return record


def seconds_since(started_at: str, now: str) -> float | None:
    """Seconds between two local wall times in ISO 8601 (the call's ``started_at`` and now, in the
    flow's time zone); None when either cannot be read. Never negative (a clock set back)."""
    try:
        elapsed = (dt.datetime.fromisoformat(now) - dt.datetime.fromisoformat(started_at)).total_seconds()
    except (TypeError, ValueError):
        return None
    return max(0.0, elapsed)


def callback_record(record: dict[str, Any], *, why: str, waited_seconds: float | None) -> dict[str, Any]:
    """The call-back task for a transferred call nobody took: the same record (and schema), with the
    reason ``callback_requested`` and an ``agent_unreachable`` failure naming ``why`` (Twilio's
    ``DialCallStatus``: no-answer, busy, failed, canceled; or after_hours) and the transfer's reason."""
    task = handoff_record(record, waited_seconds=waited_seconds)
    if task.get("reason") == CALLBACK_REQUESTED:
        return task
    failure = {"step": task.get("step"), "kind": "agent_unreachable",
               "detail": {"why": why, "transfer_reason": task.get("reason")}}
    task["failures"] = [*(task.get("failures") or []), failure]
    task["reason"] = CALLBACK_REQUESTED
    return task
