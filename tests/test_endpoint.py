"""The endpointer alone: speech/no-speech flags in, decisions out (no audio, no model)."""

from voicebot.speech.endpoint import ENDED, NO_INPUT, STARTED, TOO_LONG, EndpointConfig, Endpointer


def run(flags, **kw):
    ep = Endpointer(EndpointConfig(end_silence_ms=240, min_speech_ms=160, max_utterance_seconds=2.0), **kw)
    return ep, [(i, d) for i, f in enumerate(flags, 1) if (d := ep.push(bool(f)))]


def test_speech_then_silence_ends_after_the_configured_silence():
    ep, events = run([0] * 5 + [1] * 20 + [0] * 20)
    assert events == [(13, STARTED), (37, ENDED)]     # 8 frames of speech = 160 ms; 12 frames = 240 ms of silence
    assert ep.speech_start_frame == 6 and ep.last_speech_frame == 25


def test_a_short_noise_is_not_speech():
    _, events = run([0] * 5 + [1] * 5 + [0] * 30)
    assert events == []


def test_one_frame_dip_inside_a_word_is_forgiven():
    _, events = run([1] * 4 + [0] + [1] * 4 + [0] * 20)
    assert events[0] == (9, STARTED)      # eight speech frames, the dip not counted


def test_a_pause_shorter_than_the_end_silence_does_not_split_an_utterance():
    _, events = run([1] * 10 + [0] * 10 + [1] * 10 + [0] * 12)
    assert [d for _, d in events] == [STARTED, ENDED] and events[1][0] == 42


def test_no_input_counts_from_arming_not_from_listening():
    ep = Endpointer(EndpointConfig())
    assert all(ep.push(False) is None for _ in range(500))   # the prompt is still playing: no clock yet
    ep.arm(1.0)
    decisions = [ep.push(False) for _ in range(50)]
    assert decisions[-1] == NO_INPUT and decisions[:-1] == [None] * 49
    assert ep.push(True) is None                             # done: nothing more


def test_too_long_utterance_is_cut_off():
    _, events = run([1] * 200)
    assert [d for _, d in events] == [STARTED, TOO_LONG]


# -- end of turn: the silence depends on the answer so far ------------------------------------------
# Recorded frame sequences: one (VAD flag, what Vosk would give if asked now) per 20 ms frame.

from voicebot.speech.end_of_turn import COMPLETE, MORE, OPEN, TurnShape  # noqa: E402

SHAPE = TurnShape(phrases=frozenset({"ja", "nee", "medewerker alstublieft"}),
                  more_words=frozenset({"en", "maar", "eh"}))
DIGITS = TurnShape(phrases=frozenset({"een", "twee", "medewerker"}), digits=4,
                   digit_words=frozenset({"een", "twee", "drie", "vier"}), more_words=frozenset({"en"}))
TIMINGS = dict(end_silence_ms=240, end_silence_closed_ms=120, end_silence_extended_ms=600, min_speech_ms=160,
               max_utterance_seconds=15.0)


def replay(frames, shape=SHAPE):
    """Feed (flag, text) frames; returns the decisions with their frame numbers and the frames that asked for text."""
    ep = Endpointer(EndpointConfig(**TIMINGS), shape=shape)
    events, asked = [], []
    for i, (flag, text) in enumerate(frames, 1):
        decision = ep.push(bool(flag))
        if ep.wants_text:
            asked.append(i)
            decision = ep.hear(text) or decision
        if decision:
            events.append((i, decision))
    return events, asked


def said(text, speech_frames, silence_frames, lag=0):
    """Speech frames, then silence in which Vosk's text is ``text`` (after ``lag`` frames of an empty partial)."""
    return [(1, "")] * speech_frames + [(0, "")] * lag + [(0, text)] * (silence_frames - lag)


def test_a_whole_grammar_phrase_ends_after_the_short_silence():
    events, asked = replay(said("ja", 15, 40))
    assert events == [(8, STARTED), (15 + 6, ENDED)]     # 6 frames = 120 ms of silence, not 12
    assert asked == [21]                                  # one partial, when the short silence is up


def test_a_lagging_partial_is_asked_for_on_each_frame_until_the_ordinary_silence():
    events, asked = replay(said("ja", 15, 40, lag=8))     # a short word's partial came ~160 ms into the pause
    assert asked == [21, 22, 23, 24] and events[-1] == (24, ENDED)


def test_the_first_words_of_a_longer_phrase_extend_the_silence():
    events, asked = replay(said("medewerker", 30, 40))     # "medewerker alstublieft" is a phrase
    assert events[-1] == (30 + 30, ENDED) and asked == [36]


def test_a_trailing_word_that_announces_more_extends_the_silence():
    events, _ = replay(said("ja maar", 20, 40))
    assert events[-1] == (20 + 30, ENDED)


