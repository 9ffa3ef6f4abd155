"""What became of each caller turn: the words the engine writes on the turn's transcript entry.

Every caller entry of ``CallState.transcript`` gets ``understood``: ``{"result": R, "intent": I,
"confidence": C}``, where R is one of ``TURN_RESULTS``, I the intent (or slot name) it was taken
as or guessed as (None when there was no guess), and C that guess's confidence. Operators read
these in the call records (where callers fail, what was not understood); the engine never reads
them back.
"""

from __future__ import annotations

TURN_RESULTS = ("accepted", "confirm", "confirmed", "denied", "out_of_scope", "not_understood", "low_confidence",
                "invalid_key", "no_input", "agent", "other")
"""accepted: understood and acted on at once; confirm: a middling guess asked back ("klopt dat?");
confirmed / denied: the caller's yes / no to that question; out_of_scope: rejected as something the
flow does not handle; not_understood / low_confidence / invalid_key: asked again (or transferred
when the retries were used up); no_input: silence; agent: the caller asked for a person; other:
anything else (an answer to the offer to go on with an earlier call, a turn while a check ran)."""

MISUNDERSTOOD = ("out_of_scope", "not_understood", "low_confidence", "denied")
"""Results of turns the review queue lists: the assistant did not get what the caller meant."""
