"""Slot values from caller text: digits, numbers, dates, Dutch postcodes, yes/no, choices, scores,
and the values that identify a caller (dates of birth, house numbers, PINs).

Each parser takes ASR-style text and returns the value or ``None`` when the text does not hold one;
they never guess. Spoken numbers become numerals in ``voicebot.nlu.numbers``; dates of birth have
rules of their own in ``voicebot.nlu.birth_dates``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable

from voicebot.nlu.birth_dates import parse_birth_date
from voicebot.nlu.lexicon import LETTERS, MONTHS, NO, RELATIVE_DAYS, YES
from voicebot.nlu.normalize import ascii_digits, normalize, strip_accents
from voicebot.nlu.numbers import spoken_digits, to_digits

SLOT_TYPES = ("digits", "number", "date", "yes_no", "postcode", "choice", "text",
              "birth_date", "house_number", "pin")
SECRET_SLOT_TYPES = frozenset({"birth_date", "pin"})
"""Slot types whose values are secret whatever the flow says: never said back, logged or stored."""
PIN_LENGTH = (4, 8)

_DIGIT_GROUP = re.compile(r"\d+")
_ORDINAL = re.compile(r"^(\d+)(e|ste|de|st|nd|rd|th)$")
_HOUSE_NUMBER = re.compile(r"([1-9][0-9]{0,4})\s*-?\s*([a-z])?")


def parse_digits(text: str, language: str = "nl", length: tuple[int, int] | None = None) -> str | None:
    """A digit string spoken one by one or in groups ("nul zes twaalf" -> "0612"), ASCII digits only.

    See ``spoken_digits`` for what callers say; ``length`` bounds the number of digits.
    """
    digits = spoken_digits(text, language)
    if not digits:
        return None
    if length and not (length[0] <= len(digits) <= length[1]):
        return None
    return digits


def parse_number(text: str, language: str = "nl") -> int | None:
    """A whole number ("twaalfduizend driehonderdvijfenveertig" -> 12345; "een twee drie" -> 123)."""
    groups = _DIGIT_GROUP.findall(to_digits(text, language).replace(".", ""))
    if not groups:
        return None
    return int("".join(groups))


def parse_yes_no(text: str, language: str = "nl") -> bool | None:
    """True, False or None; a negative phrase wins over a positive one ("dat klopt niet")."""
    hay = f" {normalize(text, language)} "
    if any(f" {normalize(p, language)} " in hay for p in NO.get(language, ())):
        return False
    if any(f" {normalize(p, language)} " in hay for p in YES.get(language, ())):
        return True
    return None


def parse_postcode(text: str, language: str = "nl") -> str | None:
    """A Dutch postcode, four digits (no leading 0) and two letters: "twaalf vierendertig a b" -> "1234 AB"."""
    letters = LETTERS.get(language, {})
    tokens = to_digits(text, language).replace(",", " ").split()
    digits, out_letters = "", ""
    for tok in tokens:
        tok_plain = strip_accents(tok)
        if len(digits) < 4:
            if tok.isascii() and tok.isdigit():    # "²" is a digit to isdigit(), not to a postcode
                digits += tok
                continue
            m = re.fullmatch(r"(\d{4})([a-z]{2})", tok)
            if m and not digits:
                digits, out_letters = m.group(1), m.group(2).upper()
                break
            if digits:
                digits = ""  # digits must be one run
            continue
        if len(out_letters) < 2:
            if len(tok_plain) == 1 and tok_plain.isalpha():
                out_letters += tok_plain.upper()
            elif tok_plain in letters:
                out_letters += letters[tok_plain]
            elif len(tok_plain) == 2 and tok_plain.isalpha() and not out_letters and tok_plain not in letters:
                out_letters = tok_plain.upper()
            elif out_letters:
                break
        if len(out_letters) == 2:
            break
    if len(digits) != 4 or digits[0] == "0" or len(out_letters) != 2 or out_letters in {"SA", "SD", "SS"}:
        return None
    return f"{digits} {out_letters}"


def parse_house_number(text: str, language: str = "nl") -> str | None:
    """A house number with an optional letter, as the directory compares them: digits, then the
    letter in capitals ("twaalf" -> "12", "12a" -> "12A", "twaalf bee" -> "12B", "1 2 2" -> "122").

    Numbers read digit by digit are joined; any other second number ("12 2 hoog", a postcode in
    the same breath) makes the answer unclear, and it is refused rather than guessed.
    """
    compact = house_number(text)
    if compact or len(text) > 100:
        return compact
    letters = LETTERS.get(language, {})
    tokens = to_digits(text, language).split()
    numbers = [i for i, tok in enumerate(tokens) if tok.isascii() and tok.isdigit()]
    if not numbers or numbers != list(range(numbers[0], numbers[-1] + 1)):
        return None
    run = [tokens[i] for i in numbers]
    if len(run) > 1 and not all(len(t) == 1 for t in run):
        return None
    letter = ""
    rest = tokens[numbers[-1] + 1:]
    if rest:
        word = strip_accents(rest[0])
        letter = word.upper() if len(word) == 1 and word.isalpha() else letters.get(word, "")
    return house_number("".join(run) + letter)


def house_number(value: str) -> str | None:
    """A written house number in the directory's form: "12", "12 a", "12-A" -> "12" / "12A"."""
    m = _HOUSE_NUMBER.fullmatch(ascii_digits(value).strip().lower())
    if not m:
        return None
    return m.group(1) + (m.group(2) or "").upper()


