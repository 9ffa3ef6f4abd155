"""The period the figures page shows, from its form: a recent span, or whole days from one date to another.

Pure: the form's values, the flow's time zone and the moment in, aware UTC datetimes out. Anything
that is not a known span or a valid date falls back to the default span, with a note for the page,
so a hand-edited address never fails.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from voicebot.records.stats import zone_of

SPANS = {
    "24h": ("the last 24 hours", dt.timedelta(hours=24)),
    "7d": ("the last 7 days", dt.timedelta(days=7)),
    "30d": ("the last 30 days", dt.timedelta(days=30)),
    "90d": ("the last 90 days", dt.timedelta(days=90)),
}
DEFAULT_SPAN = "7d"
MAX_DAYS = 400
"""The longest span of dates the page asks figures for (the records are kept 90 days by default)."""


@dataclass(frozen=True)
class Period:
    since: dt.datetime
    until: dt.datetime
    label: str
    span: str                # the chosen span, or "" for dates
    first_day: str = ""      # the dates as typed back into the form
    last_day: str = ""
    note: str = ""           # why the form's values were not taken


def zone(name: str | None) -> dt.tzinfo:
    """The time zone ``name`` (``records.stats.zone_of``); UTC when none is named or it is unknown,
    so that a page never fails on it."""
    try:
        return zone_of(name) if name else dt.timezone.utc
    except ValueError:
        return dt.timezone.utc


def _day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()) if text and len(text) <= 10 else None
    except ValueError:
        return None


def period_from(span: str | None, first_day: str | None, last_day: str | None, *, timezone: str | None,
                now: dt.datetime) -> Period:
    """The period asked for: whole days ``first_day``..``last_day`` (local dates, both included)
    when both are dates, else the span (``SPANS``) up to ``now``."""
    utc = dt.timezone.utc
    if first_day or last_day:
        first, last = _day(first_day or ""), _day(last_day or "")
        if first is None or last is None:
            note = "Give both dates as YYYY-MM-DD; showing the last 7 days."
        elif last < first:
            note = "The last day is before the first; showing the last 7 days."
        elif (last - first).days >= MAX_DAYS:
            note = f"At most {MAX_DAYS} days at once; showing the last 7 days."
        else:
            local = zone(timezone)
            since = dt.datetime.combine(first, dt.time(), local).astimezone(utc)
            until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), local).astimezone(utc)
            label = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
            return Period(since, until, label, "", first.isoformat(), last.isoformat())
        return _span(DEFAULT_SPAN, now, note)
    if span not in SPANS:
        return _span(DEFAULT_SPAN, now, "" if not span else "Unknown period; showing the last 7 days.")
    return _span(span, now, "")


def _span(span: str, now: dt.datetime, note: str) -> Period:
    label, length = SPANS[span]
    until = now.astimezone(dt.timezone.utc)
    return Period(until - length, until, label, span, note=note)
