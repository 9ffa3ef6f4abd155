"""Every sentence the engine says, built in one place, and the ones a flow can say without slot values.

The engine builds what the caller hears only through these functions, and ``static_sentences``
calls the same functions to list what can be rendered ahead of calls (``voicebot audio build``,
the service's start-up), so the two cannot drift apart.

Each function that needs the call's data takes ``values``: the slots filled so far, as the words
the caller hears (``{"meterstand": "12345"}``). ``values=None`` asks what the sentence is *before*
any slot value is known: then a sentence built from a template with a ``{placeholder}`` is None,
and so is every sentence built from it. Placeholders the engine fills from the flow itself (an
intent's label, an answer's source, a choice list) are not slot values: those sentences are known.

Pure: no I/O, no call state; the engine decides which sentence a turn needs.
"""

from __future__ import annotations

import string
from typing import Any, Iterable, Mapping, Optional

from voicebot.dialog import keypad, verification
from voicebot.flow import Flow
from voicebot.flow.schema import AskStep, FeedbackStep, RouteStep, VerifyStep

Values = Optional[Mapping[str, str]]
"""The call's slot values as spoken words, or None for "no slot value known"."""

LISTENING = ("route", "ask", "feedback")
"""Step types that ask a question and wait for the caller."""

RETRY_KINDS = ("not_understood", "out_of_scope", "invalid_key", "confirm_no", "no_input")
"""Messages said before a question is asked again."""


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _has_placeholder(template: str) -> bool:
    try:
        return any(name is not None for _, name, _, _ in string.Formatter().parse(template))
    except ValueError:  # a stray brace: not a sentence that can be known ahead
        return True


def fill(template: str | None, values: Values) -> str | None:
    """A flow's own text with the call's slot values (a slot not filled yet is left empty).

    With ``values=None``: the text when it has no placeholder, else None.
    """
    if not template:
        return ""
    if values is None:
        if _has_placeholder(template):
            return None
        values = {}
    return template.format_map(_Blank(values))


def _join(first: str | None, second: str | None) -> str | None:
    """``f"{first} {second}"``, or None when either part is unknown."""
    return None if first is None or second is None else f"{first} {second}"


# -- a step's own words ---------------------------------------------------------------------------


def own_words(flow: Flow, step_id: str, values: Values, keypad_only: bool = False) -> tuple[str | None, str]:
    """A step's own words and the prompt id of their recording: on a keypad-only call the step's
    ``keypad`` text (prompt id ``<id>_keypad``) when it has one."""
    own = keypad.own_text(flow, step_id) if keypad_only else None
    if own:
        return fill(own[0], values), own[1]
    return fill(flow.prompt_text(step_id), values), flow.prompt_id(step_id)


def keypad_question(flow: Flow, step_id: str, step: Any, values: Values,
                    keypad_only: bool) -> list[tuple[str | None, str | None]]:
    """A question for keys as (text, prompt id) pairs: the step's ``keypad`` text, else its question
    and what to press (a route step always adds its menu). Empty texts are left out."""
    own = keypad.own_text(flow, step_id) if keypad_only else None
    parts: list[tuple[str | None, str | None]] = [own_words(flow, step_id, values, keypad_only)]
    if own is None or isinstance(step, RouteStep):
        hint = keypad.key_hint(flow, step)
        if hint:
            parts.append((hint, None))
    return [(text, prompt_id) for text, prompt_id in parts if text is None or text]


def menu(flow: Flow, step: RouteStep) -> str:
    """A route step's numbered menu of keys."""
    return keypad.menu_text(flow, step)


def reprompt(flow: Flow, step_id: str, step: Any, values: Values, *, by_keys: bool = False,
             keypad_only: bool = False) -> str | None:
    """The more specific second question: the step's reprompt, else the question plus a hint.
    By keys: the menu of a route step, else the keypad question plus what to press."""
    if by_keys:
        if isinstance(step, RouteStep):
            return menu(flow, step)
        texts = [text for text, _ in keypad_question(flow, step_id, step, values, keypad_only)]
        return None if None in texts else " ".join(t for t in texts if t is not None)
    if getattr(step, "reprompt", None):
        return fill(step.reprompt, values)
    question = own_words(flow, step_id, values, keypad_only)[0]
    if isinstance(step, AskStep):
        choices = ", ".join(v.replace("_", " ") for v in (step.choices or {}))
        return _join(question, flow.msg("hint_" + step.slot_type, choices=choices))
    if isinstance(step, FeedbackStep):
        return _join(question, flow.msg("hint_score"))
    return question


