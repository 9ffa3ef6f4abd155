"""The media-stream call loop without a socket: Twilio messages in, what we send back out.

Uses the real Korean model, real espeak-ng prompts and the Korean test flow (tests/data/ko.yaml).
Audio is fed faster than real time; the recogniser's thread answers asynchronously, so checks
wait for what they expect.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path

import pytest

from conftest import korean, silence
from demo_customers import DEMO_CSV, JAN_BIRTH_KEYS, JAN_NUMBER
from voicebot.config import SpeechSettings, load_settings
from voicebot.flow import load_flows
from voicebot.speech.recognizer import SpeechModels
from voicebot.telephony.runtime import Runtime
from voicebot.telephony.session import CallSession

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SECRET = "session-test-secret"


@pytest.fixture(scope="module")
def runtime(redis_url, speech_models, tmp_path_factory):
    settings = load_settings(REPO / "config.yaml", environ={"REDIS_URL": redis_url, "VOICEBOT_STREAM_SECRET": SECRET})
    settings = dataclasses.replace(
        settings, flows_dir=DATA, default_flow="ko_test",
        prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path_factory.mktemp("cache")))
    return Runtime(settings, models=speech_models)


class Line:
    """Twilio's side of one stream, driven by hand."""

    def __init__(self, rt: Runtime, call_sid: str, flow: str = "ko_test", token: str | None = None):
        self.out: list[dict] = []
        self.closed = False
        self.call_sid = call_sid
        stored = (rt.store.get(call_sid) or {}).get("state") or {}
        self._said_before = len(stored.get("transcript", []))     # a resumed call: what earlier streams said
        self.session = CallSession(rt, lambda raw: self.out.append(json.loads(raw)), self._close)
        self.raw('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
        token = rt.call_token(call_sid) if token is None else token
        self.send(event="start", sequenceNumber="1", streamSid="MZ1",
                  start={"streamSid": "MZ1", "accountSid": "AC1", "callSid": call_sid, "tracks": ["inbound"],
                         "customParameters": {"from": "+821012345678", "to": "+82200000000", "flow": flow,
                                              "token": token},
                         "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})

    def _close(self):
        self.closed = True

    def raw(self, text):
        self.session.on_message(text)

    def send(self, **message):
        self.raw(json.dumps(message))

    def media(self, ulaw: bytes):
        """Faster than real time, but never so far ahead that the recogniser's one-second backlog overflows."""
        for i in range(0, len(ulaw), 160):
            recognizer = self.session.recognizer
            while recognizer is not None and recognizer.backlog_seconds > 0.5:
                time.sleep(0.005)
            self.send(event="media", streamSid="MZ1",
                      media={"track": "inbound", "payload": base64.b64encode(ulaw[i:i + 160]).decode()})

    def dtmf(self, keys: str):
        for key in keys:
            self.send(event="dtmf", streamSid="MZ1", dtmf={"track": "inbound_track", "digit": key})

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in self.out if m["event"] == "mark"]

    def echo_marks(self):
        """Twilio has played everything: echo every mark sent."""
        for name in self.marks()[len(getattr(self, "_echoed", [])):]:
            self.send(event="mark", streamSid="MZ1", mark={"name": name})
        self._echoed = self.marks()

    def said(self) -> list[str]:
        """What the bot said on this line: marks are numbers only, so the words come from the call's transcript."""
        state = self.session.state
        if state is None:
            return []
        return [e["text"] for e in state.transcript[self._said_before:] if e["who"] == "bot" and e["text"]]

    def wait(self, condition, seconds=10.0, feed_silence=True):
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"timed out; sent so far: {self.said()}"
            if feed_silence:
                self.media(silence(0.02))
            time.sleep(0.01)


def test_opening_prompts_go_out_as_media_then_a_mark(runtime):
    line = Line(runtime, "CA-open")
    kinds = [m["event"] for m in line.out]
    assert kinds[0] == "media" and "mark" in kinds
    assert line.said() == ["안녕하세요 디지털 상담원입니다", "예약 또는 취소"]
    audio = b"".join(base64.b64decode(m["media"]["payload"]) for m in line.out if m["event"] == "media")
    assert len(audio) > 8000 and all(m["streamSid"] == "MZ1" for m in line.out)


def test_a_whole_call_with_barge_in_keys_and_a_hang_up(runtime):
    line = Line(runtime, "CA-whole")
    # The caller answers over the question: clear goes out, the answer is taken.
    line.media(silence(0.3) + korean("예약") + silence(0.6))
    line.wait(lambda: any(m["event"] == "clear" for m in line.out))
    line.echo_marks()                          # Twilio echoes the marks of the cleared audio
    line.wait(lambda: "번호를 눌러 주세요" in line.said())
    line.echo_marks()
    line.dtmf("123#")
    assert line.said()[-1] == "맞습니까"
    line.echo_marks()
    line.media(silence(0.3) + korean("네") + silence(0.6))
    line.wait(lambda: "감사합니다" in line.said())
    assert not line.closed                     # the goodbye must be heard first
    line.echo_marks()
    assert line.closed
    record = runtime.store.get("CA-whole")
    assert record["ending"] == {"action": "hangup", "reason": "completed"}
    assert record["state"]["slots"] == {"booking": "reserve", "number": "123", "ok": True}


def test_each_caller_turn_is_timed_in_the_call_record_with_the_flows_version(runtime):
    """Speech, keys and speech: recognition time for the spoken turns, the wait for the reply for
    every turn, numbered as the call records number turns; the record builds into rows with them."""
    from voicebot.records.build import build_record

    line = Line(runtime, "CA-timings")
    line.echo_marks()
    line.media(silence(0.3) + korean("예약") + silence(0.6))
    line.wait(lambda: "번호를 눌러 주세요" in line.said())
    line.echo_marks()
    line.dtmf("123#")
    line.echo_marks()
    line.media(silence(0.3) + korean("네") + silence(0.6))
    line.wait(lambda: "감사합니다" in line.said())
    line.echo_marks()
    record = runtime.store.get("CA-timings")
    assert record["flow_version"] == runtime.flow("ko_test").version
    timings = record["timings"]
    assert [t["turn"] for t in timings] == [1, 2, 3]
    speech, keys, yes = timings
    assert isinstance(speech["recognition_ms"], int) and speech["recognition_ms"] >= 0
    assert keys["recognition_ms"] is None and isinstance(keys["response_ms"], int)
    assert all(isinstance(t["response_ms"], int) and t["response_ms"] >= 0 for t in timings)
    assert isinstance(yes["recognition_ms"], int)
    turns = build_record("CA-timings", record, "salt", timezone=None)["turns"]
    assert [(t["kind"], t["recognition_ms"], t["response_ms"]) for t in turns] == \
        [("speech", speech["recognition_ms"], speech["response_ms"]), ("keys", None, keys["response_ms"]),
         ("speech", yes["recognition_ms"], yes["response_ms"])]
    assert [(t["result"], t["intent"]) for t in turns] == [("accepted", "booking"), ("accepted", "number"),
                                                           ("accepted", "ok")]


def test_key_zero_reaches_a_person_and_the_context_is_stored(runtime):
    line = Line(runtime, "CA-zero")
    line.echo_marks()
    line.dtmf("0")
    assert line.said()[-1] == "상담원에게 연결해 드리겠습니다"
    line.echo_marks()
    assert line.closed
    ending = runtime.store.get("CA-zero")["ending"]
    assert ending["action"] == "transfer" and ending["reason"] == "explicit_request"
    assert ending["queue"] == "agents" and ending["context"]["call_id"] == "CA-zero"
    assert "summary" in ending["context"] and ending["context"]["transcript"]


def test_spoken_transfer_words_reach_a_person(runtime):
    line = Line(runtime, "CA-words")
    line.echo_marks()
    line.media(silence(0.3) + korean("상담원 연결해 주세요") + silence(0.6))
    line.wait(lambda: "ending" in (runtime.store.get("CA-words") or {}))   # stored just after the announcement
    assert line.said()[-1] == "상담원에게 연결해 드리겠습니다"
    assert runtime.store.get("CA-words")["ending"]["reason"] == "explicit_request"


def test_no_input_starts_after_the_prompt_and_twice_reaches_a_person(runtime):
    line = Line(runtime, "CA-silent")
    line.media(silence(8.0))                   # no mark back: the clock waits until the marks are given up (6.5 s)
    assert line.session.recognizer.drain()      # all 8 s decoded and answered, not merely sent
    assert line.session.recognizer.backlog_seconds == 0
    assert line.said()[-1] == "예약 또는 취소"
    line.echo_marks()
    line.wait(lambda: len(line.said()) == 3, seconds=20)
    assert line.said()[-1].startswith("아무 말도 듣지 못했습니다")
    line.echo_marks()
    # The announcement goes out before the ending is stored (same turn, the decode thread): wait for the record.
    line.wait(lambda: "ending" in (runtime.store.get("CA-silent") or {}), seconds=20)
    assert line.said()[-1] == "상담원에게 연결해 드리겠습니다"
    assert runtime.store.get("CA-silent")["ending"]["reason"] == "no_input"


@pytest.mark.parametrize("message, kind", [
    ("this is not json", "not_json"),
    ('["a list"]', "not_object"),
    ('{"event": "bogus", "streamSid": "MZ1"}', "unknown_event"),
    ('{"event": "media", "streamSid": "MZ-other", "media": {"payload": "/w=="}}', "wrong_stream"),
    ('{"event": "media", "streamSid": "MZ1", "media": {"payload": "!!not base64!!"}}', "payload_not_base64"),
    ('{"event": "media", "streamSid": "MZ1", "media": {"payload": "' + "A" * 20000 + '"}}', "payload_oversized"),
    ('{"event": "media", "streamSid": "MZ1"}', "no_payload"),
    ('{"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "x"}}', "bad_digit"),
    ('{"event": "mark", "streamSid": "MZ1", "mark": {}}', "bad_mark_name"),
    ('{"event": "start", "streamSid": "MZ1", "start": {}}', "second_start"),
    ("[" * 100_000 + "]" * 100_000, "oversized"),
    ('{"a":' * 5000 + '1' + '}' * 5000, "too_deep"),
])
def test_bad_messages_are_logged_and_the_call_goes_on(runtime, caplog, message, kind):
    line = Line(runtime, f"CA-bad-{abs(hash(message))}")
    before = len(line.out)
    with caplog.at_level("WARNING", logger="voicebot.call"):
        line.raw(message)
    assert kind in caplog.text and line.call_sid in caplog.text
    assert not line.closed and len(line.out) == before
    line.echo_marks()
    line.dtmf("0")                              # still working: the caller reaches a person
    assert runtime.store.get(line.call_sid)["ending"]["reason"] == "explicit_request"


def test_media_before_start_is_refused(runtime, caplog):
    session = CallSession(runtime, lambda raw: None, lambda: None)
    with caplog.at_level("WARNING", logger="voicebot.call"):
        session.on_message(json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "/w=="}}))
    assert "before_start" in caplog.text and not session.started


