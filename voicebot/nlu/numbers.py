"""Spoken numbers as numerals, and digit strings as callers read them out.

Spoken numbers go through text2num (``alpha2digit``), which handles Dutch compounds such as
"twaalfduizend driehonderdvijfenveertig"; what it does not cover (compound years like
"negentienzeventig", "tweeenveertig" typed without its diaeresis, the isolated small numbers it
leaves alone because "een" is also an article) is handled here.
"""

from __future__ import annotations

import re

from text_to_num import alpha2digit

from voicebot.nlu.lexicon import (
    AMBIGUOUS_DIGIT_WORDS, CENTURY_PREFIXES, DIGIT_WORDS, HUNDRED, REPEAT_WORDS, TEENS, TENS,
)
from voicebot.nlu.normalize import ascii_digits, normalize

TEXT2NUM_LANGS = frozenset({"nl", "en", "fr", "es", "de", "pt", "it", "ca", "ru"})
MAX_ANSWER_CHARS = 400
"""Longer text is not an answer to a question for a number; the digit and date parsers refuse it
rather than spend time on it (typed text in the simulator and the web chat is not bounded)."""

_ORDINAL = re.compile(r"^([0-9]+)(e|ste|de|st|nd|rd|th)$")
_ASCII_DIGITS = re.compile(r"[0-9]+")
# "tweeenveertig" as typed without the diaeresis; text2num knows only "tweeënveertig".
_NL_COMPOUND = re.compile(r"\b(twee|drie)en(?=(?:twintig|dertig|veertig|vijftig|zestig|zeventig|tachtig|negentig)\b)")


def to_digits(text: str, language: str, *, small: bool = False) -> str:
    """Text with spoken numbers turned into numerals ("vijf maart" -> "5 maart").

    text2num leaves a lone "een", "twee", "eerste" or "one" as a word, because "een" is also the
    article; ``small=True`` converts them too, for answers that can only be numbers (a date).
    """
    norm = normalize(ascii_digits(text), language)
    if language == "nl":
        norm = _NL_COMPOUND.sub(r"\1ën", norm)
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
    if language in TEXT2NUM_LANGS:
        try:
            norm = alpha2digit(norm, language, threshold=0 if small else 3)
        except Exception:  # noqa: BLE001 - text2num raises plain errors on odd input; keep the text as is
            pass
    return norm


def _spoken_number(word: str, language: str) -> int | None:
    if language not in TEXT2NUM_LANGS:
        return None
    try:
        out = alpha2digit(word, language)
    except Exception:  # noqa: BLE001
        return None
    return int(out) if out.isdigit() else None


def number_token(token: str) -> str | None:
    """The ASCII digits of a numeral or an ordinal numeral ("12", "12e", "3rd"), else None."""
    if token.isascii() and token.isdigit():
        return token
    m = _ORDINAL.match(token)
    return m.group(1) if m else None


def spoken_digits(text: str, language: str = "nl") -> str:
    """The digits a caller said, in order, as one ASCII string ("" when there are none).

    Digits one by one, in pairs or mixed with numerals all work: "vier twee drie nul nul één",
    "tweeënveertig drieëndertig", "vier-twee-drie", "4 2 3", "eh vier uh twee drie", "double four".
    Words that are not numbers ("streepje", "en", "mijn klantnummer is") are skipped.
    """
    if len(text) > MAX_ANSWER_CHARS:
        return ""
    tokens = _split_digit_syllables(to_digits(text, language).split(), language)
    words = DIGIT_WORDS.get(language, {})
    ambiguous = AMBIGUOUS_DIGIT_WORDS.get(language, frozenset())
    repeats = REPEAT_WORDS.get(language, {})

    def numeric(i: int) -> bool:
        return 0 <= i < len(tokens) and (number_token(tokens[i]) is not None or tokens[i] in words
                                         or tokens[i] in repeats)

    out: list[str] = []
    times = 1
    for i, tok in enumerate(tokens):
        digits = tok if tok.isascii() and tok.isdigit() else None
        if digits is None and tok in words and (tok not in ambiguous or len(tokens) == 1
                                                or numeric(i - 1) or numeric(i + 1)):
            digits = words[tok]
        if digits is None:
            times = repeats.get(tok, 1)
            continue
        if times > 1 and len(digits) == 1:
            digits *= times
        times = 1
        out.append(digits)
    return "".join(out)


def _split_digit_syllables(tokens: list[str], language: str) -> list[str]:
    """Korean digits written together ("일이삼") as one syllable each; other languages unchanged."""
    if language != "ko":
        return tokens
    words = DIGIT_WORDS["ko"]
    out: list[str] = []
    for tok in tokens:
        out.extend(tok if len(tok) > 1 and all(c in words for c in tok) else [tok])
    return out


def digit_phrases(language: str) -> tuple[str, ...]:
    """The words a constrained recogniser needs for digit strings in ``language``.

    Callers read customer and phone numbers digit by digit or in pairs ("nul zes, twaalf,
    vierendertig"), now and then with a hundred ("vier honderd twaalf"). So: the digits, ten to
    nineteen, the tens, the Dutch pairs 21 to 99 (written as one word, "tweeënveertig"; English
    "forty two" is two words already in the list), "honderd"/"hundred", and English "double" and
    "triple". Thousands are left out: nobody reads a customer number as thousands, and every extra
    word is one more that noise can be forced onto. A recogniser drops the words its model lacks;
    the grammar lets a caller say any sequence of these.
    """
    digits = DIGIT_WORDS.get(language, {})
    phrases = [*digits, *TEENS.get(language, ()), *TENS.get(language, ())]
    if language == "nl":
        ones = [w for w, d in digits.items() if d != "0" and w != "één"]
        phrases += [f"{one}{'ën' if one.endswith('e') else 'en'}{tens}" for tens in TENS["nl"] for one in ones]
    if language in HUNDRED:
        phrases.append(HUNDRED[language])
    phrases += list(REPEAT_WORDS.get(language, {}))
    return tuple(dict.fromkeys(phrases))
