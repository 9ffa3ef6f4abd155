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
