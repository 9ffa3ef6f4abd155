"""Business hours: is a moment inside the flow's weekly hours and not a holiday?"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from voicebot.flow.schema import WEEKDAYS, Hours, parse_ranges


def is_open(hours: Hours, when: dt.datetime) -> bool:
    """``when`` without a time zone is taken as already in the flow's zone."""
    zone = ZoneInfo(hours.timezone)
    local = when.astimezone(zone) if when.tzinfo else when.replace(tzinfo=zone)
    if local.date() in hours.holidays:
        return False
    day = WEEKDAYS[local.weekday()]
    now = local.time()
    return any(start <= now < end for start, end in parse_ranges(hours.weekly.get(day, "closed")))
