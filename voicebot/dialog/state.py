"""Everything the engine knows about one call, as plain JSON-friendly data.

The state is stored between turns (in Redis, keyed by call id) so any server process can continue
a call; ``to_dict``/``from_dict`` are the only serialisation. Secret slot values (PINs, dates of
birth) are never kept in the clear: only an HMAC of them, under ``secrets``.

``keypad_only`` is true once the call has no speech recognition (from the start or since a
``SpeechUnavailable``): every question is asked for keys. ``keys_menu`` is true while the current
route step is answered from its numbered keypad menu (keypad only, or the caller pressed keys at
the open question); it is cleared when the call moves to another step. Stored dicts from before
these fields existed load with both false.

A call from a number whose earlier call stopped unfinished first hears whether to go on with it:
``resume_offer`` holds what a "yes" restores (step, intent, non-secret slots) while that question is
open. ``earlier_call`` is the earlier call's id and the end of its transcript, for the agent; it is
a reference, never copied into this call's own transcript.

``identity`` is what the call has shown about who is calling (``unverified()`` until a check
succeeds): the level reached, the method and customer (number and name) that gave it, and every
check made as method and outcome only, never the values. ``verify`` is the verify step in
progress (``verification.new_progress``), or None. Stored dicts without them load unverified.

``feedback_comment`` is what the caller said after the score when the flow's feedback step asks
for a comment (``comment: true``), with long digit runs masked; None when not asked or not given.
Each caller entry of ``transcript`` carries ``understood``: what became of it (``dialog.outcomes``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def unverified(level: str = "none") -> dict[str, Any]:
    """The identity of a call before any check has succeeded."""
    return {"level": level, "method": None, "customer": None, "verified": False, "attempts": []}


@dataclass
class CallState:
    call_id: str
    flow: str
    language: str
    caller: str = ""
    called: str = ""
    started_at: str = ""
    step: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    intent: str | None = None
    intent_confidence: float | None = None
    pending: dict[str, Any] | None = None
    misses: int = 0
    total_misses: int = 0
    no_inputs: int = 0
    turns: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    feedback: int | None = None
    feedback_comment: str | None = None
    keypad_only: bool = False
    keys_menu: bool = False
    resume_offer: dict[str, Any] | None = None
    earlier_call: dict[str, Any] | None = None
    identity: dict[str, Any] = field(default_factory=unverified)
    verify: dict[str, Any] | None = None
    ended: bool = False
    outcome: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CallState":
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.identity = {**unverified(), **(state.identity or {})}
        return state
