"""What the bot said on an emulated call: the transcript in the server's own record of the call.

Mark names carry no prompt text: they travel to Twilio and show up in its logs, and a prompt may
read back a caller's customer number. So the line tells the emulator when a prompt was heard, never
what it said. The server keeps each call's record in Redis under the call SID
(``voicebot.telephony.store``); an emulator next to the server (`make run`, the tests) reads the
bot's lines from there once the call is over. Against a server whose Redis it cannot reach, the
conversation is still shown by prompt number and length, and ``prompt_contains`` cannot be checked.
"""

from __future__ import annotations

import time

from voicebot.redis_clients import ping, shown_url
from voicebot.telephony.store import CallStore

SETTLE_SECONDS = 3.0
"""How long to wait for the server to store the call's end (a hang-up is saved after the
emulator's ``stop``) before the record is read as it is."""
POLL_SECONDS = 0.05


def said_by_bot(redis_url: str, call_sid: str, settle: float = SETTLE_SECONDS) -> tuple[list[str] | None, str]:
    """The bot's lines of the call in order, or None and why they could not be read."""
    reason = ping(redis_url, "probe")
    if reason is not None:
        return None, f"Redis at {shown_url(redis_url)} cannot be reached ({reason})"
    store = CallStore(redis_url, ttl_seconds=1)     # only read: the time-to-live is never applied
    try:
        deadline = time.monotonic() + settle
        while True:
            state = (store.get(call_sid) or {}).get("state")
            if (isinstance(state, dict) and state.get("ended")) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
    finally:
        if store.redis is not None:
            store.redis.close()
    if not isinstance(state, dict):
        return None, f"Redis at {shown_url(redis_url)} has no record of call {call_sid} (is it the server's Redis?)"
    return [entry["text"] for entry in state.get("transcript", [])
            if isinstance(entry, dict) and entry.get("who") == "bot" and entry.get("text")], ""
