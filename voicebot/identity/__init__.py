"""Who is calling: the customer directory (embedded SQLite or a CRM over HTTP), the checks each
verification method makes, and the lockout that stops guessing across calls.

The dialog engine never sees a customer record or a secret it did not hear itself: it emits a
``CheckIdentity`` action and gets an ``IdentityChecked`` event back. ``settle`` (``service.py``) is
the one place where the two meet, used by every runner (text simulator, phone session).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol


class DirectoryUnavailable(Exception):
    """The directory could not answer (database unreadable, CRM down, slow or open circuit).
    Verification fails closed: the caller goes to an agent, unverified."""


@dataclass(frozen=True)
class Customer:
    """One customer as the directory knows them. Secrets are excluded from ``repr``."""

    number: str
    name: str
    phones: tuple[str, ...] = ()                  # E.164
    postcode: str = field(default="", repr=False)  # "1234AB", upper case, no space
    house_number: str = ""
    birth_date: dt.date | None = field(default=None, repr=False)
    has_pin: bool = False

    def public(self) -> dict[str, str]:
        """What an agent may see: number and name, never a secret."""
        return {"number": self.number, "name": self.name}


class Directory(Protocol):
    """Lookups every verification method needs. Each raises ``DirectoryUnavailable`` when it
    cannot answer; ``None``/``[]`` means "no such customer"."""

    def by_number(self, number: str) -> Customer | None: ...

    def by_phone(self, e164: str) -> list[Customer]: ...

    def by_address(self, postcode: str, house_number: str) -> list[Customer]: ...

    def pin_matches(self, number: str, pin: str) -> bool: ...

    def close(self) -> None: ...
