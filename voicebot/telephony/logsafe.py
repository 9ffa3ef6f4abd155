"""Values a caller or an attacker controls (CallSid, From, paths, event names), made safe for a log line.

A raw value could forge log lines (newlines), hide itself (control characters, ANSI escapes) or
flood the log (megabytes): ``esc`` shows it as a quoted Python literal, cut to a few dozen characters.
"""

from __future__ import annotations

from typing import Any

LIMIT = 64


def esc(value: Any, limit: int = LIMIT) -> str:
    """``'CA12…'``: repr-escaped (no newline or control character survives) and truncated."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"…(+{len(text) - limit})"
    return repr(text)


def mask_number(number: str) -> str:
    """+31612345678 -> +316******78: enough to tell numbers apart in a log, not enough to call one."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 6) + number[-2:]
