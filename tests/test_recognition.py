"""Recognition with the real Korean Vosk model on espeak-ng speech sent through the phone path.

espeak-ng Korean is barely recognisable in free mode, but grammar mode recognises short answers
exactly, so exact-text checks use grammars; free mode is checked for shape (partials, words with
confidences and timings, an endpoint), not for text.
"""

from __future__ import annotations

import threading
import time

import pytest

from conftest import korean, silence
from voicebot.config import SpeechSettings
from voicebot.speech.audio import ulaw_to_pcm
from voicebot.speech.end_of_turn import TurnShape
from voicebot.speech.endpoint import EndpointConfig
from voicebot.speech.models import ModelCorrupt, ModelMissing
from voicebot.speech.recognizer import (Final, NoSpeech, Partial, Recognition, RecognitionFailed, SpeechModels,
                                        SpeechStarted, StreamingRecognizer, recognize_pcm)

GRAMMAR = ["네", "예", "아니요", "예약", "취소", "상담원 연결해 주세요"]


@pytest.fixture(scope="module")
def ko(speech_models):
    return speech_models.get("ko")


def feed(turn: Recognition, ulaw: bytes):
    events = []
    pcm = ulaw_to_pcm(ulaw)
    for i in range(0, len(pcm), 320):
        events.extend(turn.accept(pcm[i:i + 320]))
        if turn.done:
            break
    return events


@pytest.mark.parametrize("text", ["네", "아니요", "예약", "상담원 연결해 주세요"])
def test_grammar_mode_recognises_short_answers_exactly(ko, text):
    turn = Recognition(ko, GRAMMAR)
    events = feed(turn, silence(0.5) + korean(text) + silence(1.5))
    finals = [e.result for e in events if isinstance(e, Final)]
    assert turn.grammar and len(finals) == 1
    result = finals[0]
    assert result.text == text and result.grammar and result.reason == "ended"
    assert result.confidence == sum(w.confidence for w in result.words) / len(result.words)
    assert [w.word for w in result.words] == text.split()
    assert all(0 <= w.confidence <= 1 and 0.4 < w.start < w.end for w in result.words)


def test_speech_start_and_endpoint_come_from_our_endpointer(ko):
    speech = korean("상담원 연결해 주세요")
    turn = Recognition(ko, GRAMMAR, config=EndpointConfig(end_silence_ms=240))
    events = feed(turn, silence(1.0) + speech + silence(3.0))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "SpeechStarted" and kinds[-1] == "Final"
    started = events[0]
    assert 0.9 <= started.at <= 1.3
    result = events[-1].result
    speech_end = 1.0 + len(speech) / 8000
    # decided within half a second of the end of the audio: Vosk's own endpoint takes ~1.4 s
    assert result.speech_end is not None and turn.seconds - (speech_end) < 0.6


def test_free_mode_has_partials_words_confidences_and_an_endpoint(ko):
    turn = Recognition(ko, (), partials=True)
    events = feed(turn, silence(0.5) + korean("안녕하세요 오늘 예약을 취소하고 싶어요") + silence(2.0))
    assert not turn.grammar
    assert any(isinstance(e, Partial) and e.text for e in events)
    finals = [e.result for e in events if isinstance(e, Final)]
    assert len(finals) == 1
    result = finals[0]
    assert result.text and not result.grammar and result.words
    assert all(0 <= w.confidence <= 1 and w.start < w.end for w in result.words)
    assert result.text == " ".join(w.word for w in result.words)


def test_no_input_after_the_prompt(ko):
    turn = Recognition(ko, GRAMMAR)
    assert feed(turn, silence(3.0)) == []            # prompt playing, clock not armed
    turn.arm(1.0)
    events = feed(turn, silence(2.0))
    assert [type(e) for e in events] == [NoSpeech] and turn.done