def test_the_extended_pause_does_not_split_an_answer_that_goes_on():
    frames = said("twaalf en", 20, 20) + said("twaalf en dertig", 20, 40)
    events, asked = replay(frames)
    assert [d for _, d in events] == [STARTED, ENDED]     # a 400 ms pause after "en": still one turn
    assert events[-1] == (60 + 12, ENDED)                 # then the open rule: "dertig" is not a phrase
    assert asked == [26, *range(66, 73)]                  # none while the extended pause runs


def test_the_same_pause_without_a_word_announcing_more_ends_the_turn():
    events, _ = replay(said("twaalf", 20, 20) + said("twaalf dertig", 20, 40))
    assert events == [(8, STARTED), (20 + 12, ENDED)]


def test_speech_after_a_complete_phrase_is_judged_again_at_its_next_pause():
    # "nee", 80 ms, then more: the early end must not fire on the old text; "nee medewerker
    # alstublieft" is no phrase of its own, so the ordinary rule ends it
    frames = said("nee", 15, 4) + said("nee medewerker", 15, 3) + said("nee medewerker alstublieft", 15, 40)
    events, asked = replay(frames)
    assert events == [(8, STARTED), (15 + 4 + 15 + 3 + 15 + 12, ENDED)]
    assert asked == list(range(58, 65))                   # the pauses before were shorter than 120 ms


def test_digits_end_early_only_at_the_expected_count():
    assert replay(said("een twee drie vier", 40, 40), DIGITS)[0][-1] == (46, ENDED)
    assert replay(said("een twee", 40, 40), DIGITS)[0][-1] == (70, ENDED)    # too few digits: more is coming
    assert replay(said("een", 15, 40), DIGITS)[0][-1] == (45, ENDED)      # a lone digit phrase is not the number
    assert replay(said("medewerker", 15, 40), DIGITS)[0][-1] == (21, ENDED)


def test_an_open_turn_never_asks_for_text():
    events, asked = replay(said("ja", 15, 40), TurnShape())
    assert asked == [] and events[-1] == (15 + 12, ENDED)


def test_a_free_question_asks_once_per_pause_for_a_word_that_announces_more():
    free = TurnShape(more_words=frozenset({"en"}))
    assert replay(said("ja", 15, 40), free) == ([(8, STARTED), (27, ENDED)], [27])
    assert replay(said("twaalf en", 15, 40), free) == ([(8, STARTED), (15 + 30, ENDED)], [27])


def test_an_endpointer_nobody_answers_still_ends_one_frame_after_the_ordinary_silence():
    ep = Endpointer(EndpointConfig(**TIMINGS), shape=SHAPE)
    decisions = [ep.push(f) for f in [True] * 15 + [False] * 20]
    assert decisions.index(ENDED) + 1 == 15 + 12 + 1    # the last ask (frame 27) unanswered: frame 28 ends it


def test_the_shape_classifies_text():
    assert SHAPE.ending(" Ja ") == COMPLETE
    assert SHAPE.ending("ja maar") == MORE and SHAPE.ending("eh") == MORE
    assert SHAPE.ending("") == OPEN and SHAPE.ending("ja nee") == OPEN
    assert DIGITS.ending("12 34") == COMPLETE and DIGITS.ending("[12] 3 vier") == COMPLETE
    assert DIGITS.ending("een twee drie vier een") == OPEN


def test_a_digit_or_a_whole_phrase_is_not_taken_for_a_word_that_announces_more():
    counted = TurnShape(phrases=frozenset({"nee en", "medewerker"}), digits=4,
                        digit_words=frozenset({"een", "twee", "drie", "vier"}), more_words=frozenset({"een", "en"}))
    assert counted.ending("twee drie vier een") == COMPLETE     # "een" is the fourth digit here
    assert counted.ending("twee drie en") == MORE
    assert TurnShape(phrases=frozenset({"nee en"}), more_words=frozenset({"en"})).ending("nee en") == COMPLETE


def test_an_open_dutch_or_english_answer_ending_on_an_article_or_possessive_waits_for_the_rest():
    from voicebot.nlu.lexicon import MORE_WORDS

    dutch, english = TurnShape(more_words=MORE_WORDS["nl"]), TurnShape(more_words=MORE_WORDS["en"])
    assert dutch.ending("ik wil graag de") == MORE and dutch.ending("mijn") == MORE
    assert dutch.ending("ik wil mijn contract opzeggen") == OPEN and dutch.ending("ik weet het") == OPEN
    assert dutch.ending("waar gaat het om") == OPEN and dutch.ending("optie een") == OPEN
    assert english.ending("I want to change my") == MORE and english.ending("I'd like to") == OPEN


def test_by_default_an_open_answer_ends_after_180_ms_and_a_word_announcing_more_after_600():
    free = TurnShape(more_words=frozenset({"en"}))
    for text, frames in (("ik wil verhuizen", 9), ("twaalf en", 30)):
        ep = Endpointer(EndpointConfig(), shape=free)
        decisions = []
        for flag in [True] * 15 + [False] * 40:
            decision = ep.push(flag)
            if ep.wants_text:
                decision = ep.hear(text) or decision
            decisions.append(decision)
        assert decisions.index(ENDED) + 1 == 15 + frames
