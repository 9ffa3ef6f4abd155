"""The figures of the operations page and ``voicebot report``, from the call records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa


def compute(engine: sa.Engine, *, flow: str | None, since: dt.datetime, until: dt.datetime,
            timezone: str = "Europe/Amsterdam") -> Any:
    """The figures for ``flow`` (None: every flow) between ``since`` and ``until`` (aware datetimes)."""
    raise NotImplementedError
