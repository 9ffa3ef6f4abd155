"""Bring typed and recognised text to one shape: lowercase words, no punctuation, no hesitations.

Recognisers emit lowercase words without punctuation, and callers hesitate; people typing in the
simulator do neither. Normalising both the same way keeps classifier training and use consistent.
"""

from __future__ import annotations

import re
import unicodedata

from voicebot.nlu.lexicon import HESITATIONS

_PUNCT = re.compile(r"[^\w\s'\[\]-]+", re.UNICODE)


def normalize(text: str, language: str = "nl") -> str:
    """Lowercase, strip punctuation and hesitation words, collapse spaces. Keeps ``[unk]`` tokens."""
    text = unicodedata.normalize("NFC", text).lower()
    text = _PUNCT.sub(" ", text).replace("-", " ")
    hes = HESITATIONS.get(language, frozenset())
    words = [w.strip("'") for w in text.split() if w.strip("'") and w not in hes]
    return " ".join(words)


def words(text: str, language: str = "nl") -> list[str]:
    return normalize(text, language).split()


def contains_phrase(text: str, phrase: str, language: str = "nl") -> bool:
    """Whole-word phrase match on normalised text ("medewerker" matches, "medewerkers" does not)."""
    hay = f" {normalize(text, language)} "
    needle = normalize(phrase, language)
    return bool(needle) and f" {needle} " in hay


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def ascii_digits(text: str) -> str:
    """Every decimal digit as its ASCII form: "１２３" and "١٢٣" become "123".

    Typed text may carry full-width or other scripts' digits, which ``str.isdigit`` and ``\\d``
    accept; values that leave the parsers (customer numbers, PINs, dates) are ASCII only.
    """
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in text)
