"""How slot values are said to callers, shown to agents and written to transcripts.

Three audiences, three forms: a caller hears a value in a form speech synthesis reads well
("1 2 3 4" rather than "twelve hundred thirty-four"); logs, transcripts and text messages carry a
masked form where the value identifies a person (a full postcode is never written out, secret
slots never appear); the agent's context keeps the value itself.

Dates of birth and PINs are secret by their type: whatever a flow says, neither form reveals
them, not even their length (a PIN masks as ``****`` whether it has four digits or eight).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from voicebot.nlu.lexicon import MONTH_NAMES
from voicebot.nlu.slots import SECRET_SLOT_TYPES

MASKS = {"birth_date": "**-**-****", "pin": "****"}
"""The fixed masked forms of the secret slot types."""


def spoken(value: Any, slot_type: str, language: str, messages: dict[str, str]) -> str:
    """The value as the caller hears it in a confirmation."""
    if slot_type in SECRET_SLOT_TYPES:
        return messages["provided"]
    if slot_type == "digits":
        return " ".join(str(value))
    if slot_type == "postcode":
        # Only the digits are read back: a full postcode identifies an address.
        return " ".join(str(value).split()[0])
    if slot_type == "date":
        day = dt.date.fromisoformat(value) if isinstance(value, str) else value
        months = MONTH_NAMES.get(language)
        return f"{day.day} {months[day.month - 1]} {day.year}" if months else day.isoformat()
    if slot_type == "yes_no":
        return messages["yes"] if value else messages["no"]
    if slot_type == "choice":
        return str(value).replace("_", " ")
    if slot_type == "house_number":
        # "12 A": speech synthesis reads "12A" as one odd word.
        number = str(value)
        return f"{number[:-1]} {number[-1]}" if number[-1:].isalpha() else number
    return str(value)


def masked(value: Any, slot_type: str) -> str:
    """The value as logs, transcripts and text messages may carry it."""
    if slot_type in MASKS:
        return MASKS[slot_type]
    if slot_type == "postcode":
        return str(value).split()[0] + " **"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def to_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value
