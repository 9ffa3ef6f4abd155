"""What travels with a warm transfer, and the short summaries for agents and callers.

The agent must never ask the caller to repeat themselves, so the context carries the intent, every
value given, why the call was handed over, a one-line summary and the transcript. Secret values
appear only as "provided" (their salted hash stays in the call state); the transcript is already
masked when it is written.

The caller's own summary (the text message) lists what the caller asked and gave, not the
assistant's questions: yes/no answers ("Wilt u een samenvatting per sms?" - "ja") are left out
of it, and the pages an answer came from are added, so the message holds the link the caller was
told about. The agent's summary and context keep every slot.

A postcode keyed in on a call without speech holds only its four digits: the summary says so and
``partial_slots`` names it, so the agent asks for the letters instead of trusting a half address.
``keypad_only`` tells the agent the caller could not be understood by speech.

``earlier_call`` (``{"call_id", "transcript"}``, else None) is the unfinished call this one went on
with: the agent reads what was said then without it being mixed into this call's transcript.

The transcript an agent gets holds what was said and keyed (``AGENT_ENTRY_KEYS``, the handoff
contract's shape), not the engine's notes on how each turn was understood, which are for call records.

``identity`` says who the caller was shown to be: ``verified`` (the flow's highest level reached),
the ``level`` and the ``method`` that gave it, the ``customer`` (number and name, nothing else)
and every check made as method and outcome. The values the caller gave for a check are never in it.
"""

from __future__ import annotations

import copy
from typing import Any

from voicebot.dialog.keypad import is_partial_postcode
from voicebot.dialog.present import masked, spoken
from voicebot.dialog.state import CallState
from voicebot.flow import Flow
from voicebot.flow.schema import AskStep, VerifyStep


AGENT_ENTRY_KEYS = ("who", "step", "text", "digits", "confidence", "event")
"""The keys of a transcript entry in a handoff context (docs/handoff.schema.json)."""


def for_agent(transcript: Any) -> list[dict[str, Any]]:
    """A transcript as the handoff context carries it: each entry with the contract's keys only."""
    entries = transcript if isinstance(transcript, list) else []
    return [{key: entry[key] for key in AGENT_ENTRY_KEYS if key in entry} for entry in entries
            if isinstance(entry, dict)]


def _slot_types(flow: Flow) -> dict[str, str]:
    return {s.slot: s.slot_type for s in flow.spec.steps.values() if isinstance(s, AskStep)}


def _topic(state: CallState, flow: Flow) -> str:
    if state.intent:
        return flow.msg("summary_intent", label=state.intent.replace("_", " "))
    return flow.msg("summary_no_intent")


def _details(state: CallState, flow: Flow, mask: bool, replies: bool = True) -> str:
    """The slots as "name value" parts; ``replies=False`` leaves out yes/no answers to the assistant's questions."""
    types = _slot_types(flow)
    def shown(name: str, value: Any) -> str:
        kind = types.get(name, "text")
        if kind in ("yes_no", "choice", "date"):
            return spoken(value, kind, flow.language, flow.messages)
        if kind == "postcode" and is_partial_postcode(value) and not mask:
            return flow.msg("postcode_digits_only", digits=value)
        return masked(value, kind) if mask else str(value)

    parts = [f"{word(flow, name)} {shown(name, value)}" for name, value in state.slots.items()
             if replies or types.get(name) != "yes_no"]
    parts += [f"{word(flow, name)} {flow.msg('provided')}" for name in state.secrets]
    return flow.msg("summary_slots", slots=", ".join(parts)) if parts else ""


def word(flow: Flow, name: str) -> str:
    """How a slot, method, outcome or level name reads in a summary: the flow's ``word_<name>``
    message, else the name with spaces."""
    return flow.messages.get(f"word_{name}") or str(name).replace("_", " ")


def identity(state: CallState) -> dict[str, Any]:
    """What the call showed about who is calling, for the agent (no values the caller gave)."""
    found = state.identity
    customer = found.get("customer")
    return {
        "verified": bool(found.get("verified")),
        "level": found.get("level"),
        "method": found.get("method"),
        "customer": {"number": customer.get("number"), "name": customer.get("name")} if customer else None,
        "attempts": [{"method": a.get("method"), "outcome": a.get("outcome")} for a in found.get("attempts", [])],
    }


def _identity_summary(state: CallState, flow: Flow) -> str:
    """How the caller was identified, and the checks made: only in a flow that verifies callers."""
    found = state.identity
    if not found.get("attempts") and not any(isinstance(s, VerifyStep) for s in flow.spec.steps.values()):
        return ""
    if found.get("method"):
        parts = [flow.msg("summary_identity", level=word(flow, found["level"]), method=word(flow, found["method"]))]
    else:
        parts = [flow.msg("summary_identity_none")]
    tried = [f"{word(flow, a['method'])} {word(flow, a['outcome'])}" for a in found.get("attempts", [])]
    if tried:
        parts.append(flow.msg("summary_identity_attempts", attempts=", ".join(tried)))
    return " ".join(parts)


def agent_summary(state: CallState, flow: Flow, reason: str) -> str:
    reason_text = flow.messages.get(f"reason_{reason}", reason)
    parts = [_topic(state, flow), _details(state, flow, mask=False), _identity_summary(state, flow),
             flow.msg("summary_reason", reason=reason_text)]
    return " ".join(p for p in parts if p)


def caller_summary(state: CallState, flow: Flow) -> str:
    """For the text message a caller may ask for: what they asked and gave (no secrets, postcodes
    masked, no yes/no replies to the assistant's questions) and where the answers they heard come from."""
    sources = [flow.msg("source", source=source) for source in dict.fromkeys(state.sources)]
    parts = (_topic(state, flow), _details(state, flow, mask=True, replies=False), *sources)
    return " ".join(p for p in parts if p)


def partial_slots(state: CallState, flow: Flow) -> list[str]:
    """Slots whose value is known only in part (a postcode keyed in as its four digits)."""
    types = _slot_types(flow)
    return sorted(name for name, value in state.slots.items()
                  if types.get(name) == "postcode" and is_partial_postcode(value))


def build_context(state: CallState, flow: Flow, reason: str, queue: str, *, after_hours: bool = False) -> dict[str, Any]:
    intent = None
    if state.intent:
        intent = {"name": state.intent, "label": flow.spec.intents[state.intent].label,
                  "confidence": state.intent_confidence}
    return {
        "call_id": state.call_id,
        "flow": state.flow,
        "language": state.language,
        "caller": state.caller,
        "called": state.called,
        "started_at": state.started_at,
        "queue": queue,
        "reason": reason,
        "after_hours": after_hours,
        "intent": intent,
        "slots": dict(state.slots),
        "partial_slots": partial_slots(state, flow),
        "keypad_only": state.keypad_only,
        "secrets_provided": sorted(state.secrets),
        "identity": identity(state),
        "step": state.step,
        "turns": state.turns,
        "failures": list(state.failures),
        "sources": list(state.sources),
        "summary": agent_summary(state, flow, reason),
        "transcript": for_agent(state.transcript),
        "earlier_call": _earlier_for_agent(state.earlier_call),
    }


def _earlier_for_agent(earlier: dict[str, Any] | None) -> dict[str, Any] | None:
    if earlier is None:
        return None
    found = copy.deepcopy(earlier)
    found["transcript"] = for_agent(found.get("transcript"))
    return found
