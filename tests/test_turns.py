"""The turn-taker on synthetic sequences: no socket, no recogniser, no thread, no wall clock."""

from __future__ import annotations

from voicebot.dialog.actions import Hangup, Listen, Transfer
from voicebot.dialog.events import Digits, NoInput, SpeechUnavailable, Utterance
from voicebot.telephony.turns import (
    MARK_MARGIN, ArmRecognizer, Clear, CloseStream, StartRecognition, StopRecognition, ToDialog, TurnTaker, shape_of,
)
from voicebot.speech.end_of_turn import COMPLETE, MORE, OPEN, TurnShape

ASK = Listen(step="menu", phrases=("ja", "nee"), no_input_timeout=6.0)
KEYS = Listen(step="pin", speech=False, max_digits=4, no_input_timeout=6.0)
START = StartRecognition(("ja", "nee"), shape_of(ASK))


def run(turns: TurnTaker, seconds: float, step: float = 0.02) -> list:
    """Feed ``seconds`` of audio in 20 ms frames; every command that came out."""
    out = []
    for _ in range(round(seconds / step)):
        out += turns.tick(step)
    return out


def events(commands) -> list:
    return [c.event for c in commands if isinstance(c, ToDialog)]


def test_a_barge_in_prompt_is_listened_over_and_the_clock_starts_when_it_was_heard():
    turns = TurnTaker()
    assert turns.say("1:welkom", 3.0, barge_in=True) == []
    assert turns.listen(ASK) == [START]
    assert turns.recognizing
    assert run(turns, 2.0) == []
    assert turns.mark("1:welkom") == [ArmRecognizer(6.0)]


def test_a_listen_with_nothing_playing_arms_at_once():
    turns = TurnTaker()
    assert turns.listen(ASK) == [START, ArmRecognizer(6.0)]


def test_a_long_first_prompt_does_not_make_the_marks_after_it_look_late():
    """An 18.3 s welcome, then the question: the question's mark is not given up when the welcome's returns."""
    turns = TurnTaker()
    turns.say("1:welkom", 18.3, barge_in=True)
    turns.say("2:waarmee kan ik u helpen", 2.0, barge_in=True)
    turns.listen(ASK)
    assert run(turns, 18.3) == []
    assert turns.mark("1:welkom") == []
    # The question plays until 20.3 s; its mark is late only after 20.3 + MARK_MARGIN.
    assert run(turns, 20.3 + MARK_MARGIN - 18.3 - 0.1) == []
    assert turns.prompts, "the question's mark is still awaited"
    assert turns.mark("2:waarmee kan ik u helpen") == [ArmRecognizer(6.0)]


def test_a_mark_that_never_comes_back_is_given_up_after_its_own_end_plus_a_margin():
    turns = TurnTaker()
    turns.say("1:a", 1.0, barge_in=True)
    turns.listen(ASK)
    assert run(turns, 1.0 + MARK_MARGIN - 0.1) == []
    assert run(turns, 0.2) == [ArmRecognizer(6.0)]
    assert not turns.prompts


def test_marks_echo_in_order_so_a_later_mark_settles_the_earlier_ones():
    turns = TurnTaker()
    turns.say("1:a", 1.0, barge_in=True)
    turns.say("2:b", 1.0, barge_in=True)
    turns.listen(ASK)
    assert turns.mark("2:b") == [ArmRecognizer(6.0)]
    assert turns.mark("1:a") == []          # late duplicate: nothing happens
    assert turns.mark("9:unknown") == []


def test_speech_interrupts_a_prompt_that_allows_it():
    turns = TurnTaker()
    turns.say("1:a", 5.0, barge_in=True)
    turns.listen(ASK)
    assert turns.speech_started() == [Clear()]
    # Twilio echoes cleared marks at once; the caller's turn has speech, so no no-input clock is armed.
    assert turns.mark("1:a") == []
    assert events(turns.utterance(Utterance("ja", 0.9))) == [Utterance("ja", 0.9)]


def test_a_prompt_that_does_not_allow_barge_in_is_neither_cleared_nor_listened_over():
    turns = TurnTaker()
    turns.say("1:juridisch", 4.0, barge_in=False)
    assert turns.listen(ASK) == []
    assert not turns.recognizing
    assert turns.speech_started() == []
    assert turns.key("5") == []                   # not cleared; typed ahead into the turn
    assert turns.mark("1:juridisch") == [START]


def test_a_key_interrupts_and_max_digits_submits():
    turns = TurnTaker()
    turns.say("1:toets uw pincode", 3.0, barge_in=True)
    turns.listen(KEYS)
    assert turns.key("1") == [Clear()]
    assert turns.key("2") == [] and turns.key("3") == []
    assert events(turns.key("4")) == [Digits("1234")]
    assert turns.turn is None


def test_the_finish_key_submits_and_a_lone_finish_key_restarts_the_clock():
    turns = TurnTaker()
    turns.listen(KEYS)
    assert turns.key("#") == []
    assert turns.turn.no_input_deadline == 6.0
    turns.key("7")
    assert events(turns.key("#")) == [Digits("7")]