# -- what the engine adds -------------------------------------------------------------------------


def retry(flow: Flow, kind: str, again: str | None) -> str | None:
    """A question asked again after a miss: "Sorry, ... <again>" (``kind`` is one of ``RETRY_KINDS``)."""
    return _join(flow.msg(kind), again)


def score_retry(flow: Flow, keypad_only: bool) -> str:
    """A feedback step's answer that is not a score."""
    if keypad_only:
        return f"{flow.msg('invalid_key')} {flow.msg('keys_score')}"
    return f"{flow.msg('not_understood')} {flow.msg('hint_score')}"


def confirm_intent(flow: Flow, intent: str) -> str:
    """The yes/no question for an intent understood with middling confidence."""
    return flow.msg("confirm_intent", label=flow.spec.intents[intent].label)


def confirm_value(flow: Flow, step: AskStep, values: Values, shown: str | None = None,
                  keypad_only: bool = False) -> str | None:
    """The yes/no question reading back a value (``shown``: the value as spoken); by keys with 1/2."""
    template = step.confirm or flow.messages["confirm_value"]
    question = fill(template, None if values is None else {**values, "value": shown or "", step.slot: shown or ""})
    return with_keys_yes_no(flow, question) if keypad_only else question


def with_keys_yes_no(flow: Flow, question: str | None) -> str | None:
    """A yes/no question with what to press."""
    return _join(question, flow.msg("keys_yes_no"))


def speech_unavailable(flow: Flow) -> str:
    """The notice that the call goes on by keypad."""
    return flow.msg("speech_unavailable")


def source(flow: Flow, step: Any) -> str:
    """Where an answer step's information comes from."""
    return flow.msg("source", source=step.source)


def goodbye(flow: Flow) -> str:
    return flow.msg("goodbye")


def hangup_words(flow: Flow, step_id: str, values: Values, keypad_only: bool = False) -> tuple[str | None, str | None]:
    """A hangup step's last words: its own (with their prompt id), else the goodbye."""
    text, prompt_id = own_words(flow, step_id, values, keypad_only)
    if text is None or text:
        return text, prompt_id
    return goodbye(flow), None


def thanks(flow: Flow, step: FeedbackStep, values: Values) -> str | None:
    """What a feedback step says before the call ends."""
    return fill(step.thanks, values) if step.thanks else flow.msg("feedback_thanks")


def feedback_comment(flow: Flow) -> str:
    """The question for a few words after the score (a feedback step with ``comment: true``)."""
    return flow.msg("feedback_comment")


def transfer_words(flow: Flow, say: str | None = None, *, after_hours: bool = False) -> str:
    """What the caller hears when the call goes to a person: a transfer step's own words, else the
    flow's, else the default; after hours the closed notice."""
    settings = flow.spec.transfer
    if after_hours:
        say = settings.closed_say or flow.msg("closed")
    return say or settings.say or flow.msg("transfer")


def sms_said(flow: Flow, step_id: str, values: Values, keypad_only: bool = False) -> str | None:
    """What an sms step says after sending: its own words, else the default."""
    text = own_words(flow, step_id, values, keypad_only)[0]
    return None if text is None else text or flow.msg("sms_sent")


def sms_unavailable(flow: Flow) -> str:
    return flow.msg("sms_unavailable")


def resume_offer(flow: Flow, intent: str, keypad_only: bool = False) -> str | None:
    """The yes/no question to a caller whose earlier call about ``intent`` stopped before it was done:
    it names the intent's ``topic`` (else its label); by keys with 1/2."""
    item = flow.spec.intents[intent]
    question = flow.msg("resume_offer", topic=getattr(item, "topic", None) or item.label)
    return with_keys_yes_no(flow, question) if keypad_only else question


def resume_yes(flow: Flow) -> str:
    """Said when the caller goes on with the earlier call, before its step is asked again."""
    return flow.msg("resume_yes")


# -- a verify step -------------------------------------------------------------------------------

