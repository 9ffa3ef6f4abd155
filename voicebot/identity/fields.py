"""The one written form of each customer field, so a lookup finds what an import stored.

A caller, a CSV file and a CRM each write the same value differently ("06-1234 5678",
"+31 6 12345678"; "1234 ab", "1234AB"). Everything that stores or looks up a customer passes the
value through here first. Each function returns the canonical form or raises ``ValueError`` whose
message says in plain words what is wrong, without repeating a secret value back.
"""

from __future__ import annotations

import datetime as dt
import re

import phonenumbers

DEFAULT_REGION = "NL"       # numbers written without a country code are Dutch
MAX_NAME_CHARS = 200
PIN_DIGITS = (4, 8)
EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)

_CUSTOMER_NUMBER = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
# Dutch postcodes: four digits not starting with 0, two letters; SA, SD and SS are never issued.
_POSTCODE = re.compile(r"([1-9][0-9]{3}) ?([A-Z]{2})")
_UNUSED_POSTCODE_LETTERS = {"SA", "SD", "SS"}
_HOUSE_NUMBER = re.compile(r"([0-9]{1,5})(?:[ -]?([A-Z]{1,4})|[ -]([0-9]{1,4}))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def customer_number(text: str) -> str:
    """``" 1001 "`` -> ``"1001"``: letters, digits and hyphens, upper case, spaces dropped."""
    value = re.sub(r"\s+", "", str(text)).upper()
    if not value:
        raise ValueError("customer number is empty")
    if not _CUSTOMER_NUMBER.fullmatch(value):
        raise ValueError("customer number must be 1 to 32 letters, digits or hyphens")
    return value


def name(text: str) -> str:
    """A customer's name, trimmed; no control characters, at most 200 characters."""
    value = " ".join(str(text).split())
    if not value:
        raise ValueError("name is empty")
    if len(value) > MAX_NAME_CHARS or _CONTROL.search(value):
        raise ValueError(f"name must be at most {MAX_NAME_CHARS} printable characters")
    return value


def phone(text: str, region: str = DEFAULT_REGION) -> str:
    """Any written phone number -> E.164 (``"06-1234 5678"`` -> ``"+31612345678"``).

    Numbers without a country code are read as Dutch. A number that cannot exist (too short, an
    unused range) is refused, so a typo never becomes a customer's caller ID.
    """
    value = str(text).strip()
    if not value:
        raise ValueError("phone number is empty")
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{value!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def postcode(text: str) -> str:
    """A Dutch postcode -> ``"1234AB"`` (upper case, no space). The value is never repeated in errors."""
    match = _POSTCODE.fullmatch(" ".join(str(text).upper().split()))
    if not match or match.group(2) in _UNUSED_POSTCODE_LETTERS:
        raise ValueError("postcode must be four digits and two letters, like 1234 AB")
    return match.group(1) + match.group(2)


def house_number(text: str) -> str:
    """``"12"``, ``"12 a"`` -> ``"12A"``, ``"12-2"`` -> ``"12-2"``: the number and its addition.

    A letter addition is written against the number, a numeric one after a hyphen, so "12-2"
    and "122" stay different houses.
    """
    match = _HOUSE_NUMBER.fullmatch(" ".join(str(text).upper().split()))
    if not match or match.group(1).startswith("0"):
        raise ValueError("house number must be a number, optionally with an addition like 12A or 12-2")
    number, letters, digits = match.groups()
    return f"{number}-{digits}" if digits else number + (letters or "")


def birth_date(text: str, today: dt.date | None = None) -> dt.date:
    """``"1975-03-14"`` -> a date; only ISO ``YYYY-MM-DD``, not in the future, not before 1900."""
    value = str(text).strip()
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise ValueError
        date = dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("birth date must be a date written YYYY-MM-DD") from None
    if date > (today or dt.date.today()):
        raise ValueError("birth date lies in the future")
    if date < EARLIEST_BIRTH_DATE:
        raise ValueError(f"birth date lies before {EARLIEST_BIRTH_DATE.year}")
    return date


def pin(text: str) -> str:
    """A PIN as the caller keys it: 4 to 8 digits. The value is never repeated in errors."""
    value = str(text).strip()
    low, high = PIN_DIGITS
    if not (value.isascii() and value.isdigit() and low <= len(value) <= high):
        raise ValueError(f"PIN must be {low} to {high} digits")
    return value
