"""Did we understand the caller? One score from several signals, then accept, confirm or reject.

A recogniser's confidence is known to be unreliable (wrong words often score 1.0), so it only
scales the score and can never reject an answer on its own. What does lower it: words the
recogniser could not place (``[unk]``), low per-word confidences, a constrained grammar that
matched nothing, and an intent barely ahead of the runner-up (a close call is confirmed, never
taken as is). Reprompts and misses across the call are counted by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voicebot.dialog.events import Utterance
from voicebot.flow.schema import Confidence

ACCEPT, CONFIRM, REJECT = "accept", "confirm", "reject"
UNKNOWN_WORDS = frozenset({"[unk]", "<unk>"})
CLOSE_CALL_MARGIN = 0.15
LOW_WORD_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Verdict:
    decision: str
    score: float
    signals: dict[str, Any] = field(default_factory=dict)


def unknown_ratio(utterance: Utterance) -> float:
    """Share of words the recogniser could not place; 1.0 for an empty utterance."""
    heard = [w.word for w in utterance.words] or utterance.text.split()
    return sum(1 for w in heard if w.lower() in UNKNOWN_WORDS) / len(heard) if heard else 1.0


def assess(nlu_confidence: float, margin: float, utterance: Utterance, thresholds: Confidence) -> Verdict:
    """Combine understanding (classifier or parser) with how well the words were heard."""
    tokens = utterance.text.split()
    heard = [w.word for w in utterance.words] or tokens
    unknown = sum(1 for w in heard if w.lower() in UNKNOWN_WORDS)
    unk_ratio = unknown_ratio(utterance)
    low_words = (sum(1 for w in utterance.words if w.confidence < LOW_WORD_CONFIDENCE) / len(utterance.words)
                 if utterance.words else 0.0)
    asr = min(1.0, max(0.0, utterance.confidence))
    score = nlu_confidence * (0.5 + 0.5 * asr) * (1.0 - unk_ratio) * (1.0 - 0.5 * low_words)
    grammar_miss = utterance.grammar and (not tokens or unk_ratio >= 0.5)
    if grammar_miss:
        score = 0.0
    close_call = margin < CLOSE_CALL_MARGIN
    signals = {"asr_confidence": round(asr, 3), "unknown_words": unknown, "low_confidence_words": round(low_words, 3),
               "margin": round(margin, 3), "grammar_miss": grammar_miss, "score": round(score, 3)}
    if score >= thresholds.accept and not close_call:
        return Verdict(ACCEPT, score, signals)
    if score >= thresholds.confirm:
        return Verdict(CONFIRM, score, signals)
    return Verdict(REJECT, score, signals)
