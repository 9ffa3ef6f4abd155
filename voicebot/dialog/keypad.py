"""How a call goes on when the caller can only press keys.

A call runs by keypad when it has no speech recognition (``CallStarted(speech=False)`` or a
``SpeechUnavailable`` mid-call), and a single route step does when the caller answers its open
question with keys. Every shipped flow must be completable this way, so the rules are the
engine's, not each flow's:

- **Route steps become a numbered menu** of their routes, in the order the flow lists them:
  "Toets 1 voor uw meterstand doorgeven, toets 2 voor een storing melden, of toets 0 voor een
  medewerker." built from the intents' labels. A route that only hands the call to a person (its
  step is a ``transfer``, or an ``hours`` step whose open branch is one) is left out, because
  key 0 does that from every step and the menu says so last; so is a route that only says
  something and comes back to the same question (a "what can I ask?" answer listing the topics),
  because the menu already is that list. Keys 1 to 9 pick the first nine
  routes that remain; a route step with more than nine leaves the rest to a person (key 0)
  rather than adding a "more" level, so the menu stays one sentence and one key press.
- **Ask steps say what to press** instead of what to say: the step's own ``keypad`` text when
  the flow gives one, else its question followed by the engine's key hint for the slot type.
- **A postcode is keyed as its four digits only**: a telephone keypad cannot enter the two
  letters in any way a caller would guess. The slot then holds the four digits (``"1234"``, no
  space, no letters); ``is_partial_postcode`` tells, and the agent's summary marks the value as
  digits only, so the agent asks for the letters.
- **A free ``text`` slot cannot be keyed**: in keypad mode the engine hands the call to a person.
- **Dates** are keyed as eight digits, day, month, year (``05031970``); a **date of birth** also
  as six (``050370``: a two-digit year is the most recent one that puts the date in the past).
- **A PIN** is keyed only, 4 to 8 digits; **a house number** is keyed as its digits (a letter
  cannot be keyed; the value is then the digits alone).

The rules per slot type are in ``value_from_keys`` and ``digits_for``, so a step that collects
values without being an ``ask`` step (checking who is calling) keys them the same way.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from voicebot.flow import Flow
from voicebot.flow.schema import AskStep, FeedbackStep, RouteStep
from voicebot.nlu.birth_dates import birth_date_from_keys
from voicebot.nlu.slots import PIN_LENGTH, house_number, parse_date, pin_from_keys

MENU_KEYS = 9
_POSTCODE_DIGITS = re.compile(r"[1-9][0-9]{3}")
_KEYS = re.compile(r"[0-9]{1,32}")   # longer is no answer to any question (and no int() of 5000 digits)


def menu_routes(flow: Flow, step: RouteStep) -> list[str]:
    """The intents a route step offers by keys, in key order (key 1 first); at most nine."""
    return [intent for intent, target in step.routes.items()
            if not _to_person(flow, target) and not _back_to(flow, target, step)][:MENU_KEYS]


def _back_to(flow: Flow, target: str, step: RouteStep) -> bool:
    """Does ``target`` only say something (one or more ``say`` steps) and return to ``step``?"""
    seen: set[str] = set()
    while target not in seen:
        seen.add(target)
        current = flow.spec.steps.get(target)
        if current is step:
            return True
        if current is None or current.type != "say":
            return False
        target = current.next
    return False


def _to_person(flow: Flow, target: str) -> bool:
    step = flow.spec.steps.get(target)
    if step is not None and step.type == "hours":
        step = flow.spec.steps.get(step.open)
    return step is not None and step.type == "transfer"


def menu_text(flow: Flow, step: RouteStep) -> str:
    """The numbered menu as one sentence, ending with key 0 for a person."""
    items = [flow.msg("keypad_menu_item", n=n, label=flow.spec.intents[intent].label)
             for n, intent in enumerate(menu_routes(flow, step), start=1)]
    return _capital(flow.msg("keypad_menu", items=", ".join(items)))


def route_for_key(flow: Flow, step: RouteStep, keys: str) -> str | None:
    """The intent a key picks, or None for a key that is not on the menu."""
    routes = menu_routes(flow, step)
    if len(keys) != 1 or not keys.isdigit() or keys == "0":
        return None
    index = int(keys) - 1
    return routes[index] if index < len(routes) else None


def keyable(step: Any) -> bool:
    """Can this listening step be answered with keys alone?"""
    return not (isinstance(step, AskStep) and step.slot_type == "text")


def key_hint(flow: Flow, step: Any) -> str:
    """What to press at a listening step (the menu for a route step)."""
    if isinstance(step, RouteStep):
        return menu_text(flow, step)
    if isinstance(step, FeedbackStep):
        return flow.msg("keys_score")
    if not isinstance(step, AskStep):
        return ""
    kind = step.slot_type
    if kind == "digits":
        rng = step.length_range
        if rng and rng[0] == rng[1]:
            return flow.msg("keys_digits_fixed", count=rng[0])
        return flow.msg("keys_digits")
    if kind == "choice":
        items = [flow.msg("keys_choice_item", n=n, label=value.replace("_", " "))
                 for n, value in enumerate(step.choices or {}, start=1)]
        return _capital(", ".join(items)) + "."
    if kind == "pin":
        rng = step.length_range
        return flow.msg("keys_digits_fixed", count=rng[0]) if rng and rng[0] == rng[1] else flow.msg("keys_digits")
    if kind == "birth_date":
        return flow.msg("keys_date")
    if kind == "house_number":
        return flow.msg("keys_number")
    if kind in ("number", "date", "yes_no", "postcode"):
        return flow.msg("keys_" + kind)
    return ""


def max_digits(step: Any) -> int | None:
    """How many keys end an entry by themselves (else the finish key ends it)."""
    if isinstance(step, (RouteStep, FeedbackStep)):
        return 1
    if not isinstance(step, AskStep):
        return None
    return digits_for(step.slot_type, step.length_range, len(step.choices or {}))


def digits_for(kind: str, length: tuple[int, int] | None = None, choices: int = 0) -> int | None:
    """How many keys end an entry of this slot type by themselves (None: the finish key ends it).

    A date of birth ends after eight keys; keyed as six it needs the finish key. A PIN ends at
    its longest length (8 unless the step says less)."""
    if kind == "yes_no" or (kind == "choice" and choices <= 9):
        return 1
    if kind == "postcode":
        return 4
    if kind in ("date", "birth_date"):
        return 8
    if kind == "pin":
        return min(length[1], PIN_LENGTH[1]) if length else PIN_LENGTH[1]
    if kind == "digits" and length:
        return length[1]
    return None


def from_keys(step: AskStep, keys: str, today: dt.date | None = None) -> Any:
    """A keypad entry as a slot value: digits as typed, 1/2 for yes/no, 1..n for the n-th choice,
    eight digits (day, month, year) for a date, eight or six for a date of birth, the four digits
    of a postcode, 4 to 8 for a PIN, the digits of a house number."""
    return value_from_keys(step.slot_type, keys, length=step.length_range, choices=step.choices, today=today)


def value_from_keys(kind: str, keys: str, *, length: tuple[int, int] | None = None,
                    choices: dict[str, list[str]] | None = None, today: dt.date | None = None) -> Any:
    """The value keys give for a slot type, or None when they are not one; ``today`` is the
    call's date (a date of birth lies before it)."""
    if not _KEYS.fullmatch(keys):
        return None
    if kind == "digits":
        return keys if not length or length[0] <= len(keys) <= length[1] else None
    if kind == "number":
        return int(keys)
    if kind == "yes_no":
        return {"1": True, "2": False}.get(keys)
    if kind == "choice":
        values = list(choices or {})
        index = int(keys) - 1
        return values[index] if 0 <= index < len(values) else None
    if kind == "date" and len(keys) == 8:
        return parse_date(f"{keys[:2]}-{keys[2:4]}-{keys[4:]}")
    if kind == "birth_date":
        return birth_date_from_keys(keys, today)
    if kind == "pin":
        return pin_from_keys(keys, length)
    if kind == "house_number":
        return house_number(keys)
    if kind == "postcode" and _POSTCODE_DIGITS.fullmatch(keys):
        return keys
    return None


def is_partial_postcode(value: Any) -> bool:
    """A postcode entered by keys: the four digits without the letters."""
    return isinstance(value, str) and bool(_POSTCODE_DIGITS.fullmatch(value))


def own_text(flow: Flow, step_id: str) -> tuple[str, str] | None:
    """A step's own keypad wording and the prompt id its recording would have, if the flow gives one."""
    text = getattr(flow.spec.steps[step_id], "keypad", None)
    return (text, f"{flow.prompt_id(step_id)}_keypad") if text else None


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

