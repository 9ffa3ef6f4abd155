"""The rules of a verify step that need no call: what each method asks, in which order, and how an
answer becomes a value.

Each method asks for its values in a fixed order, the secret one last (a date of birth, a PIN, a
full postcode). The engine keeps the values that are not secret as ordinary slots
(``customer_number``, ``house_number``), so a value the caller gave earlier is not asked again;
a secret goes from the caller's answer straight into the ``CheckIdentity`` action and is never kept
in the call state, not even hashed.

Each value is read by the slot parser of its kind (``nlu.slots``: a date of birth lies in the past,
a house number may carry a letter) and keyed by the keypad rules of that kind
(``keypad.value_from_keys``), so a verify question understands what an ``ask`` step would. A PIN
is only ever keyed in, so it never passes through speech recognition; the letters of a postcode
cannot be keyed, so that method is skipped on a call that runs by keypad.

Pure: no I/O, no call state beyond the plain values passed in.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from voicebot.dialog import keypad
from voicebot.dialog.events import Digits, Event, Utterance
from voicebot.flow.schema import AskStep, FlowSpec, VerifyStep
from voicebot.nlu.numbers import digit_phrases
from voicebot.nlu.slots import PIN_LENGTH, parse_slot

METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "caller_id": (),
    "customer_dob": ("customer_number", "birth_date"),
    "postcode_house": ("house_number", "postcode"),
    "pin": ("customer_number", "pin"),
}
"""What each method asks for, in the order asked (the secret last)."""

SECRET_FIELDS = frozenset({"birth_date", "pin", "postcode"})
"""Values that go only into the check: never a slot, never the transcript."""

KEYS_ONLY = frozenset({"pin"})
"""Values asked for keys only, on every call."""

SPEECH_ONLY = frozenset({"postcode"})
"""Values keys cannot give (the postcode's letters)."""

SLOT_TYPES = {"customer_number": "digits", "birth_date": "birth_date", "house_number": "house_number",
              "postcode": "postcode", "pin": "pin"}
"""The slot type whose parser and keypad rule read each value."""

CUSTOMER_NUMBER_LENGTH = (6, 10)


def new_progress(step: str, *, then: str | None = None, needed: str | None = None) -> dict[str, Any]:
    """``CallState.verify`` for a verify step just entered: ``then`` is where a guarded intent's route
    goes once verified, ``needed`` the level that intent needs (else the step's own level)."""
    return {"step": step, "then": then, "needed": needed, "method": 0, "field": None, "asked": [],
            "fresh": False, "checking": None}


def to_method(progress: dict[str, Any], index: int) -> None:
    """Go on with the method at ``index``, asking its values afresh."""
    progress.update(method=index, field=None, asked=[], fresh=False)


def keyable_method(method: str) -> bool:
    return not any(f in SPEECH_ONLY for f in METHOD_FIELDS.get(method, ()))


def keyable(step: VerifyStep) -> bool:
    """Can a call by keypad be verified at this step (by at least one of its methods)?"""
    return any(keyable_method(m) for m in step.methods)


def next_field(method: str, slots: dict[str, Any], asked: list[str], fresh: bool) -> str | None:
    """The first value of ``method`` still to ask. A value kept from earlier counts as given unless
    the method is being asked again after a failed check (``fresh``): it may be the wrong one."""
    for name in METHOD_FIELDS.get(method, ()):
        if name in asked:
            continue
        if name in SECRET_FIELDS or fresh or name not in slots:
            return name
    return None


def first_field(method: str) -> str | None:
    fields = METHOD_FIELDS.get(method, ())
    return fields[0] if fields else None


def customer_number_length(spec: FlowSpec) -> tuple[int, int]:
    """The length of a customer number: an ask step's ``length`` for that slot, else 6 to 10 digits."""
    for step in spec.steps.values():
        if isinstance(step, AskStep) and step.slot == "customer_number" and step.length_range:
            return step.length_range
    return CUSTOMER_NUMBER_LENGTH


def _length(spec: FlowSpec, field: str) -> tuple[int, int] | None:
    return {"customer_number": customer_number_length(spec), "pin": PIN_LENGTH}.get(field)


def answer(spec: FlowSpec, field: str, event: Event, today: dt.date, keypad_only: bool) -> str | None:
    """The value the caller gave for ``field`` as the check wants it (digits as text, a date of birth
    as ISO ``YYYY-MM-DD``, a postcode as ``1234AB``, a house number as ``12A``), or None when the
    answer holds none. Keys are read at every question (at a postcode they give nothing)."""
    kind, length = SLOT_TYPES[field], _length(spec, field)
    if isinstance(event, Digits):
        if field in SPEECH_ONLY:
            return None
        value = keypad.value_from_keys(kind, event.digits, length=length, today=today)
    elif isinstance(event, Utterance) and not keypad_only and field not in KEYS_ONLY:
        value = parse_slot(kind, event.text, spec.language, length=length, today=today)
    else:
        return None
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).replace(" ", "") if field == "postcode" else str(value)


def max_digits(spec: FlowSpec, field: str | None) -> int | None:
    """Keys that end an entry by themselves (else the finish key does). At a postcode keys can only
    ask for a person, so one key ends the entry and a lone 0 is heard at once."""
    if field is None:
        return None
    if field in SPEECH_ONLY:
        return 1
    return keypad.digits_for(SLOT_TYPES[field], _length(spec, field))


def phrases(field: str | None, language: str) -> tuple[str, ...]:
    """A constrained grammar for numbers (empty: free recognition, as for a date or a postcode)."""
    if field in ("customer_number", "house_number"):
        return digit_phrases(language)
    return ()