def test_without_a_speech_model_the_caller_is_told_and_uses_the_keypad(settings, tmp_path):
    settings = dataclasses.replace(settings, flows_dir=DATA, default_flow="ko_test",
                                   prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path))
    no_models = SpeechModels(SpeechSettings(models_dir=tmp_path, models={"ko": str(tmp_path / "none")}))
    rt = Runtime(settings, flows=load_flows(DATA), models=no_models)
    line = Line(rt, "CA-nomodel")
    assert any(s.startswith("음성 인식을 사용할 수 없습니다") for s in line.said())
    line.echo_marks()
    line.dtmf("1")                              # first choice by key
    assert line.said()[-1] == "번호를 누르고 우물 정자를 눌러 주세요"   # the keypad wording of the question
    line.echo_marks()
    line.dtmf("0#")
    line.echo_marks()
    line.dtmf("0")
    assert rt.store.get("CA-nomodel")["ending"]["action"] == "transfer"


def test_a_broken_synthesiser_hands_the_call_to_a_person_announced_by_twilio(runtime, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("espeak-ng crashed")

    line = Line(runtime, "CA-tts")
    line.echo_marks()
    monkeypatch.setattr(runtime.prompts, "audio_for", broken)
    line.dtmf("1")
    assert line.closed
    record = runtime.store.get("CA-tts")
    assert record["ending"]["action"] == "transfer" and record["ending"]["reason"] == "error"
    assert record["announce"] == "상담원에게 연결해 드리겠습니다"     # said by Twilio's voice, not ours


def test_socket_dying_mid_prompt_leaves_a_transfer_for_after_stream(runtime):
    line = Line(runtime, "CA-died")
    line.session.on_socket_closed()            # no stop, no marks: the socket just went away
    record = runtime.store.get("CA-died")
    assert record["ending"]["action"] == "transfer" and record["ending"]["reason"] == "error"


def _transfers(runtime) -> float:
    return runtime.metrics.registry.get_sample_value("voicebot_transfers_total", {"reason": "explicit_request"}) or 0.0


def test_a_hang_up_during_the_transfer_announcement_stores_the_ending_once(runtime, monkeypatch):
    """The caller presses 0 and hangs up while the announcement is being made: Twilio asks
    /twilio/after-stream (here on another thread, simulated at that very moment) before the
    session has stored its transfer. One ending, one enqueued context, whichever writes first."""
    from voicebot.web import _after_stream_twiml

    enqueued: list[dict] = []
    monkeypatch.setattr(runtime, "enqueue_handoff", enqueued.append)
    line = Line(runtime, "CA-hangup-announcing")
    line.echo_marks()
    render = runtime.prompts.audio_for

    def announcing(text, *args, **kwargs):
        if text == "상담원에게 연결해 드리겠습니다":      # the transfer announcement: the caller is gone
            record = runtime.store.get(line.call_sid) or {}
            _after_stream_twiml(runtime, runtime.settings.telephony, "https://bot.example", line.call_sid, record)
        return render(text, *args, **kwargs)

    monkeypatch.setattr(runtime.prompts, "audio_for", announcing)
    before = _transfers(runtime)
    line.dtmf("0")
    line.send(event="stop", sequenceNumber="9", streamSid="MZ1",
              stop={"accountSid": "AC1", "callSid": line.call_sid})
    line.session.on_socket_closed()

    assert len(enqueued) == 1
    ending = runtime.store.get(line.call_sid)["ending"]
    assert ending["context"]["call_id"] == enqueued[0]["call_id"] == line.call_sid
    assert ending["reason"] == enqueued[0]["reason"]           # what was stored first is what was sent
    assert _transfers(runtime) - before <= 1


def test_after_stream_after_the_transfer_finds_the_ending_and_enqueues_nothing_more(runtime, monkeypatch):
    from voicebot.web import _after_stream_twiml

    enqueued: list[dict] = []
    monkeypatch.setattr(runtime, "enqueue_handoff", enqueued.append)
    line = Line(runtime, "CA-hangup-after")
    line.echo_marks()
    before = _transfers(runtime)
    line.dtmf("0")
    line.send(event="stop", sequenceNumber="9", streamSid="MZ1",
              stop={"accountSid": "AC1", "callSid": line.call_sid})
    line.session.on_socket_closed()
    _after_stream_twiml(runtime, runtime.settings.telephony, "https://bot.example", line.call_sid,
                        runtime.store.get(line.call_sid))

    assert len(enqueued) == 1 and enqueued[0]["reason"] == "explicit_request"
    assert _transfers(runtime) - before == 1


def test_stop_from_twilio_means_the_caller_hung_up(runtime):
    line = Line(runtime, "CA-stop")
    line.send(event="stop", sequenceNumber="9", streamSid="MZ1", stop={"accountSid": "AC1", "callSid": "CA-stop"})
    line.session.on_socket_closed()
    state = runtime.store.get("CA-stop")["state"]
    assert state["ended"] and state["outcome"] == "caller_hangup"
    assert "ending" not in runtime.store.get("CA-stop")


def test_keys_without_the_finish_key_are_taken_after_the_inter_digit_timeout(runtime):
    line = Line(runtime, "CA-interdigit")
    line.echo_marks()
    line.dtmf("2")                              # one key answers the choice at once: cancel
    assert line.said()[-1] == "번호를 눌러 주세요"
    line.echo_marks()
    line.dtmf("4567")
    line.media(silence(2.0))
    assert line.said()[-1] == "번호를 눌러 주세요"   # still waiting for more keys
    line.media(silence(1.2))                     # 3 s after the last key
    assert line.said()[-1] == "맞습니까"
    assert runtime.store.get("CA-interdigit")["state"]["slots"] == {"booking": "cancel", "number": "4567"}


class FailingLater(SpeechModels):
    """A model that loads for the call's check, then fails on the recogniser's thread."""

    def __init__(self, real: SpeechModels):
        super().__init__(real.speech)
        self._real, self.calls = real, 0

    def get(self, language):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("recogniser crashed")
        return self._real.get(language)


def test_a_recogniser_that_fails_switches_the_call_to_the_keypad(runtime, speech_models):
    rt = Runtime(runtime.settings, flows=runtime.flows, models=FailingLater(speech_models))
    line = Line(rt, "CA-asr-fails")
    line.wait(lambda: any(s.startswith("음성 인식을 사용할 수 없습니다") for s in line.said()))
    line.echo_marks()
    line.dtmf("1")
    assert line.said()[-1] == "번호를 누르고 우물 정자를 눌러 주세요"
    assert not line.closed


# -- a stream belongs to its call ---------------------------------------------------------------------

def _audio_bytes(line: Line) -> int:
    return sum(len(m["media"]["payload"]) for m in line.out if m["event"] == "media")


@pytest.mark.parametrize("token", ["", "0" * 64, "not-a-token"])
def test_a_start_without_its_calls_token_gets_nothing_and_changes_nothing(runtime, token):
    owner = Line(runtime, "CA-session-owned")
    before = runtime.store.get("CA-session-owned")
    intruder = Line(runtime, "CA-session-owned", token=token)
    assert intruder.closed and intruder.out == [] and not intruder.session.started
    assert runtime.store.get("CA-session-owned")["state"] == before["state"]
    owner.echo_marks()
    owner.dtmf("0")                           # the real call is not disturbed
    assert runtime.store.get("CA-session-owned")["ending"]["reason"] == "explicit_request"


def test_another_calls_token_does_not_open_this_call(runtime):
    Line(runtime, "CA-session-victim")
    intruder = Line(runtime, "CA-session-victim", token=runtime.call_token("CA-attacker"))
    assert intruder.closed and _audio_bytes(intruder) == 0


def test_a_second_stream_for_a_live_call_is_refused_even_with_the_token(runtime):
    owner = Line(runtime, "CA-session-live")
    second = Line(runtime, "CA-session-live")
    assert second.closed and second.out == []
    assert not owner.closed


def test_a_wrong_account_is_refused(runtime, speech_models):
    tel = dataclasses.replace(runtime.settings.telephony, account_sid="AC" + "9" * 32)
    rt = Runtime(dataclasses.replace(runtime.settings, telephony=tel), flows=runtime.flows, models=speech_models)
    line = Line(rt, "CA-account")                 # the Line's start says AC1
    assert line.closed and line.out == [] and rt.store.get("CA-account") is None


def test_a_stream_resumes_its_call_only_with_its_token(runtime):
    first = Line(runtime, "CA-resume")
    first.echo_marks()
    first.dtmf("1")                              # on to the number question
    assert first.said()[-1] == "번호를 눌러 주세요"
    state = runtime.store.get("CA-resume")["state"]
    runtime.release_stream("CA-resume")          # the node serving it died: its claim expired
    refused = Line(runtime, "CA-resume", token=runtime.call_token("CA-other"))
    assert refused.closed and runtime.store.get("CA-resume")["state"] == state
    again = Line(runtime, "CA-resume")
    assert again.said() == ["번호를 눌러 주세요"]   # the step it stopped at, asked again
    assert runtime.store.get("CA-resume")["state"]["slots"] == {"booking": "reserve"}


def test_the_question_after_a_long_opening_is_awaited_until_it_has_played(runtime):
    """A mark echo must not make the next prompt's mark look late (it used to, by the first prompt's length)."""
    line = Line(runtime, "CA-long-opening")
    first, second = line.session.turns.prompts
    opening = first.ends_at
    question = second.ends_at - first.ends_at
    line.media(silence(opening))
    line.send(event="mark", streamSid="MZ1", mark={"name": first.mark})
    line.media(silence(question + 2.8))                  # the question is late, but not yet lost
    assert [p.mark for p in line.session.turns.prompts] == [second.mark]
    line.send(event="mark", streamSid="MZ1", mark={"name": second.mark})
    assert not line.session.turns.prompts and len(line.said()) == 2   # heard: now the caller's turn


def test_the_reply_to_keys_is_timed_like_the_reply_to_speech(runtime):
    def replies() -> float:
        return next(s.value for s in runtime.metrics.response.collect()[0].samples if s.name.endswith("_count"))

    line = Line(runtime, "CA-timed-keys")
    line.echo_marks()
    before = replies()
    line.dtmf("1")                              # one key answers: the next question is the reply
    assert replies() == before + 1


# -- what leaves the process: mark names and the prompt cache ------------------------------------------

def test_mark_names_sent_over_the_socket_carry_no_prompt_text(runtime):
    """Mark names travel to Twilio and show in its logs: a number each, never a word of the prompt."""
    line = Line(runtime, "CA-marks")
    line.echo_marks()
    line.media(silence(0.3) + korean("예약") + silence(0.6))
    line.wait(lambda: "번호를 눌러 주세요" in line.said())
    line.echo_marks()
    line.dtmf("123#")
    line.echo_marks()
    said, marks = line.said(), line.marks()
    assert len(marks) == len(said) >= 4 and marks == [str(n) for n in range(1, len(marks) + 1)]
    words = {word for text in said for word in text.split()} | {"123", "1 2 3"}
    assert not [mark for mark in marks for word in words if word in mark and not word.isdigit()]
    assert not [mark for mark in marks for text in said if text in mark]


@pytest.fixture(scope="module")
def energie(redis_url, speech_models, tmp_path_factory):
    """The shipped flows, keypad only here (the test machines have no Dutch model), with their own cache
    and the demo customers to verify against."""
    from voicebot.identity.csvimport import directory_from_csv

    settings = load_settings(REPO / "config.yaml", environ={"REDIS_URL": redis_url, "VOICEBOT_STREAM_SECRET": SECRET})
    settings = dataclasses.replace(
        settings, flows_dir=REPO / "flows", default_flow="energie",
        prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path_factory.mktemp("energie-cache")))
    return Runtime(settings, models=speech_models, directory=directory_from_csv(DEMO_CSV))