def test_noise_burst_is_not_speech(ko):
    import numpy as np

    from voicebot.speech.audio import pcm_to_ulaw

    click = (np.random.default_rng(1).normal(0, 8000, 400).clip(-32768, 32767).astype(np.int16)).tobytes()
    turn = Recognition(ko, GRAMMAR, no_input_timeout=1.0)
    events = feed(turn, silence(0.3) + pcm_to_ulaw(click) + silence(1.5))
    assert not any(isinstance(e, SpeechStarted) for e in events)
    assert isinstance(events[-1], NoSpeech)


def test_a_recording_with_several_answers(ko):
    audio = silence(0.5) + korean("네") + silence(1.0) + korean("취소") + silence(1.0) + korean("아니요") + silence(1)
    results = recognize_pcm(ko, ulaw_to_pcm(audio), GRAMMAR)
    assert len(results) == 3
    assert results[0].text == "네" and results[2].text == "아니요"
    assert results[0].speech_end < results[1].speech_start < results[2].speech_start


SENTENCES = ["안녕하세요 오늘 예약을 취소하고 싶어요", "상담원 연결해 주세요", "내일 오후 세 시에 예약 가능한가요"]
SLACK = 0.3     # Vosk's word edges against webrtcvad's speech edges


def spoken(pauses: list[float], sentences=SENTENCES) -> bytes:
    """Sentences, each after a pause of the given length, and a second of silence at the end."""
    return b"".join(silence(p) + korean(s) for p, s in zip(pauses, sentences)) + silence(1.0)


def assert_words_inside(result, audio_seconds: float):
    assert result.words and result.speech_start is not None and result.speech_end is not None
    for w in result.words:
        assert result.speech_start - SLACK <= w.start < w.end <= result.speech_end + SLACK, (result, w)
        assert w.end <= audio_seconds


def test_free_word_times_count_from_the_start_of_the_recording_with_a_used_recogniser(ko):
    """A pooled recogniser counts every sample it ever decoded; its times must still be the file's."""
    ko.warm()                                       # the pool now holds a recogniser that decoded 2 s
    audio = spoken([0.5, 1.5, 1.5])
    results = recognize_pcm(ko, ulaw_to_pcm(audio))
    assert len(results) == 3 and not any(r.grammar for r in results)
    for r in results:
        assert_words_inside(r, len(audio) / 8000)


def test_word_times_across_vosk_segments_in_one_turn(ko):
    """A pause longer than Vosk's own endpoint but shorter than ours: two Vosk segments, one result."""
    ko.warm()
    audio = spoken([0.5, 1.2], SENTENCES[:2])
    first_end = (4000 + len(korean(SENTENCES[0]))) / 8000
    results = recognize_pcm(ko, ulaw_to_pcm(audio), config=EndpointConfig(end_silence_ms=2000))
    assert len(results) == 1
    assert_words_inside(results[0], len(audio) / 8000)
    assert any(w.start > first_end + 1.0 for w in results[0].words)     # the second sentence's words


def test_grammar_word_times_in_a_recording(ko):
    audio = silence(0.5) + korean("네") + silence(1.0) + korean("상담원 연결해 주세요") + silence(1.0)
    results = recognize_pcm(ko, ulaw_to_pcm(audio), GRAMMAR)
    assert [r.text for r in results] == ["네", "상담원 연결해 주세요"]
    for r in results:
        assert_words_inside(r, len(audio) / 8000)


def test_streaming_times_count_from_the_start_of_the_call(speech_models):
    """Every turn of a call reports times on the call's clock: the audio fed since the recogniser began."""
    speech_models.get("ko").warm()
    got, done = [], threading.Event()

    def on_event(event):
        got.append(event)
        if sum(isinstance(e, Final) for e in got) == 3:
            done.set()

    rec = StreamingRecognizer(speech_models, "ko", on_event, max_backlog_seconds=None)
    audio = spoken([0.5, 1.5, 1.5])
    rec.feed(silence(0.4))                          # before any listen: not decoded, but the clock runs
    rec.listen(())
    for i in range(0, len(audio), 160):
        rec.feed(audio[i:i + 160])
    assert done.wait(60), got
    rec.close()
    total = 0.4 + len(audio) / 8000
    finals = [e.result for e in got if isinstance(e, Final)]
    starts = [e.at for e in got if isinstance(e, SpeechStarted)]
    assert len({e.turn for e in got if isinstance(e, Final)}) == 3
    for r in finals:
        assert_words_inside(r, total)
    assert [round(s, 1) for s in starts] == [round(r.speech_start, 1) for r in finals]
    assert 0.8 <= starts[0] <= 1.1                  # 0.4 s before listening + the 0.5 s pause


