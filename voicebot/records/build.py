"""A finished call's record in Redis (``telephony.store``) turned into the rows of ``records.schema``.

Pure: no database, no Redis, no clock unless ``now`` is left out. The input is what the call store
holds for a call (the keys the web process and the media stream session write): ``state`` (the
engine's ``CallState`` as a dict), ``flow``, ``flow_version``, ``language``, ``caller``,
``status`` and ``duration`` (Twilio's status callback), ``ending`` (what ``/twilio/after-stream``
answered: a transfer with its reason, or a hang-up), ``timings`` (per caller turn: recognition and
response latency in ms) and ``updated_at``. Every key may be missing or malformed (an older
version wrote it, a node died half-way): the record then says less, it is never refused for it.

What the transcript holds is already redacted by the engine (secrets replaced, postcodes masked);
the caller's number is kept only as ``caller_hash``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voicebot.dialog.outcomes import TURN_RESULTS
from voicebot.identity.fields import phone

UNANSWERED = ("busy", "failed", "no-answer", "canceled")
MAX_TEXT = 2000
"""Characters of one turn's text kept (a recogniser runs on for at most max_utterance_seconds anyway)."""
MAX_TURNS = 1000


def caller_hash(number: str, salt: str) -> str | None:
    """The HMAC-SHA256 (hex) of a caller's number in E.164, or None for no (or an unreadable) number.

    The same for every written form of one number, so ``voicebot records forget 06-12345678``
    finds calls from ``+31612345678``."""
    text = str(number or "").strip()
    if not text:
        return None
    try:
        text = phone(text)
    except ValueError:
        if text.lower() in ("anonymous", "restricted", "unknown"):
            return None
    return hmac.new(salt.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def build_record(call_id: str, stored: dict[str, Any], salt: str, *, timezone: str | None = None,
                 now: dt.datetime | None = None) -> dict[str, Any]:
    """``{"call": {...}, "steps": [...], "turns": [...]}``: one row of ``calls`` (without
    ``recorded_at``), the step names visited in order, and the caller's turns (without ``call_id``
    and ``seq``, which are their place in the list, from 1).

    ``timezone``: the flow's, which the engine's ``started_at`` (a local wall time) is in; None:
    this machine's. ``now``: the end of the call when the store has no ``updated_at``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    state = _dict(stored.get("state"))
    ending = _dict(stored.get("ending"))
    ended_at = _epoch(stored.get("updated_at")) or now
    started_at = _local(state.get("started_at"), timezone) or ended_at
    duration = _int(stored.get("duration"))
    if duration is None:
        duration = max(0, int((ended_at - started_at).total_seconds()))
    outcome, reason = _outcome(stored, state, ending)
    identity = _dict(state.get("identity"))
    feedback = _int(state.get("feedback"))
    call = {
        "call_id": str(call_id)[:64],
        "flow": str(stored.get("flow") or state.get("flow") or "")[:64],
        "flow_version": str(stored.get("flow_version") or "")[:16],
        "language": str(stored.get("language") or state.get("language") or "")[:16],
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_seconds": duration,
        "outcome": outcome,
        "reason": _str(reason, 64),
        "end_step": _str(state.get("step"), 64),
        "intent": _str(state.get("intent"), 64),
        "intent_confidence": _float(state.get("intent_confidence")),
        "identity_level": _str(identity.get("level"), 32),
        "verified": bool(identity.get("verified")),
        "feedback": feedback if feedback is not None and 1 <= feedback <= 5 else None,
        "feedback_comment": _str(state.get("feedback_comment"), MAX_TEXT),
        "turns": 0,
        "keypad_only": bool(state.get("keypad_only")),
        "caller_hash": caller_hash(str(stored.get("caller") or state.get("caller") or ""), salt),
    }
    steps = [str(step)[:64] for step in _list(state.get("visited")) if isinstance(step, str)][:MAX_TURNS]
    turns = _turns(_list(state.get("transcript")), _timings(stored.get("timings")))
    call["turns"] = len(turns)
    return {"call": call, "steps": steps, "turns": turns}


def _outcome(stored: dict[str, Any], state: dict[str, Any], ending: dict[str, Any]) -> tuple[str, str | None]:
    if ending.get("action") == "transfer" or state.get("outcome") == "transfer":
        return "transferred", ending.get("reason") or state.get("reason") or "unknown"
    if state.get("outcome") == "hangup":
        return "completed", state.get("reason") or "completed"
    if state.get("outcome") == "caller_hangup":
        return "hung_up", "caller_hangup"
    if not state and str(stored.get("status") or "") in UNANSWERED:
        return "unanswered", str(stored["status"])
    if ending.get("action") == "hangup":
        return "completed", ending.get("reason") or "completed"
    return "hung_up", "caller_hangup" if state else "before_flow"


def _turns(transcript: list[Any], timings: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for entry in transcript:
        if not isinstance(entry, dict) or entry.get("who") != "caller":
            continue
        if len(turns) >= MAX_TURNS:
            break
        understood = _dict(entry.get("understood"))
        result = understood.get("result")
        if "digits" in entry:
            kind = "keys"
        elif entry.get("event") == "no_input":
            kind, result = "no_input", result or "no_input"
        else:
            kind = "speech"
        timing = timings.get(len(turns) + 1, {})
        turns.append({
            "step": _str(entry.get("step"), 64),
            "kind": kind,
            "text": str(entry.get("text") or "")[:MAX_TEXT],
            "digits": _str(entry.get("digits"), 64),
            "asr_confidence": _float(entry.get("confidence")),
            "intent": _str(understood.get("intent"), 64),
            "intent_confidence": _float(understood.get("confidence")),
            "result": result if result in TURN_RESULTS else "other",
            "recognition_ms": _int(timing.get("recognition_ms")),
            "response_ms": _int(timing.get("response_ms")),
        })
    return turns


def _timings(value: Any) -> dict[int, dict[str, Any]]:
    """``timings`` by caller turn number (the ``turn`` key, counted from 1)."""
    found: dict[int, dict[str, Any]] = {}
    for item in _list(value):
        if isinstance(item, dict) and isinstance(item.get("turn"), int):
            found[item["turn"]] = item
    return found


def _local(value: Any, timezone: str | None) -> dt.datetime | None:
    """The engine's local wall time as an aware UTC datetime."""
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=ZoneInfo(timezone)) if timezone else moment.astimezone()
        except (ZoneInfoNotFoundError, ValueError):
            moment = moment.astimezone()
    return moment.astimezone(dt.timezone.utc)


def _epoch(value: Any) -> dt.datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e11:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any, limit: int) -> str | None:
    return None if value is None or value == "" else str(value)[:limit]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
