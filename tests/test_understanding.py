"""The understanding score (``assess``) at its boundaries: accept, confirm, reject, the close call."""

import pytest
from pydantic import ValidationError

from voicebot.dialog.events import Utterance, Word
from voicebot.dialog.understanding import (ACCEPT, CLOSE_CALL_MARGIN, CONFIRM, REJECT, assess,
                                           unknown_ratio)
from voicebot.flow.schema import Confidence

LIMITS = Confidence(accept=0.60, confirm=0.35)
CLEAR = 0.5     # the intent is well ahead of the runner-up: no close call
HEARD = Utterance("ik wil mijn meterstand doorgeven")     # confidence 1.0, no per-word data: the score is the NLU's


@pytest.mark.parametrize("nlu, decision", [
    (1.0, ACCEPT), (0.60, ACCEPT), (0.5999, CONFIRM),       # accept: at or above, not just below
    (0.35, CONFIRM), (0.3499, REJECT), (0.0, REJECT),       # confirm: the same
])
def test_accept_and_confirm_are_inclusive_lower_bounds(nlu, decision):
    verdict = assess(nlu, CLEAR, HEARD, LIMITS)
    assert verdict.score == pytest.approx(nlu)
    assert verdict.decision == decision


@pytest.mark.parametrize("margin, decision", [
    (CLOSE_CALL_MARGIN, ACCEPT), (CLOSE_CALL_MARGIN - 0.001, CONFIRM), (0.0, CONFIRM),
])
def test_a_close_call_is_confirmed_however_high_the_score(margin, decision):
    verdict = assess(0.95, margin, HEARD, LIMITS)
    assert verdict.decision == decision and verdict.signals["margin"] == round(margin, 3)


def test_a_close_call_below_confirm_is_still_rejected():
    assert assess(0.2, 0.0, HEARD, LIMITS).decision == REJECT


def test_the_recogniser_confidence_scales_but_never_rejects_on_its_own():
    verdict = assess(1.0, CLEAR, Utterance("meterstand doorgeven", confidence=0.0), LIMITS)
    assert verdict.score == pytest.approx(0.5) and verdict.decision == CONFIRM
    assert assess(1.0, CLEAR, Utterance("meterstand doorgeven", confidence=0.5), LIMITS).score == pytest.approx(0.75)


def test_unknown_and_unsure_words_lower_the_score():
    one_unknown = Utterance("ik wil [unk] meterstand",
                            words=(Word("ik"), Word("wil"), Word("[unk]", 0.2), Word("meterstand")))
    assert unknown_ratio(one_unknown) == 0.25
    verdict = assess(1.0, CLEAR, one_unknown, LIMITS)
    # a quarter unknown (x 0.75), a quarter of the words under 0.5 (x 0.875)
    assert verdict.score == pytest.approx(0.75 * 0.875) and verdict.decision == ACCEPT
    assert verdict.signals["unknown_words"] == 1 and verdict.signals["low_confidence_words"] == 0.25
    half = Utterance("[unk] meterstand", words=(Word("[unk]", 0.9), Word("meterstand", 0.9)))
    assert assess(1.0, CLEAR, half, LIMITS).score == pytest.approx(0.5)
    assert unknown_ratio(Utterance("")) == 1.0


@pytest.mark.parametrize("text", ["[unk]", "", "[unk] ja"])
def test_a_grammar_that_matched_nothing_scores_zero(text):
    verdict = assess(1.0, CLEAR, Utterance(text, grammar=True), LIMITS)
    assert verdict.score == 0.0 and verdict.decision == REJECT and verdict.signals["grammar_miss"] is True


def test_a_grammar_match_is_scored_as_usual():
    verdict = assess(1.0, CLEAR, Utterance("ja", grammar=True), LIMITS)
    assert verdict.decision == ACCEPT and verdict.signals["grammar_miss"] is False


def test_confirm_above_accept_is_an_error():
    with pytest.raises(ValidationError, match="confidence.confirm must not be above confidence.accept"):
        Confidence(accept=0.5, confirm=0.6)
    assert Confidence(accept=0.5, confirm=0.5).confirm == 0.5       # equal is allowed: nothing is asked back
