"""How long a silence ends the caller's turn, given what the caller has said so far.

A flat rule (``end_silence_ms`` of non-speech after webrtcvad's own ~110 ms hangover) made every
answer wait ~350 ms for the bot, a yes as long as a story. People leave about 200 ms between turns.
So the silence that ends a turn depends on whether the answer is already whole:

- complete: the text so far is a whole phrase of the turn's grammar (a choice, a yes/no word,
  the transfer words), or a digit string of the expected length. Nothing more is needed, so a
  short silence (``end_silence_closed_ms``) ends the turn;
- more: the last word announces that more follows ("en", "maar", "and", "um", "그리고"), the text
  is the first words of a longer grammar phrase, or fewer digits than expected were said: the
  caller is not done, so the turn waits longer (``end_silence_extended_ms``);
- open: anything else keeps the ordinary rule (``end_silence_ms``).

This module is pure: a ``TurnShape`` (what a complete answer looks like, made by the turn-taker
from the dialog's ``Listen``) and a classification of text. The endpointer counts the frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMPLETE, MORE, OPEN = "complete", "more", "open"

_BRACKETED = re.compile(r"^\[(\d+)\]$")      # the Korean model writes numbers as "[12]"


def normalize(text: str) -> str:
    """Lower case, single spaces: how Vosk writes text and how grammars are compared."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class TurnShape:
    """What a complete answer to this turn looks like.

    ``phrases``: whole answers (the grammar), normalized. ``digits``: the expected number of digits
    when the answer is a number read out digit by digit; while digits are expected, a single
    digit word that is also a grammar phrase does not complete the answer. ``digit_words``: the
    language's words for single digits. ``more_words``: words that, last in the text, announce more
    (unless they are a digit being counted or the text is a whole phrase).
    """

    phrases: frozenset[str] = frozenset()
    digits: int | None = None
    digit_words: frozenset[str] = frozenset()
    more_words: frozenset[str] = frozenset()

    def ending(self, text: str) -> str:
        """COMPLETE, MORE or OPEN for the caller's text so far."""
        text = normalize(text)
        if not text:
            return OPEN
        words = text.split()
        last = words[-1]
        if last in self.more_words and last not in self.digit_words and text not in self.phrases:
            return MORE
        if self.digits:
            count = self.count_digits(words)
            if count == self.digits or (count == 0 and text in self.phrases):
                return COMPLETE
            return MORE if 0 < count < self.digits else OPEN
        if text in self.phrases:
            return COMPLETE
        return MORE if self.begins_a_phrase(text) else OPEN

    def begins_a_phrase(self, text: str) -> bool:
        """The text is the first words of a longer grammar phrase ("상담원" of "상담원 연결해 주세요")."""
        start = text + " "
        return any(phrase.startswith(start) for phrase in self.phrases)

    def count_digits(self, words: list[str]) -> int:
        """Digits said one by one: numerals count each digit, digit words one each."""
        count = 0
        for word in words:
            bracketed = _BRACKETED.match(word)
            if word.isdigit():
                count += len(word)
            elif bracketed:
                count += len(bracketed.group(1))
            elif word in self.digit_words:
                count += 1
        return count


OPEN_SHAPE = TurnShape()
"""A turn with nothing to compare against: the ordinary rule, and no text is ever asked for."""
