"""What the dialog engine asks the adapters to do, in order.

A ``Listen`` always comes last in a turn's list of actions; ``Transfer`` and ``Hangup`` end the
call. ``Say.prompt_id`` lets the speech adapter play a recorded file instead of synthesis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Say:
    """``personal``: the text carries the caller's own values (a customer number read back), so it
    is synthesised for this call only and never written to the disk cache."""

    text: str
    prompt_id: str | None = None
    barge_in: bool = True
    personal: bool = False


@dataclass(frozen=True)
class Listen:
    """Wait for the caller. ``phrases`` non-empty means: recognise with a constrained grammar."""

    step: str
    speech: bool = True
    dtmf: bool = True
    phrases: tuple[str, ...] = ()
    no_input_timeout: float = 6.0
    max_digits: int | None = None
    finish_key: str = "#"
    inter_digit_timeout: float = 3.0


@dataclass(frozen=True)
class Transfer:
    """Hand the call to a person. ``context`` is everything the agent sees (JSON-friendly)."""

    reason: str
    queue: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hangup:
    reason: str = "completed"


@dataclass(frozen=True)
class SendSms:
    to: str
    text: str


@dataclass(frozen=True)
class CheckIdentity:
    """Check what the caller gave against the customer directory. Always the last action of a turn;
    the adapter answers at once with an ``IdentityChecked`` event (``voicebot.identity.settle``).

    ``values`` may hold secrets (a PIN, a date of birth as ISO text, a full postcode): the adapter
    compares and forgets them; they are never logged, stored or put in a job. ``repr`` hides them.
    """

    method: str
    values: dict[str, str] = field(default_factory=dict, repr=False)
    caller: str = ""


Action = Say | Listen | Transfer | Hangup | SendSms | CheckIdentity