def test_phrases_with_unknown_words_are_dropped_and_none_left_means_free(ko):
    assert ko.grammar(["네", "맞습니다"]) == ["네"]          # 맞습니다 is not in this model's vocabulary
    assert ko.grammar(["맞습니다"]) is None
    assert ko.grammar([]) is None


def test_two_calls_decode_at_once_on_their_own_threads(speech_models):
    events: dict[str, list] = {"a": [], "b": []}
    done = {k: threading.Event() for k in events}

    def sink(name):
        def on_event(event):
            events[name].append(event)
            if isinstance(event, (Final, NoSpeech, RecognitionFailed)):
                done[name].set()
        return on_event

    # fed faster than real time, so without the one-second bound that would drop frames
    calls = {k: StreamingRecognizer(speech_models, "ko", sink(k), name=k, max_backlog_seconds=None) for k in events}
    audio = {"a": silence(0.4) + korean("네") + silence(1.5),
             "b": silence(0.4) + korean("상담원 연결해 주세요") + silence(1.5)}
    for name, call in calls.items():
        call.listen(tuple(GRAMMAR), no_input_timeout=5.0)
    frames = {k: [v[i:i + 160] for i in range(0, len(v), 160)] for k, v in audio.items()}
    for i in range(max(len(f) for f in frames.values())):     # interleaved, as two live sockets would
        for name, call in calls.items():
            if i < len(frames[name]):
                call.feed(frames[name][i])
    for name in events:
        assert done[name].wait(20), f"call {name} never finished"
    for call in calls.values():
        call.close()
    assert events["a"][-1].result.text == "네"
    assert events["b"][-1].result.text == "상담원 연결해 주세요"
    assert {e.turn for e in events["a"]} != {e.turn for e in events["b"]}


def test_streaming_turn_is_replaced_by_the_next_listen(speech_models):
    got = []
    rec = StreamingRecognizer(speech_models, "ko", got.append, max_backlog_seconds=None)
    first = rec.listen(tuple(GRAMMAR))
    rec.feed(silence(0.2))
    second = rec.listen(tuple(GRAMMAR))
    rec.arm(0.4)
    for i in range(0, 8000, 160):
        rec.feed(silence(0.02))
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    rec.close()
    assert [type(e) for e in got] == [NoSpeech] and got[0].turn == second != first


SHAPE = TurnShape(phrases=frozenset(GRAMMAR), more_words=frozenset({"그리고"}))


def frames_to_final(ko, ulaw: bytes, shape: TurnShape) -> tuple[int, Final]:
    """How many 20 ms frames a turn took to end, and its result."""
    turn = Recognition(ko, GRAMMAR, config=EndpointConfig(end_silence_ms=240, end_silence_closed_ms=120), shape=shape)
    pcm = ulaw_to_pcm(ulaw)
    for i in range(0, len(pcm), 320):
        finals = [e for e in turn.accept(pcm[i:i + 320]) if isinstance(e, Final)]
        if finals:
            return i // 320 + 1, finals[0]
    raise AssertionError("no end of turn")