def prompt_audio(line: Line) -> list[bytes]:
    """The audio of each prompt sent on the line: the media before each mark."""
    prompts, audio = [], b""
    for message in line.out:
        if message["event"] == "media":
            audio += base64.b64decode(message["media"]["payload"])
        elif message["event"] == "mark":
            prompts.append(audio)
            audio = b""
    return prompts


def test_a_callers_value_read_back_never_reaches_the_prompt_cache(energie):
    """The cache's file names are hashes of exact texts: a listing could be matched back to what
    callers said (customer numbers, meter readings) by hashing guesses, and the files are the values
    spoken. Prompts carrying the caller's values are rendered for the call only; the flow's own
    prompts are still cached."""
    from voicebot.dialog.sentences import static_sentences

    flow = energie.flows["energie"]
    cache = Path(energie.settings.prompts.cache_dir)
    line = Line(energie, "CA-personal", flow="energie")
    opening = line.said()
    line.echo_marks()
    before = {path.name for path in cache.iterdir()}
    for keys in ("1", f"{JAN_NUMBER}#", JAN_BIRTH_KEYS):  # the meter reading, once the caller is verified
        line.dtmf(keys)
        line.echo_marks()
    line.dtmf("12345#")                                  # the meter reading, read back for confirmation
    line.echo_marks()
    line.dtmf("1")                                       # yes: said back once more, then the text message question
    line.echo_marks()
    after = {path.name for path in cache.iterdir()}

    state = line.session.state
    assert state.identity["verified"] and state.slots["meterstand"] == 12345
    said = line.said()
    static = {text for text, _ in static_sentences(flow)}
    personal = [text for text in said if text not in static]
    assert len(personal) == 2 and all("12345" in text for text in personal)
    names = {energie.prompts.cache_path(text, "nl").name for text in personal}
    assert not names & after                                         # no file named after it ...
    allowed = {energie.prompts.cache_path(text, "nl").name for text in static}
    assert after - before <= allowed                                 # ... and every new file is a flow's own prompt
    played = prompt_audio(line)
    spoken = [played[said.index(text)] for text in personal]
    assert all(audio for audio in spoken)                            # the caller heard it ...
    files = [path.read_bytes() for path in cache.iterdir()]
    assert not [audio for audio in spoken if any(audio in data for data in files)]   # ... and no file holds it
    # The flow's own prompts are cached as before: the opening, and the question after the reading.
    assert all(energie.prompts.cache_path(text, "nl").exists() for text in opening)
    assert energie.prompts.cache_path(said[-1], "nl").name in after
    assert energie.prompts.personal >= len(personal)