_SPOKEN_HINTS = {"customer_number": "hint_digits", "birth_date": "hint_birth_date",
                 "house_number": "hint_house_number", "postcode": "hint_postcode"}
_KEY_HINTS = {"birth_date": "keys_date", "house_number": "keys_number"}


def verify_question(flow: Flow, field: str, by_keys: bool = False) -> str:
    """A verify step's question for one value (``verify_<field>``); by keys with what to press."""
    question = flow.msg(f"verify_{field}")
    if not by_keys or field in verification.KEYS_ONLY:
        return question
    if field == "customer_number":
        low, high = verification.customer_number_length(flow.spec)
        hint = flow.msg("keys_digits_fixed", count=low) if low == high else flow.msg("keys_digits")
    else:
        hint = flow.msg(_KEY_HINTS[field]) if field in _KEY_HINTS else ""
    return f"{question} {hint}" if hint else question


def verify_reprompt(flow: Flow, field: str, by_keys: bool = False) -> str:
    """The question asked again after a miss or a silence: with how to say it (by keys: the same
    question). A PIN: how to key it, and not to say it aloud."""
    if field in verification.KEYS_ONLY:
        return flow.msg(f"hint_{field}")
    if by_keys or field not in _SPOKEN_HINTS:
        return verify_question(flow, field, by_keys)
    return f"{flow.msg(f'verify_{field}')} {flow.msg(_SPOKEN_HINTS[field])}"


def verify_again(flow: Flow, question: str) -> str:
    """A check that failed, and its method's first question asked again."""
    return f"{flow.msg('verify_failed')} {question}"


def verify_ok(flow: Flow) -> str:
    """The check worked (never with the values)."""
    return flow.msg("verify_ok")


def verify_failed(flow: Flow) -> str:
    """The last check that may fail failed; a person takes over next."""
    return flow.msg("verify_failed")


def verification_failed_words(flow: Flow) -> str:
    """What the caller hears when verification hands the call to a person: alike for every cause."""
    return transfer_words(flow, flow.msg("verify_locked"))


def _verify_sentences(flow: Flow, step_id: str, step: VerifyStep, keypad_only: bool
                      ) -> list[tuple[str | None, str | None]]:
    found: list[tuple[str | None, str | None]] = [own_words(flow, step_id, None, keypad_only)]
    for method in step.methods:
        if keypad_only and not verification.keyable_method(method):
            continue
        fields = verification.METHOD_FIELDS.get(method, ())
        for field in fields:
            again = verify_reprompt(flow, field, keypad_only)
            found += [(verify_question(flow, field, keypad_only), None), (retry(flow, "not_understood", again), None),
                      (retry(flow, "no_input", again), None)]
        if fields:
            found.append((verify_again(flow, verify_question(flow, fields[0], keypad_only)), None))
    return found + [(verify_ok(flow), None), (verify_failed(flow), None), (verification_failed_words(flow), None)]


def _listens(step: Any) -> bool:
    """Does this step wait for the caller, and can a call by keypad answer it?"""
    if isinstance(step, VerifyStep):
        return verification.keyable(step)
    return step.type in LISTENING and keypad.keyable(step)


# -- what a flow can say without slot values -----------------------------------------------------


def static_sentences(flow: Flow) -> list[tuple[str, str | None]]:
    """Every (text, prompt id) the engine can say in this flow without a slot value, in flow order.

    For rendering prompt audio ahead of calls: the texts are the engine's exact words, because the
    audio cache is keyed by the exact text. A call by voice and a call by keypad are both covered.
    """
    found: list[tuple[str | None, str | None]] = []
    for keypad_only in (False, True):
        for step_id, step in flow.spec.steps.items():
            if isinstance(step, VerifyStep):
                if not keypad_only or verification.keyable(step):
                    found += _verify_sentences(flow, step_id, step, keypad_only)
            elif step.type in LISTENING:
                if keypad_only and not keypad.keyable(step):
                    continue  # the engine hands such a call to a person
                found += _question(flow, step_id, step, keypad_only)
                found += [(text, None) for text in _retries(flow, step_id, step, keypad_only)]
            else:
                found += _passing(flow, step_id, step, keypad_only)
    if any(_listens(step) for step in flow.spec.steps.values()):
        found.append((speech_unavailable(flow), None))
    found.append((transfer_words(flow), None))  # any step: asked for, misses, silence, failures
    if flow.spec.hours and flow.spec.transfer.closed_queue:
        found.append((transfer_words(flow, after_hours=True), None))
    found += _resume_sentences(flow)
    return list(dict.fromkeys((text, prompt_id) for text, prompt_id in found if text and text.strip()))