@pytest.mark.parametrize("text", ["네", "상담원 연결해 주세요"])
def test_a_whole_grammar_answer_ends_after_the_short_silence(ko, text):
    audio = silence(0.5) + korean(text) + silence(1.5)
    early, shaped = frames_to_final(ko, audio, SHAPE)
    ordinary, open_ = frames_to_final(ko, audio, TurnShape())
    assert shaped.result.text == open_.result.text == text
    # the same audio, the same VAD: the turn ends up to 6 frames (120 ms) sooner; a short word's
    # partial comes a few frames into the pause, and the turn ends on the frame it does
    assert ordinary - 6 <= early < ordinary
    assert 0.12 <= round(early * 0.02 - shaped.result.speech_end, 2) < 0.24 == round(
        ordinary * 0.02 - open_.result.speech_end, 2)


def test_the_streaming_recogniser_hands_the_shape_to_its_turns(speech_models):
    ko = speech_models.get("ko")
    audio = silence(0.5) + korean("네") + silence(1.5)
    early, _ = frames_to_final(ko, audio, SHAPE)
    heard = {}
    for name, shape in (("shaped", SHAPE), ("open", TurnShape())):
        got = []
        rec = StreamingRecognizer(speech_models, "ko", got.append, name=name, max_backlog_seconds=None)
        rec.listen(tuple(GRAMMAR), shape=shape)
        for i in range(0, early * 160, 160):
            rec.feed(audio[i:i + 160])
        assert rec.drain()
        rec.close()
        heard[name] = [e.result.text for e in got if isinstance(e, Final)]
    assert heard == {"shaped": ["네"], "open": []}         # the open turn needs 120 ms more silence


def holding():
    """An on_event that holds the decode thread in its first event until ``gate`` is set."""
    got, entered, gate = [], threading.Event(), threading.Event()

    def on_event(event):
        got.append(event)
        entered.set()
        gate.wait()
    return on_event, got, entered, gate


def asr_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"asr-{name}" and t.is_alive()]


def test_a_backlog_past_a_second_drops_frames_but_never_commands(speech_models):
    on_event, got, entered, gate = holding()
    rec = StreamingRecognizer(speech_models, "ko", on_event, name="backlog")
    rec.listen((), no_input_timeout=0.02)           # no input after one frame: the thread then waits in on_event
    assert rec.feed(silence(0.02)) and entered.wait(10)
    fed = [rec.feed(silence(0.02)) for _ in range(60)]
    assert fed == [True] * 50 + [False] * 10        # one second waits, the rest is dropped
    assert rec.backlog_seconds == 1.0
    rec.listen(tuple(GRAMMAR), no_input_timeout=5.0)
    rec.cancel()
    last = rec.listen(tuple(GRAMMAR), no_input_timeout=0.04)
    gate.set()
    deadline = time.monotonic() + 10
    while rec.backlog_seconds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.backlog_seconds == 0
    while not (len(got) == 2 or time.monotonic() > deadline):
        assert rec.feed(silence(0.02))              # taken again once the thread caught up
        time.sleep(0.01)
    rec.close()
    assert [type(e) for e in got] == [NoSpeech, NoSpeech] and got[1].turn == last


def test_close_discards_queued_audio_and_ends_the_thread(speech_models, monkeypatch):
    decoded = []
    accept = Recognition.accept
    monkeypatch.setattr(Recognition, "accept", lambda self, pcm: decoded.append(len(pcm)) or accept(self, pcm))
    on_event, got, entered, gate = holding()
    rec = StreamingRecognizer(speech_models, "ko", on_event, name="hangup", max_backlog_seconds=None)
    rec.listen((), no_input_timeout=0.02)
    assert rec.feed(silence(0.02)) and entered.wait(10)
    rec.listen(())                                  # a free turn that would decode all that follows
    assert all(rec.feed(silence(0.02)) for _ in range(500))
    assert rec.backlog_seconds == 10.0
    rec.close(timeout=0)                            # the caller hangs up while the thread is busy
    assert not rec.feed(silence(0.02))
    gate.set()
    rec.close()
    assert not asr_threads("hangup")
    assert decoded == [320]                         # the frame in hand when the call ended, nothing queued
    assert [type(e) for e in got] == [NoSpeech]