def test_keys_without_the_finish_key_are_taken_after_the_inter_digit_timeout():
    turns = TurnTaker()
    turns.listen(KEYS)
    turns.key("1")
    turns.key("2")
    assert run(turns, 2.9) == []
    assert events(run(turns, 0.2)) == [Digits("12")]


def test_keys_being_typed_win_over_what_the_recogniser_heard():
    turns = TurnTaker()
    turns.listen(Listen(step="nummer", no_input_timeout=6.0))
    turns.key("1")
    assert turns.utterance(Utterance("een")) == []
    assert events(turns.key("#")) == [Digits("1")]


def test_keypad_only_no_input_runs_on_the_audio_clock():
    turns = TurnTaker()
    turns.say("1:vraag", 1.0, barge_in=True)
    assert turns.listen(KEYS) == []
    turns.mark("1:vraag")
    assert run(turns, 5.9) == []
    assert events(run(turns, 0.2)) == [NoInput()]


def test_the_recognisers_no_input_and_noise_results():
    turns = TurnTaker()
    turns.listen(ASK)
    assert turns.utterance(Utterance("")) == [StopRecognition(), START,
                                              ArmRecognizer(6.0)]
    assert turns.no_speech() == [StopRecognition(), ToDialog(NoInput())]
    assert turns.no_speech() == []              # the turn is over: a late result is dropped


def test_speech_failing_moves_the_call_to_keys():
    turns = TurnTaker()
    turns.listen(ASK)
    assert turns.speech_failed("backlog") == [StopRecognition(), ToDialog(SpeechUnavailable("backlog"))]
    assert turns.speech_failed("again") == []
    # From now on a listen that allows speech only takes keys.
    assert turns.listen(ASK) == []
    assert not turns.recognizing and turns.turn.no_input_deadline == 6.0


def test_a_transfer_waits_for_its_announcement_then_closes():
    turns = TurnTaker()
    turns.listen(ASK)
    turns.say("2:ik verbind u door", 2.0, barge_in=False)
    assert turns.end(Transfer("explicit_request", "algemeen")) == [StopRecognition()]
    assert turns.speech_started() == [] and turns.key("0") == []
    assert run(turns, 1.0) == []
    assert turns.mark("2:ik verbind u door") == [CloseStream()]
    assert turns.mark("2:ik verbind u door") == []


def test_a_long_say_then_a_transfer_announcement_are_both_heard_before_closing():
    turns = TurnTaker()
    turns.say("1:lange uitleg", 12.0, barge_in=True)
    turns.say("2:ik verbind u door", 2.0, barge_in=False)
    turns.end(Transfer("explicit_request", "algemeen"))
    assert turns.mark("1:lange uitleg") == []
    assert run(turns, 12.0 + 2.0 + MARK_MARGIN - 0.1) == []
    assert turns.mark("2:ik verbind u door") == [CloseStream()]


def test_an_ending_with_nothing_to_say_closes_at_once_and_an_unheard_one_closes_after_its_margin():
    assert TurnTaker().end(Hangup()) == [CloseStream()]
    turns = TurnTaker()
    turns.say("1:tot ziens", 1.0, barge_in=True)
    turns.end(Hangup())
    assert CloseStream() in run(turns, 1.0 + MARK_MARGIN + 0.1)


def test_a_hang_up_stops_recognition_and_every_timer():
    turns = TurnTaker()
    turns.say("1:vraag", 1.0, barge_in=True)
    turns.listen(ASK)
    assert turns.hung_up() == [StopRecognition()]
    assert run(turns, 30.0) == []


# -- the turn's shape: when a spoken answer is whole -------------------------------------------------

def test_the_recognition_turn_carries_the_shape_of_the_listen():
    turns = TurnTaker(language="nl")
    [start, _] = turns.listen(Listen(step="ok", phrases=("Ja", "nee", "dat klopt"), max_digits=1))
    assert start.shape.phrases == {"ja", "nee", "dat klopt"}
    assert start.shape.digits is None                     # one key (1 = yes) says nothing about speech
    assert start.shape.ending("dat klopt") == COMPLETE and start.shape.ending("dat") == MORE
    assert start.shape.ending("klopt") == OPEN
    assert start.shape.ending("ja maar") == MORE          # Dutch words that announce more


def test_a_number_read_out_is_complete_at_the_expected_count_of_digits():
    shape = shape_of(Listen(step="klantnummer", phrases=("een", "twee", "drie", "medewerker"), max_digits=6), "nl")
    assert shape.digits == 6
    assert shape.ending("een") == MORE                    # a digit of the grammar is not yet the number: more comes
    assert shape.ending("een twee drie 456") == COMPLETE
    assert shape.ending("medewerker") == COMPLETE


def test_an_open_question_has_no_phrases_only_the_words_that_announce_more():
    shape = shape_of(Listen(step="route", max_digits=1), "en")
    assert shape.phrases == frozenset() and shape.digits is None
    assert shape.ending("i want to pay my bill") == OPEN and shape.ending("my bill and") == MORE
    assert shape_of(Listen(step="route"), "xx") == TurnShape()      # an unknown language: the ordinary rule only
