"""What one card on the desk shows, read defensively from a transfer's record.

The record comes from Redis (``docs/handoff.schema.json``), and the desk treats it as hostile like
any input: every field is checked for its type and falls back to "not known" rather than failing
the page; the template escapes every text. Caller turns the recogniser was unsure of (confidence
below ``LOW_CONFIDENCE``) are marked, in words as well as colour, so the agent knows which words to
check with the caller.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from voicebot.desk.board import Transfer
from voicebot.handoff.contract import SCHEMA_VERSION

LOW_CONFIDENCE = 0.6
REASONS = {
    "explicit_request": "Asked for a person",
    "flow": "Flow hands over",
    "not_understood": "Not understood",
    "low_confidence": "Unsure what was said",
    "no_input": "Caller said nothing",
    "no_speech": "No speech",
    "loop_guard": "Call went in circles",
    "verification_failed": "Identity check failed",
    "error": "Something broke",
    "capacity": "All lines busy",
    "callback_requested": "Call back requested",
}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def percent(confidence: float | None) -> str:
    return "" if confidence is None else f"{round(confidence * 100)} %"


def _identity(raw: Any) -> dict[str, Any]:
    identity = raw if isinstance(raw, dict) else {}
    customer = identity.get("customer") if isinstance(identity.get("customer"), dict) else {}
    return {"verified": identity.get("verified") is True, "level": _str(identity.get("level")),
            "method": _str(identity.get("method")), "customer_name": _str(customer.get("name")),
            "customer_number": _str(customer.get("number")),
            "attempts": [f"{_str(a.get('method')) or '?'}: {_str(a.get('outcome')) or '?'}"
                         for a in identity.get("attempts") or [] if isinstance(a, dict)]}


def _transcript(raw: Any) -> list[dict[str, Any]]:
    turns = []
    for turn in raw if isinstance(raw, list) else []:
        if not isinstance(turn, dict):
            continue
        who = "caller" if turn.get("who") == "caller" else "bot"
        confidence = _number(turn.get("confidence"))
        text = _str(turn.get("text"))
        if turn.get("digits"):
            text = (text + " " if text else "") + f"[keys {_str(turn.get('digits'))}]"
        if turn.get("event") == "no_input":
            text = text or "(said nothing)"
        turns.append({"who": who, "text": text, "confidence": percent(confidence),
                      "low": who == "caller" and confidence is not None and confidence < LOW_CONFIDENCE})
    return turns


def card(transfer: Transfer, now_ms: int) -> dict[str, Any]:
    """The card of ``transfer`` for the template (and its version, for the page to tell a changed card)."""
    record = transfer.record or {}
    intent = record.get("intent") if isinstance(record.get("intent"), dict) else None
    slots = record.get("slots") if isinstance(record.get("slots"), dict) else {}
    reason = _str(record.get("reason"))
    turns = _transcript(record.get("transcript"))
    waited_until = transfer.claimed_at_ms or now_ms
    view = {
        "call_id": transfer.call_id,
        "dom_id": "card-" + hashlib.sha256(transfer.call_id.encode()).hexdigest()[:16],
        "queue": transfer.queue,
        "readable": transfer.record is not None,
        "version_note": ("" if record.get("schema_version") in (None, SCHEMA_VERSION)
                         else f"record version {record.get('schema_version')!r}: some fields may be missing"),
        "caller": _str(record.get("caller")) or "number withheld",
        "started_at": _str(record.get("started_at")),
        "language": _str(record.get("language")),
        "reason": REASONS.get(reason, reason or "not given"),
        "summary": _str(record.get("summary")),
        "identity": _identity(record.get("identity")),
        "intent": None if intent is None else {"label": _str(intent.get("label")) or _str(intent.get("name")),
                                               "confidence": percent(_number(intent.get("confidence")))},
        "slots": [(str(k), str(v)) for k, v in slots.items() if isinstance(v, (str, int, float, bool))],
        "partial_slots": [s for s in record.get("partial_slots") or [] if isinstance(s, str)],
        "after_hours": record.get("after_hours") is True,
        "keypad_only": record.get("keypad_only") is True,
        "failures": len(record.get("failures") or []) if isinstance(record.get("failures"), list) else 0,
        "transcript": turns,
        "low_turns": sum(1 for t in turns if t["low"]),
        "waiting_since_ms": transfer.waiting_since_ms,
        "waited": clock(max(0, waited_until - transfer.waiting_since_ms) / 1000),
        "waiting": transfer.agent is None,
        "agent": transfer.agent,
    }
    view["version"] = hashlib.sha256(json.dumps([transfer.entry_ids, transfer.agent, transfer.claimed_at_ms],
                                                sort_keys=True).encode()).hexdigest()[:12]
    return view


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour), as the page's own ticking clock writes it."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