def parse_pin(text: str, language: str = "nl") -> None:
    """A PIN is never taken from speech: said aloud it can be overheard by anyone near the caller,
    and it would pass through the recogniser, its logs and transcripts. A flow asks for it by
    keypad only (``pin_from_keys``); whatever a caller says at that question is no PIN."""
    return None


def pin_from_keys(keys: str, length: tuple[int, int] | None = None) -> str | None:
    """A PIN keyed in: 4 to 8 digits (or a step's narrower ``length``), exactly as pressed."""
    low, high = PIN_LENGTH
    if length:
        low, high = max(low, length[0]), min(high, length[1])
    if not (keys.isascii() and keys.isdigit() and low <= len(keys) <= high):
        return None
    return keys


def parse_date(text: str, language: str = "nl", today: dt.date | None = None) -> dt.date | None:
    """A calendar date: "vijf maart negentienzeventig", "de vijfde maart", "morgen", "5-3-1970".

    Without a year the next such date from ``today`` on is meant (callers plan moves and
    appointments ahead). A date of birth lies in the past instead: slot type ``birth_date``.
    """
    today = today or dt.date.today()
    norm = normalize(text, language)
    for word, delta in RELATIVE_DAYS.get(language, {}).items():
        if f" {word} " in f" {norm} ":
            return today + dt.timedelta(days=delta)
    m = re.search(r"\b(\d{1,2})[-/.](\d{1,2})[-/.](\d{2,4})\b", text)
    if m:
        day, month, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        return _safe_date(year + (1900 if 30 <= year < 100 else 2000 if year < 30 else 0), month, day)
    months = MONTHS.get(language, {})
    tokens = to_digits(text, language).split()
    month_at = next((i for i, t in enumerate(tokens) if t in months), None)
    if month_at is None:
        return None
    month = months[tokens[month_at]]

    def number(tok: str) -> int | None:
        if tok.isdigit():
            return int(tok)
        m2 = _ORDINAL.match(tok)
        return int(m2.group(1)) if m2 else None

    before = [n for n in (number(t) for t in tokens[:month_at]) if n is not None]
    after = [n for n in (number(t) for t in tokens[month_at + 1:]) if n is not None]
    day = before[-1] if before else (after.pop(0) if after else None)
    if day is None or not 1 <= day <= 31:
        return None
    year: int | None = None
    if len(after) >= 2 and after[0] in (18, 19, 20) and after[1] < 100:
        year = after[0] * 100 + after[1]
    elif after and after[0] >= 1000:
        year = after[0]
    elif after and after[0] < 100:
        year = after[0] + (1900 if after[0] >= 30 else 2000)
    if year is None:
        candidate = _safe_date(today.year, month, day)
        if candidate and candidate < today:
            candidate = _safe_date(today.year + 1, month, day)
        return candidate
    return _safe_date(year, month, day)


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def parse_choice(text: str, choices: dict[str, list[str]], language: str = "nl") -> str | None:
    """The choice whose phrase (or value) occurs in the text; the longest phrase wins."""
    hay = f" {normalize(text, language)} "
    best: tuple[int, str] | None = None
    for value, phrases in choices.items():
        for phrase in [value.replace("_", " "), *phrases]:
            needle = normalize(phrase, language)
            if needle and f" {needle} " in hay and (best is None or len(needle) > best[0]):
                best = (len(needle), value)
    return best[1] if best else None


def parse_score(text: str, language: str = "nl") -> int | None:
    """A satisfaction score from 1 to 5. The answer can only be a number, so a lone "een" or "twee"
    is one too (``to_digits(small=True)``)."""
    groups = _DIGIT_GROUP.findall(to_digits(text, language, small=True))
    if not groups:
        return None
    score = int(groups[-1])  # "een vijf" (a five) reads as "1 5": the grade is said last
    return score if 1 <= score <= 5 else None


def parse_text(text: str, language: str = "nl") -> str | None:
    norm = normalize(text, language).replace("[unk]", "").strip()
    return norm or None


def parse_slot(slot_type: str, text: str, language: str, *, length: tuple[int, int] | None = None,
               choices: dict[str, list[str]] | None = None, today: dt.date | None = None) -> Any:
    """Dispatch on the flow's slot type; ``None`` means the text holds no such value."""
    parsers: dict[str, Callable[[], Any]] = {
        "digits": lambda: parse_digits(text, language, length),
        "number": lambda: parse_number(text, language),
        "date": lambda: parse_date(text, language, today),
        "yes_no": lambda: parse_yes_no(text, language),
        "postcode": lambda: parse_postcode(text, language),
        "choice": lambda: parse_choice(text, choices or {}, language),
        "text": lambda: parse_text(text, language),
        "birth_date": lambda: parse_birth_date(text, language, today),
        "house_number": lambda: parse_house_number(text, language),
        "pin": lambda: parse_pin(text, language),
    }
    return parsers[slot_type]()


def extract_entities(text: str, language: str = "nl", today: dt.date | None = None) -> dict[str, Any]:
    """Every typed value found in free text, for `voicebot nlu` and for filling slots early."""
    found: dict[str, Any] = {}
    postcode = parse_postcode(text, language)
    if postcode:
        found["postcode"] = postcode
    date = parse_date(text, language, today)
    if date:
        found["date"] = date.isoformat()
    if not found:
        number = parse_number(text, language)
        if number is not None:
            found["number"] = number
    return found