def test_close_from_on_event_on_the_decode_thread(speech_models):
    got, closed = [], threading.Event()

    def on_event(event):
        got.append(event)
        rec.close()                                 # must not wait for its own thread
        closed.set()

    rec = StreamingRecognizer(speech_models, "ko", on_event, name="inside", max_backlog_seconds=None)
    rec.listen(tuple(GRAMMAR))
    audio = silence(0.3) + korean("네") + silence(1.0)
    for i in range(0, len(audio), 160):
        rec.feed(audio[i:i + 160])
    assert closed.wait(20)
    rec.close()
    assert not asr_threads("inside")
    assert [type(e) for e in got] == [SpeechStarted]     # nothing after close: no final, no next turn


def test_missing_model_names_the_command(tmp_path):
    models = SpeechModels(SpeechSettings(models_dir=tmp_path))
    with pytest.raises(ModelMissing, match="voicebot models install nl"):
        models.get("nl")


def test_missing_model_reported_on_the_call_thread(tmp_path):
    got = []
    failed = threading.Event()
    rec = StreamingRecognizer(SpeechModels(SpeechSettings(models_dir=tmp_path)), "nl",
                              lambda e: (got.append(e), failed.set()))
    turn = rec.listen(("ja", "nee"))
    rec.feed(silence(0.1))
    assert failed.wait(10)
    rec.close()
    assert [type(e) for e in got] == [RecognitionFailed] and got[0].turn == turn
    assert "voicebot models install nl" in got[0].error


def test_corrupt_model_folder(tmp_path):
    folder = tmp_path / "nl"
    for name in ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf", "graph/HCLr.fst", "graph/Gr.fst",
                 "graph/disambig_tid.int", "graph/phones/word_boundary.int", "ivector/final.ie"):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a model")
    models = SpeechModels(SpeechSettings(models_dir=tmp_path))
    with pytest.raises(ModelCorrupt, match=str(folder)):
        models.get("nl")


def test_transcribe_command_text_and_json(tmp_path):
    import json
    import subprocess

    from click.testing import CliRunner

    from voicebot.cli import main

    wav = tmp_path / "answer.wav"     # espeak-ng's own 22050 Hz WAV: any rate goes through the phone path
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), "네. 상담원 연결해 주세요"], check=True)
    runner = CliRunner()
    out = runner.invoke(main, ["transcribe", str(wav), "--language", "ko", "--grammar", ",".join(GRAMMAR)])
    assert out.exit_code == 0, out.output
    assert "네" in out.output and "상담원" in out.output and "(grammar)" in out.output
    out = runner.invoke(main, ["transcribe", str(wav), "--language", "ko", "--grammar", ",".join(GRAMMAR), "--json"])
    data = json.loads(out.output)
    assert data["text"] == "네 상담원 연결해 주세요" and data["grammar"] and data["phone_path"]
    assert all({"word", "confidence", "start", "end"} <= set(w) for u in data["utterances"] for w in u["words"])
    missing = runner.invoke(main, ["transcribe", str(wav), "--language", "xx"])
    assert missing.exit_code == 1 and "voicebot models install xx" in missing.output


@pytest.mark.parametrize("content, options", [
    (b"hello, not a recording\n", []), (b"RIFF\0\0\0\0WAVEjunk", ["--no-phone"]), (b"", []),
], ids=["text", "broken_wav_no_phone", "empty"])
def test_transcribe_a_file_that_is_not_audio_says_so_in_one_line(tmp_path, content, options):
    from click.testing import CliRunner

    from voicebot.cli import main

    path = tmp_path / "notes.wav"
    path.write_bytes(content)
    out = CliRunner().invoke(main, ["transcribe", str(path), "--language", "ko", *options])
    assert out.exit_code == 1
    # ffmpeg's verdict, without the banner (version, build configuration, library versions) above it
    assert out.output == f"Error: {path}: cannot read audio (ffmpeg: Invalid data found when processing input)\n"
