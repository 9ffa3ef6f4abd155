"""Slot values from caller text: digits, numbers, dates, Dutch postcodes, yes/no, choices, scores.

Each parser takes ASR-style text and returns the value or ``None`` when the text does not hold one;
they never guess. Spoken numbers go through text2num (``alpha2digit``), which handles Dutch
compounds such as "twaalfduizend driehonderdvijfenveertig"; what it does not cover (compound
years like "negentienzeventig", letter names in postcodes) is handled here.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable

from text_to_num import alpha2digit

from voicebot.nlu.lexicon import CENTURY_PREFIXES, LETTERS, MONTHS, NO, RELATIVE_DAYS, YES
from voicebot.nlu.normalize import normalize, strip_accents

SLOT_TYPES = ("digits", "number", "date", "yes_no", "postcode", "choice", "text")

_TEXT2NUM_LANGS = {"nl", "en", "fr", "es", "de", "pt", "it", "ca", "ru"}
_DIGIT_GROUP = re.compile(r"\d+")
_ORDINAL = re.compile(r"^(\d+)(e|ste|de|st|nd|rd|th)$")


def to_digits(text: str, language: str) -> str:
    """Text with spoken numbers turned into numerals ("vijf maart" -> "5 maart")."""
    norm = normalize(text, language)
    prefixes = CENTURY_PREFIXES.get(language, ())
    split = []
    for word in norm.split():
        for prefix in prefixes:
            rest = word[len(prefix):]
            if word.startswith(prefix) and rest and _spoken_number(rest, language) is not None:
                word = f"{prefix} {rest}"
                break
        split.append(word)
    norm = " ".join(split)
    if language in _TEXT2NUM_LANGS:
        try:
            norm = alpha2digit(norm, language)
        except Exception:  # noqa: BLE001 - text2num raises plain errors on odd input; keep the text as is
            pass
    return norm


def _spoken_number(word: str, language: str) -> int | None:
    if language not in _TEXT2NUM_LANGS:
        return None
    try:
        out = alpha2digit(word, language)
    except Exception:  # noqa: BLE001
        return None
    return int(out) if out.isdigit() else None


def parse_digits(text: str, language: str = "nl", length: tuple[int, int] | None = None) -> str | None:
    """A digit string spoken one by one or in groups ("nul zes twaalf" -> "0612")."""
    digits = "".join(_DIGIT_GROUP.findall(to_digits(text, language)))
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
            if tok.isdigit():
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


def parse_date(text: str, language: str = "nl", today: dt.date | None = None) -> dt.date | None:
    """A calendar date: "vijf maart negentienzeventig", "de vijfde maart", "morgen", "5-3-1970".

    Without a year the next such date from ``today`` on is meant (callers plan moves and
    appointments ahead); a date of birth needs the year, which callers say anyway.
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
    """A satisfaction score from 1 to 5."""
    groups = _DIGIT_GROUP.findall(to_digits(text, language))
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
