"""Stand-ins for identity tests: a customer directory in a dict, and an engine that asks for checks.

The directory is a fake on purpose, kept out of the package: the service's rules are tested
against it, the real SQLite and CRM directories against their own tests. It records every lookup,
so a test can prove that a locked check compared nothing, and can be told to fail.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

from voicebot.dialog.actions import CheckIdentity
from voicebot.dialog.events import Digits, IdentityChecked
from voicebot.identity import Customer, DirectoryUnavailable

ANNA = Customer(number="100234", name="Anna de Vries", phones=("+31612345678",), postcode="1234AB",
                house_number="12", birth_date=dt.date(1980, 5, 17), has_pin=True)
BRAM = Customer(number="100567", name="Bram Jansen", phones=("+31687654321", "+31201234567"), postcode="5678CD",
                house_number="3", birth_date=dt.date(1975, 1, 2), has_pin=False)
# Two customers on one address and one phone: neither is "exactly one".
CAROL = Customer(number="100888", name="Carol Bakker", phones=("+31699999999",), postcode="9999ZZ",
                 house_number="1", birth_date=dt.date(1990, 12, 31))
DAAN = Customer(number="100889", name="Daan Bakker", phones=("+31699999999",), postcode="9999ZZ",
                house_number="1", birth_date=dt.date(1991, 1, 1))
PINS = {"100234": "4321"}


class FakeDirectory:
    def __init__(self, customers=(ANNA, BRAM, CAROL, DAAN), pins=PINS, fail: Exception | None = None):
        self.customers = {c.number: c for c in customers}
        self.pins = dict(pins)
        self.fail = fail
        self.lookups: list[str] = []
        self.closed = False

    def _look(self, what: str) -> None:
        self.lookups.append(what)
        if self.fail is not None:
            raise self.fail

    def by_number(self, number: str) -> Customer | None:
        self._look("by_number")
        return self.customers.get(number)

    def by_phone(self, e164: str) -> list[Customer]:
        self._look("by_phone")
        return [c for c in self.customers.values() if e164 in c.phones]

    def by_address(self, postcode: str, house_number: str) -> list[Customer]:
        self._look("by_address")
        return [c for c in self.customers.values() if (c.postcode, c.house_number) == (postcode, house_number)]

    def pin_matches(self, number: str, pin: str) -> bool:
        self._look("pin_matches")
        return hmac.compare_digest(self.pins.get(number, "").encode(), pin.encode()) and number in self.pins

    def close(self) -> None:
        self.closed = True


def unavailable_directory() -> FakeDirectory:
    return FakeDirectory(fail=DirectoryUnavailable("crm down"))


class CheckingEngine:
    """A real engine that also asks for a caller-ID check when the call starts and after keys, and
    keeps the answers instead of handing them on (its own verify step is tested elsewhere)."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.flow = engine.flow
        self.answers: list[IdentityChecked] = []

    def start(self, event):
        state, actions = self.engine.start(event)
        return state, [*actions, CheckIdentity("caller_id", caller=event.caller)]

    def resume(self, state, **kwargs):
        return self.engine.resume(state, **kwargs)

    def handle(self, state, event):
        if isinstance(event, IdentityChecked):
            self.answers.append(event)
            return []
        actions = self.engine.handle(state, event)
        if isinstance(event, Digits):
            actions = [*actions, CheckIdentity("caller_id", caller=state.caller)]
        return actions
