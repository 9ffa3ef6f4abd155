"""When no agent takes a transferred call: the caller is told, offered a call back or a text message,
and let go politely. Never silence, never a dead end.

It starts when the agent's leg ends unanswered (``<Dial action>``: ``DialCallStatus`` no-answer,
busy, failed or canceled) or when a transfer comes after hours (the flow's ``closed_queue``, where
nobody answers the phone). Twilio's voice reads the offer inside a one-key ``<Gather>``:

- 1: a call back. The call's handoff record goes through the same queue as a transfer, as a
  call-back task (``reason: callback_requested``, ``handoff/contract.py``), so the agents' desk and
  the CRM webhooks show it in the call's queue;
- 2: a text message with what the caller asked (the same summary and the same checks as a flow's
  ``sms`` step: allowed countries, a daily limit per number, see telephony/sms.py);
- nothing, or another key: the offer once more, then "please call again later".

A caller whose number is withheld (or not a phone number) can be neither called back nor texted:
they hear that nobody is available and to call again later. The choice is taken once per call
(``CallStore.update_first``), so Twilio repeating a request does not book a second call back or send
a second message.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from voicebot.dialog.actions import SendSms
from voicebot.dialog.context import caller_summary
from voicebot.dialog.state import CallState
from voicebot.handoff.contract import callback_record, seconds_since
from voicebot.telephony import twiml
from voicebot.telephony.failover import failure_transfer
from voicebot.telephony.logsafe import esc
from voicebot.telephony.sms import E164

log = logging.getLogger("voicebot.unreachable")

PATH = "/twilio/unreachable"
UNANSWERED = ("no-answer", "busy", "failed", "canceled")
"""``DialCallStatus`` values of an agent's leg that never reached the agent."""
AFTER_HOURS = "after_hours"
OFFERS = 2
"""How often the offer is read before the caller is let go without a choice."""
CALLBACK, TEXT = "1", "2"


def _url(public: str, why: str, offer: int) -> str:
    return f"{public}{PATH}?{urlencode({'why': why, 'offer': offer})}"


def _words(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def _reachable(number: Any) -> bool:
    return isinstance(number, str) and bool(E164.fullmatch(number))


def offer(rt: Any, public: str, call_sid: str, record: dict[str, Any], why: str, *, told: str) -> str:
    """The first offer for a call nobody took; ``told`` is what the caller is told first (why)."""
    flow = rt.call_flow(record)
    rt.metrics.unreachable.labels(why=why).inc()
    rt.store.update(call_sid, unreachable={"why": why})
    log.warning("call %s: no agent took the call (%s); offering a call back or a text message", esc(call_sid),
                esc(why, 32))
    if not _reachable(record.get("caller")):
        return twiml.hangup(_words(told, flow.msg("call_again"), flow.msg("goodbye")), flow.language)
    return twiml.offer(_url(public, why, 1), _words(told, flow.msg("unreachable_offer")), flow.language)


def choose(rt: Any, public: str, call_sid: str, record: dict[str, Any], digits: str, why: str, offered: int) -> str:
    """The caller's key after an offer: book a call back, send the text message, or offer again."""
    flow = rt.call_flow(record)
    if "unreachable" not in record or not _reachable(record.get("caller")):
        # Only a call that was offered a choice gets here from Twilio; anything else just ends.
        return twiml.hangup(flow.msg("goodbye"), flow.language)
    if digits in (CALLBACK, TEXT):
        choice = "callback" if digits == CALLBACK else "text"
        if rt.store.update_first(call_sid, "unreachable_choice", choice):
            rt.metrics.unreachable_choices.labels(choice=choice).inc()
            if choice == "callback":
                _book_callback(rt, call_sid, record, why)
            else:
                _send_text(rt, call_sid, record, flow)
        said = flow.msg("callback_booked") if choice == "callback" else flow.msg("sms_sent")
        return twiml.hangup(_words(said, flow.msg("goodbye")), flow.language)
    if offered < OFFERS:
        again = flow.msg("invalid_key") if digits else ""
        return twiml.offer(_url(public, why, offered + 1), _words(again, flow.msg("unreachable_offer")),
                           flow.language)
    rt.metrics.unreachable_choices.labels(choice="none").inc()
    return twiml.hangup(_words(flow.msg("call_again"), flow.msg("goodbye")), flow.language)


def _book_callback(rt: Any, call_sid: str, record: dict[str, Any], why: str) -> None:
    """The call's record, as a call-back task, through the handoff queue (as a transfer's goes)."""
    flow = rt.call_flow(record)
    ending = record.get("ending") or {}
    context = ending.get("context") or {}
    if not context.get("call_id"):
        # A transfer stored without its record (it should not happen): the engine builds one.
        context = failure_transfer(rt.engine_for(flow.id, flow.version), call_sid, record)[0].context
        context["queue"] = ending.get("queue") or context.get("queue")
    waited = seconds_since(str(context.get("started_at", "")), rt.local_time(flow))
    task = callback_record(context, why=why, waited_seconds=waited)
    rt.enqueue_handoff(task)
    log.info("call %s: call back requested in queue %s", esc(call_sid), esc(task.get("queue")))


def _send_text(rt: Any, call_sid: str, record: dict[str, Any], flow: Any) -> None:
    """What the caller asked, as a flow's sms step words it (no secrets, postcodes masked)."""
    state = record.get("state")
    summary = caller_summary(CallState.from_dict(state), flow) if state else ""
    body = flow.msg("sms_body", summary=summary or flow.msg("summary_no_intent"))
    rt.send_sms(call_sid, str(record.get("called", "")), SendSms(to=str(record["caller"]), text=body))