def _passing(flow: Flow, step_id: str, step: Any, keypad_only: bool) -> list[tuple[str | None, str | None]]:
    """What a step that does not listen says when the call passes through it."""
    kind = step.type
    if kind == "say":
        return [own_words(flow, step_id, None, keypad_only)]
    if kind == "answer":
        return [own_words(flow, step_id, None, keypad_only), (source(flow, step), None)]
    if kind == "sms":
        return [(sms_said(flow, step_id, None, keypad_only), None), (sms_unavailable(flow), None)]
    if kind == "transfer":
        own = own_words(flow, step_id, None, keypad_only)[0]
        return [] if own is None else [(transfer_words(flow, own or None), None)]
    if kind == "hangup":
        return [hangup_words(flow, step_id, None, keypad_only)]
    return []  # hours: says nothing


def _question(flow: Flow, step_id: str, step: Any, keypad_only: bool) -> list[tuple[str | None, str | None]]:
    if keypad_only:
        return keypad_question(flow, step_id, step, None, keypad_only)
    return [own_words(flow, step_id, None)]


def _retries(flow: Flow, step_id: str, step: Any, keypad_only: bool) -> list[str | None]:
    """What a listening step says after a miss, a silence, a denied or a pending confirmation."""
    again = reprompt(flow, step_id, step, None, by_keys=keypad_only, keypad_only=keypad_only)
    if isinstance(step, FeedbackStep):
        comment = [feedback_comment(flow)] if step.comment and not keypad_only else []
        return [score_retry(flow, keypad_only), retry(flow, "no_input", again), goodbye(flow),
                thanks(flow, step, None), *comment]
    agains = [again]
    kinds = ["not_understood", "no_input"]
    questions: list[str | None] = []
    if isinstance(step, RouteStep):
        if not keypad_only:  # keys at the open question: the menu, asked again as the menu
            agains.append(menu(flow, step))
            texts: list[str | None] = [menu(flow, step)]
        else:
            texts = []
        kinds.append("invalid_key")
        if flow.classifier is not None:
            kinds += ["out_of_scope", "confirm_no"]
            questions = [confirm_intent(flow, name) for name in step.routes if name in flow.spec.intents]
            if keypad_only:  # a pending question asked again when speech stops
                questions += [with_keys_yes_no(flow, q) for q in questions]
        texts += [retry(flow, kind, text) for text in agains for kind in kinds
                  if kind != "invalid_key" or text != again or keypad_only]
    else:
        texts = [retry(flow, kind, again) for kind in kinds]
        if not step.is_secret:
            texts.append(retry(flow, "confirm_no", again))
            questions = [confirm_value(flow, step, None, keypad_only=keypad_only)]
    return texts + [text for question in questions
                    for text in (question, retry(flow, "no_input", question))]


def _resume_sentences(flow: Flow) -> list[tuple[str | None, str | None]]:
    """The offer to go on with an earlier call, for each intent it can name, asked again after a miss."""
    if not flow.spec.resume.window_minutes or not flow.spec.intents:
        return []
    found: list[tuple[str | None, str | None]] = [(resume_yes(flow), None)]
    for intent in flow.spec.intents:
        for keypad_only in (False, True):
            offer = resume_offer(flow, intent, keypad_only)
            found += [(offer, None), (retry(flow, "not_understood", offer), None),
                      (retry(flow, "no_input", offer), None)]
    return found


def sayers() -> Iterable[Any]:
    """The functions whose results the engine says (for tests that check where a sentence comes from)."""
    return (own_words, keypad_question, menu, reprompt, retry, score_retry, confirm_intent, confirm_value,
            with_keys_yes_no, speech_unavailable, source, goodbye, hangup_words, thanks, feedback_comment,
            transfer_words, sms_said, sms_unavailable, resume_offer, resume_yes, verify_question, verify_reprompt,
            verify_again, verify_ok, verify_failed, verification_failed_words)
