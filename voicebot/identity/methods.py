"""What each verification method checks: the rules, apart from who asks and how often.

``check`` answers one question: do these values identify exactly one customer? It never says why
not (no such customer, wrong birth date and an ambiguous address are all ``None``), so that a
caller who guesses learns nothing from the answer. Secrets are compared in constant time, as
bytes (``hmac.compare_digest`` refuses non-ASCII text, and a caller's input is not trusted to be
ASCII); a PIN is compared by the directory, which holds only its slow hash.

The lockout and the translation into an ``IdentityChecked`` event are ``service.py``'s business.
"""

from __future__ import annotations

import hmac

import phonenumbers

from voicebot.flow.schema import VERIFY_METHODS
from voicebot.identity import Customer, Directory, fields

METHODS = VERIFY_METHODS
"""The method names flows may use (``identity.methods`` and a verify step's ``methods``), as the flow
schema defines them."""

MAX_VALUE_LENGTH = 64
"""Longer values are nobody's customer number, birth date, postcode or PIN: no match, no lookup."""



def check(method: str, values: dict[str, str], caller: str, directory: Directory) -> Customer | None:
    """The one customer ``values`` (or, for ``caller_id``, the calling number) identify, else None.

    Raises ``ValueError`` for a method that is not in ``METHODS`` (a flow validation error that got
    through) and lets ``DirectoryUnavailable`` through: the caller of this function fails closed.
    """
    if method == "caller_id":
        number = e164(caller)
        found = directory.by_phone(number) if number else []
        return found[0] if len(found) == 1 else None
    if method == "customer_dob":
        number, (birth,) = claimed_number(values), _given(values, "birth_date")
        if number is None or birth is None:
            return None
        customer = directory.by_number(number)
        if customer is None or customer.birth_date is None:
            return None
        return customer if _same(customer.birth_date.isoformat(), birth) else None
    if method == "postcode_house":
        postcode, house = _given(values, "postcode", "house_number")
        if postcode is None or house is None:
            return None
        try:
            postcode, house = fields.postcode(postcode), fields.house_number(house)
        except ValueError:
            return None
        found = directory.by_address(postcode, house)
        return found[0] if len(found) == 1 else None
    if method == "pin":
        number, (pin,) = claimed_number(values), _given(values, "pin")
        if number is None or pin is None:
            return None
        # The PIN first: whether the number exists is then not told by how long the answer takes.
        return directory.by_number(number) if directory.pin_matches(number, pin) else None
    raise ValueError(f"unknown verification method {method[:40]!r}; known: {', '.join(METHODS)}")


def claimed_number(values: dict[str, str]) -> str | None:
    """The customer number the caller gave, in the directory's written form, or None when none
    usable was given. The lockout keys its counter on the same form, so "12 345" and "12345" are
    one customer and one counter."""
    (number,) = _given(values, "customer_number")
    if number is None:
        return None
    try:
        return fields.customer_number(number)
    except ValueError:
        return None


def e164(number: str) -> str | None:
    """A calling number in E.164 (``+31612345678``), or None when it is none (withheld, a SIP or
    client identity, a number of an impossible length). Possible rather than valid: a lockout
    counter must exist for any number a caller can present, also in a range not yet issued."""
    if not isinstance(number, str) or len(number) > MAX_VALUE_LENGTH:
        return None
    try:
        parsed = phonenumbers.parse(number, fields.DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _given(values: dict[str, str], *names: str) -> list[str | None]:
    """The named values, each None when missing, empty, not text or implausibly long."""
    found: list[str | None] = []
    for name in names:
        value = values.get(name) if isinstance(values, dict) else None
        ok = isinstance(value, str) and value.strip() and len(value) <= MAX_VALUE_LENGTH
        found.append(value.strip() if ok else None)
    return found


def _same(known: str, given: str) -> bool:
    return hmac.compare_digest(known.encode("utf-8"), given.encode("utf-8"))
