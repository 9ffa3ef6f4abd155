"""What can happen on a call, as the dialog engine sees it.

Adapters (the simulator, the phone media stream) turn the outside world into these events. They
are plain frozen data so a recorded call can be replayed event by event.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallStarted:
    """A call was answered. ``at`` is the local wall time as ISO 8601, for business hours.

    ``speech`` is False when this call has no speech recognition from the start (no model for the
    flow's language, the recogniser would not start): the engine then runs the call by keypad.

    ``earlier`` is the stored state (``CallState.to_dict()``) of an unfinished call from the same
    number within the flow's resume window, found by the adapter: the engine offers to go on with it.
    """

    call_id: str
    caller: str = ""
    called: str = ""
    at: str = ""
    speech: bool = True
    earlier: dict | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Word:
    word: str
    confidence: float = 1.0


@dataclass(frozen=True)
class Utterance:
    """What the caller said. ``grammar`` is true when it came from a constrained phrase list."""

    text: str
    confidence: float = 1.0
    words: tuple[Word, ...] = field(default_factory=tuple)
    grammar: bool = False


@dataclass(frozen=True)
class Digits:
    """Keys the caller pressed in one entry (without the finish key)."""

    digits: str


@dataclass(frozen=True)
class NoInput:
    """The caller said and pressed nothing before the listen timeout."""


@dataclass(frozen=True)
class CallEnded:
    """The caller hung up (or the line dropped)."""

    reason: str = "hangup"


@dataclass(frozen=True)
class SpeechUnavailable:
    """Recognition stopped working mid-call, or the caller's audio could not be decoded in time.

    From now on the call goes on by keypad; the engine says so and asks the current step again.
    ``reason`` is a short label for the transcript (never the caller's words).
    """

    reason: str = ""


@dataclass(frozen=True)
class SystemFailure:
    """Something on our side broke: prompt audio could not be made, an exception in the call loop,
    a stream that ended without a decision. The engine hands the call to a person.
    ``what`` is a short label for the agent's context.
    """

    what: str = ""


@dataclass(frozen=True)
class IdentityChecked:
    """The identity adapter's answer to a ``CheckIdentity`` action, handed back at once.

    ``outcome``: ``match`` (the values belong to ``customer``), ``no_match`` (wrong values, or no
    such customer: the caller is never told which), ``locked`` (too many failures for this customer
    or calling number across calls), ``unavailable`` (directory or lockout counters unreachable:
    fail closed). ``customer`` is ``{"number": ..., "name": ...}`` on a match, never a secret.
    """

    method: str
    outcome: str
    customer: dict | None = None


Event = (CallStarted | Utterance | Digits | NoInput | CallEnded | SpeechUnavailable | SystemFailure
         | IdentityChecked)
