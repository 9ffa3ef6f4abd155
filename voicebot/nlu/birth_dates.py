"""Dates of birth as callers say or key them, for checking who is calling.

A birth date differs from the appointment dates ``parse_date`` reads in three ways:

- **It lies in the past.** A year said with two digits, or with its century left out
  ("vijfenzeventig", "'75", "twaalf drie nul vijf"), is the most recent such year that makes the
  date fall before today; an appointment date without a year is the *next* such date instead.
- **Day and month come as plain numbers too.** Callers read it off a pass as they would a code:
  "twaalf drie vijfenzeventig", "12 3 75", "12-03-1975", "12/3/75", "de twaalfde van de derde
  vijfenzeventig", or digit by digit, "een twee nul drie een negen zeven vijf". Always day first,
  month second (the Dutch order, also for English; a month said by name may come first:
  "March the twelfth nineteen seventy five").
- **It must be plausible.** Not today or later, not more than 120 years ago, and a real calendar
  date (no 31 February, no month 13). A year is never guessed: "twaalf maart" alone is no birth
  date, and text with more numbers than a date holds is refused rather than picked apart.
"""

from __future__ import annotations

import datetime as dt

from voicebot.nlu.lexicon import MONTHS
from voicebot.nlu.numbers import MAX_ANSWER_CHARS, number_token, to_digits

MAX_AGE_YEARS = 120
CENTURIES = frozenset({"18", "19", "20"})
"""The first half of a year said in two parts ("negentien vijfenzeventig" = 19|75)."""


def parse_birth_date(text: str, language: str = "nl", today: dt.date | None = None) -> dt.date | None:
    """The date of birth in a caller's answer, or None when it holds no plausible one."""
    today = today or dt.date.today()
    if len(text) > MAX_ANSWER_CHARS:
        return None
    parts = _parts(to_digits(text, language, small=True).split(), MONTHS.get(language, {}))
    return _plausible(*parts, today) if parts else None


def birth_date_from_keys(keys: str, today: dt.date | None = None) -> dt.date | None:
    """A date of birth keyed as DDMMJJJJ (``12031975``) or DDMMJJ (``120375``)."""
    today = today or dt.date.today()
    if not (keys.isascii() and keys.isdigit() and len(keys) in (6, 8)):
        return None
    return _plausible(int(keys[:2]), int(keys[2:4]), [keys[4:]], today)


def _parts(tokens: list[str], months: dict[str, int]) -> tuple[int, int, list[str]] | None:
    """Day, month and the year's spoken parts, read from numerals, ordinals and month names."""
    items: list[tuple[str, str]] = []          # ("n", "12") for a number, ("m", "3") for a month name
    for tok in tokens:
        number = number_token(tok)
        if number is not None:
            items.append(("n", number))
        elif tok in months:
            items.append(("m", str(months[tok])))
    named = [i for i, (kind, _) in enumerate(items) if kind == "m"]
    if len(named) > 1:
        return None
    if named:
        at = named[0]
        before = [v for _, v in items[:at]]
        after = [v for _, v in items[at + 1:]]
        if len(before) == 1:
            day = before[0]
        elif not before and after:
            day = after.pop(0)                  # "March the twelfth ..."
        else:
            return None
        return (int(day), int(items[at][1]), after) if len(day) <= 2 else None
    numbers = [v for _, v in items]
    if len(numbers) == 1 and len(numbers[0]) in (6, 8):     # "12031975" typed as one number
        return _split_run(numbers[0])
    if len(numbers) == 3 and len(numbers[0]) == 4:          # ISO order, 1975-03-12, as systems write it
        year, month, day = numbers
        return (int(day), int(month), [year]) if len(month) <= 2 and len(day) <= 2 else None
    if len(numbers) in (3, 4) and len(numbers[0]) <= 2 and len(numbers[1]) <= 2:
        return int(numbers[0]), int(numbers[1]), numbers[2:]
    run = "".join(numbers)
    if numbers and all(len(n) <= 2 for n in numbers) and len(run) in (6, 8):
        return _split_run(run)                               # digit by digit
    return None


def _split_run(run: str) -> tuple[int, int, list[str]]:
    return int(run[:2]), int(run[2:4]), [run[4:]]


def _year(parts: list[str]) -> tuple[int, bool] | None:
    """The year and whether its century was said: "1975", "19 75" (both said), "75" (not said)."""
    if len(parts) == 1 and len(parts[0]) == 4:
        return int(parts[0]), True
    if len(parts) == 1 and len(parts[0]) <= 2:
        return int(parts[0]), False
    if len(parts) == 2 and parts[0] in CENTURIES and len(parts[1]) <= 2:
        return int(parts[0]) * 100 + int(parts[1]), True
    return None


def _plausible(day: int, month: int, year_parts: list[str], today: dt.date) -> dt.date | None:
    year = _year(year_parts)
    if year is None:
        return None
    number, said_century = year
    if not said_century:
        number = today.year - (today.year - number) % 100    # the latest year ending in these digits
        born = _date(number, month, day)
        if born is not None and born >= today:
            born = _date(number - 100, month, day)
    else:
        born = _date(number, month, day)
    if born is None or not _years_before(today, MAX_AGE_YEARS) < born < today:
        return None
    return born


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:                                        # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None
