"""When a call's stream ended without the engine having decided how it ends.

Twilio asks ``/twilio/after-stream`` what comes next; a stream that broke (or a node that died)
left no decision behind. The caller is still on the line, so a person takes over, and as
everywhere else it is the engine that builds what the agent receives, from whatever state was
saved.
"""

from __future__ import annotations

from typing import Any

from voicebot.dialog.actions import Action, Say, Transfer
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.events import CallStarted, SystemFailure
from voicebot.dialog.state import CallState


def failure_transfer(engine: DialogEngine, call_sid: str, record: dict[str, Any]) -> tuple[Transfer, str]:
    """The engine's transfer for a call whose stream ended undecided, and what it would say before it.

    ``record`` is the stored call record; Twilio's voice speaks the announcement (our audio may be
    what broke)."""
    stored = record.get("state")
    if stored:
        state = CallState.from_dict(stored)
        state.ended = False          # ended by a hang-up that Twilio contradicts: the caller is there
    else:
        state = engine.new_state(CallStarted(call_id=call_sid, caller=str(record.get("caller", "")),
                                             called=str(record.get("called", ""))))
    transfer, said = handover(engine.handle(state, SystemFailure("the stream ended without a decision")))
    assert transfer is not None      # SystemFailure on a call that has not ended always hands over
    return transfer, said


def handover(actions: list[Action]) -> tuple[Transfer | None, str]:
    """The transfer in the engine's answer to a failure, and the text it says first (for Twilio's voice)."""
    transfer = next((a for a in actions if isinstance(a, Transfer)), None)
    return transfer, " ".join(a.text for a in actions if isinstance(a, Say))
