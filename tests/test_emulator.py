"""The Twilio emulator against a small Twilio-facing server written here with flask + flask-sock.

The fake server checks every signature with twilio's own RequestValidator (webhooks against the
public https URL, the WebSocket upgrade against the public wss URL), so signing is tested for real.
On the stream it plays a greeting, answers key 5 with a long prompt, sends ``clear`` when the
caller talks over it and then closes the socket; /twilio/after-stream transfers with a whisper.
Like the real server it names its marks by number only, and keeps what it said in its record of
the call in Redis, where the emulator reads it after the call.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import wave
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from flask import Flask, Response, abort, request
from flask_sock import Sock
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Dial, VoiceResponse
from werkzeug.serving import make_server

from voicebot.commands.call import _turns_from_options, call, turn_order
from voicebot.speech.audio import pcm_to_ulaw, write_wav
from voicebot.errors import ScenarioError
from voicebot.emulator import EmulatorError, WebhookRefused, check_expectations, load_scenario, place_call
from voicebot.emulator import call as emulated_call
from voicebot.emulator.report import CallLog, CallReport
from voicebot.emulator.stream import MediaStream
from voicebot.telephony.store import CallStore

TOKEN = "test-auth-token"
PUBLIC = "https://bot.example.com"
STREAM_URL = "wss://bot.example.com/twilio/media"
AGENT = "+31201234567"
GREETING_S = 1.0
LONG_S = 4.0
SILENT_FRAME = b"\xff" * 160
START, HELLO, LONG = "0", "1", "2"
"""The fake server's marks, named as the real server names them: by number only."""


def tone(seconds: float, freq: float = 440.0) -> bytes:
    """A sine as 8 kHz mu-law: clearly not silence."""
    t = np.arange(int(8000 * seconds)) / 8000
    return pcm_to_ulaw((np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16).tobytes())


@dataclass
class Log:
    """What the fake server saw during one call (times are time.monotonic())."""

    forms: dict[str, dict[str, str]] = field(default_factory=dict)
    whisper_args: dict[str, str] = field(default_factory=dict)
    stream_events: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    marks_sent: dict[str, float] = field(default_factory=dict)
    echoes: dict[str, float] = field(default_factory=dict)
    long_sent: float | None = None
    cleared: float | None = None
    opened: float | None = None
    closed: float | None = None

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m.get("event") == event]

    def wait_closed(self, timeout: float = 3.0) -> None:
        """The server's socket handler runs on its own thread: let it see the end of the stream."""
        deadline = time.monotonic() + timeout
        while self.closed is None and time.monotonic() < deadline:
            time.sleep(0.02)


class FakeBot:
    """The server side of the phone call, just enough of it to exercise every part of the emulator."""

    def __init__(self, redis_url: str) -> None:
        self.log = Log()
        self.store = CallStore(redis_url, 60)
        self.validator = RequestValidator(TOKEN)
        self.app = Flask("fake-voicebot")
        sock = Sock(self.app)
        self.app.before_request(self._check_signature)
        self.app.post("/twilio/voice")(self._voice)
        self.app.post("/twilio/after-stream")(self._after_stream)
        self.app.post("/twilio/whisper")(self._whisper)
        self.app.post("/twilio/status")(self._status)
        self.app.post("/twilio/stream-status")(self._stream_status)
        sock.route("/twilio/media")(self._media)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _check_signature(self) -> None:
        signature = request.headers.get("X-Twilio-Signature", "")
        if request.path == "/twilio/media":
            ok = self.validator.validate(STREAM_URL, {}, signature)
        else:
            query = request.query_string.decode()
            ok = self.validator.validate(PUBLIC + request.path + (f"?{query}" if query else ""), request.form,
                                         signature)
        if not ok:
            self.log.refused.append(request.path)
            abort(403)

    def _voice(self) -> Response:
        self.log.forms["voice"] = dict(request.form)
        response = VoiceResponse()
        connect = response.connect(action=f"{PUBLIC}/twilio/after-stream")
        host = "wss://elsewhere.example.com" if request.form["To"] == "+31000000000" else "wss://bot.example.com"
        stream = connect.stream(url=f"{host}/twilio/media", status_callback=f"{PUBLIC}/twilio/stream-status")
        stream.parameter(name="session", value="abc123")
        stream.parameter(name="flow", value="demo")
        return Response(str(response), mimetype="text/xml")

    def _after_stream(self) -> Response:
        self.log.forms["after"] = dict(request.form)
        dial = Dial(answer_on_bridge=True)
        dial.number(AGENT, url=f"{PUBLIC}/twilio/whisper?call={request.form['CallSid']}&lang=nl")
        return Response(str(VoiceResponse().append(dial)), mimetype="text/xml")

    def _whisper(self) -> Response:
        self.log.forms["whisper"] = dict(request.form)
        self.log.whisper_args = dict(request.args)
        return Response("<Response><Say>Onderwerp: test</Say></Response>", mimetype="text/xml")

    def _stream_status(self) -> Response:
        self.log.stream_events.append(dict(request.form))
        return Response(status=204)

    def _status(self) -> Response:
        self.log.forms["status"] = dict(request.form)
        return Response(status=204)

    def _media(self, ws: Any) -> None:
        log = self.log
        log.opened = time.monotonic()
        log.messages.append((time.monotonic(), json.loads(ws.receive(timeout=5))))
        log.messages.append((time.monotonic(), json.loads(ws.receive(timeout=5))))
        sid = log.messages[-1][1]["streamSid"]
        call_sid = log.messages[-1][1]["start"]["callSid"]
        said: list[dict[str, str]] = []

        def remember(text: str, ended: bool = False) -> None:
            if text:
                said.append({"who": "bot", "text": text})
            self.store.update(call_sid, state={"ended": ended, "transcript": said})

        def send(message: dict[str, Any]) -> None:
            ws.send(json.dumps({"streamSid": sid, **message}))

        def prompt(name: str, text: str, audio: bytes, chunk: int) -> None:
            remember(text)
            for i in range(0, len(audio), chunk):
                send({"event": "media", "media": {"payload": base64.b64encode(audio[i:i + chunk]).decode()}})
            send({"event": "mark", "mark": {"name": name}})
            log.marks_sent[name] = time.monotonic()

        send({"event": "mark", "mark": {"name": START}})  # nothing buffered: echoed at once
        log.marks_sent[START] = time.monotonic()
        prompt(HELLO, "hallo", tone(GREETING_S), len(tone(GREETING_S)))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            raw = ws.receive(timeout=0.1)
            if raw is None:
                continue
            now = time.monotonic()
            message = json.loads(raw)
            log.messages.append((now, message))
            event = message["event"]
            if event == "stop":
                break
            if event == "mark":
                log.echoes[message["mark"]["name"]] = now
                if log.cleared and message["mark"]["name"] == LONG:
                    break
            elif event == "dtmf" and message["dtmf"]["digit"] == "5" and log.long_sent is None:
                log.long_sent = now
                prompt(LONG, "een lang verhaal", tone(LONG_S, 300), 400)
            elif event == "media" and log.long_sent and not log.cleared \
                    and base64.b64decode(message["media"]["payload"]) != SILENT_FRAME:
                send({"event": "clear"})
                log.cleared = time.monotonic()
        remember("", ended=True)
        time.sleep(0.2)
        log.closed = time.monotonic()


def at(log: Log, event: str, name: str) -> int:
    """Where in the order of what the server received a mark echo (or other named event) is."""
    return next(i for i, (_, m) in enumerate(log.messages) if m["event"] == event and m[event].get("name") == name)


def frames_between(log: Log, first: int, last: int) -> int:
    """The caller's media frames received between two positions: 20 ms ticks of stream time."""
    return sum(m["event"] == "media" for _, m in log.messages[first + 1:last])


@pytest.fixture(scope="module")
def bot(redis_url):
    server = FakeBot(redis_url)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.thread.join(timeout=5)


@pytest.fixture(scope="module")
def main_call(bot: FakeBot, tmp_path_factory: pytest.TempPathFactory, redis_url: str):
    """One full call: greeting, key 5, the caller talks over the long prompt, transfer with whisper."""
    bot.log = Log()
    record = tmp_path_factory.mktemp("call") / "bot.wav"
    out = io.StringIO()
    report = place_call(bot.url, [{"dtmf": "5"}, {"say": "ja", "barge_in": 0.5}], auth_token=TOKEN,
                        public_url=PUBLIC, record=str(record), out=out, max_seconds=20, redis_url=redis_url)
    bot.log.wait_closed()
    return report, bot.log, record, out.getvalue()


def test_webhooks_are_signed_over_the_public_url(main_call):
    report, log, _, _ = main_call
    assert log.refused == []
    voice = log.forms["voice"]
    assert voice["CallSid"] == report.call_sid and report.call_sid.startswith("CA") and len(report.call_sid) == 34
    assert voice["AccountSid"].startswith("AC") and len(voice["AccountSid"]) == 34
    assert (voice["From"], voice["To"], voice["CallStatus"]) == ("+31612345678", "+31850000000", "ringing")
    assert (voice["Direction"], voice["ApiVersion"]) == ("inbound", "2010-04-01")
    assert log.forms["after"]["CallStatus"] == "in-progress"
    assert log.forms["after"]["CallSid"] == report.call_sid
    assert log.forms["status"]["CallStatus"] == "completed"
    assert int(log.forms["status"]["CallDuration"]) >= 2
    started, stopped = log.stream_events
    assert (started["StreamEvent"], stopped["StreamEvent"]) == ("stream-started", "stream-stopped")
    assert started["StreamSid"] == report.stream_sid and started["CallSid"] == report.call_sid


def test_stream_opens_like_twilio(main_call):
    report, log, _, _ = main_call
    connected, start = log.messages[0][1], log.messages[1][1]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["sequenceNumber"] == "1" and start["streamSid"] == report.stream_sid
    body = start["start"]
    assert body["callSid"] == report.call_sid and body["tracks"] == ["inbound"]
    assert body["customParameters"] == {"session": "abc123", "flow": "demo"}
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    numbers = [int(m["sequenceNumber"]) for _, m in log.messages[1:]]
    assert numbers == list(range(1, len(numbers) + 1))


def test_media_frames_every_20_ms(main_call):
    _, log, _, _ = main_call
    media = [(t, m) for t, m in log.messages if m["event"] == "media"]
    assert all(m["media"]["track"] == "inbound" for _, m in media)
    assert [m["media"]["chunk"] for _, m in media] == [str(i) for i in range(1, len(media) + 1)]
    assert all(m["media"]["timestamp"] == str((int(m["media"]["chunk"]) - 1) * 20) for _, m in media)
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for _, m in media)
    # The caller's line is never quiet on the wire: frames go on while the bot talks, while the
    # caller pauses and while the caller talks. (Pacing in real time is measured in benchmarks/.)
    kinds = [m["event"] for _, m in log.messages]
    greeting_heard, key = at(log, "mark", HELLO), kinds.index("dtmf")
    cut_off = at(log, "mark", LONG)
    assert "media" in kinds[:greeting_heard] and "media" in kinds[greeting_heard:key]
    assert "media" in kinds[key:cut_off]


def test_marks_echo_when_playback_reaches_them(main_call):
    report, log, _, _ = main_call
    assert report.marks == [START, HELLO, LONG]
    echoes = [m["mark"]["name"] for m in log.of("mark")]
    assert echoes == [START, HELLO, LONG]
    # Counted in the caller's frames (one a 20 ms tick, as playback moves): stream time, not wall time.
    # Nothing was buffered before the first mark: echoed at once, long before a greeting's worth of ticks.
    assert frames_between(log, 1, at(log, "mark", START)) < GREETING_S / 0.020
    # The greeting's mark follows 1.0 s of audio: echoed once that has played, not when it arrived.
    assert frames_between(log, at(log, "mark", START), at(log, "mark", HELLO)) >= GREETING_S / 0.020


def test_dtmf_after_the_greeting(main_call):
    _, log, _, _ = main_call
    (dtmf,) = log.of("dtmf")
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert dtmf["streamSid"] and dtmf["sequenceNumber"].isdigit()
    key = [m["event"] for _, m in log.messages].index("dtmf")
    assert frames_between(log, at(log, "mark", HELLO), key) >= 1  # waited for the bot, then the default pause


def test_barge_in_clear_returns_pending_marks_at_once(main_call):
    report, log, _, out = main_call
    assert report.clears == 1
    kinds = [m["event"] for _, m in log.messages]
    key, returned = kinds.index("dtmf"), at(log, "mark", LONG)
    spoke = next(i for i, (_, m) in enumerate(log.messages)
                 if i > key and m["event"] == "media" and base64.b64decode(m["media"]["payload"]) != SILENT_FRAME)
    assert spoke < returned                                  # the caller talked over the long prompt ...
    # ... and its mark came back with the clear, long before the 4 s prompt could have played out
    assert frames_between(log, spoke, returned) < (LONG_S - 1.0) / 0.020
    clear_events = report.kinds("clear")
    assert len(clear_events) == 1 and "barge-in" in clear_events[0][2]
    assert f"marks returned: {LONG})" in clear_events[0][2]
    assert "clear  (barge-in" in out


def test_transfer_and_whisper(main_call):
    report, log, _, out = main_call
    assert report.transfer == {"kind": "number", "target": AGENT, "answer_on_bridge": True,
                               "whisper_url": f"{PUBLIC}/twilio/whisper?call={report.call_sid}&lang=nl"}
    assert report.whisper_text == "Onderwerp: test"
    assert log.whisper_args == {"call": report.call_sid, "lang": "nl"}
    assert log.forms["whisper"]["ParentCallSid"] == report.call_sid
    assert log.forms["whisper"]["To"] == AGENT
    assert report.hung_up_by is None and not report.timed_out
    assert "<Dial" in report.after_twiml and "<Connect" in report.voice_twiml
    assert f'transfer dial number {AGENT} (whisper: "Onderwerp: test")' in out


def test_latencies_and_printed_conversation(main_call):
    report, _, _, out = main_call
    dtmf_latency, say_latency = report.latencies
    assert dtmf_latency is not None and dtmf_latency >= 0  # the bot answered the key (how fast: benchmarks/)
    assert say_latency is None  # the bot was cleared and hung up, it never answered "ja"
    assert f"bot    prompt {HELLO} (1.0 s of audio)" in out
    assert report.bot_prompts == ["hallo", "een lang verhaal"]        # read from the record after the call
    assert "the bot said (from the server's record of the call):\n         hallo\n" in out
    assert "caller #5" in out and 'caller "ja"' in out
    kinds = [kind for _, kind, _ in report.events]
    assert kinds.index("dtmf") < kinds.index("caller") < kinds.index("clear") < kinds.index("transfer")


def test_recording_is_the_played_timeline(main_call):
    report, log, record, _ = main_call
    audio = report.bot_audio
    with wave.open(str(record)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (8000, 1, len(audio))
    # one 20 ms frame of the bot's side for each frame the caller sent (the recording goes on after
    # the fake server stopped reading)
    assert len(audio) % 160 == 0 and len(audio) // 160 >= len(log.of("media"))
    greeting, long = tone(GREETING_S), tone(LONG_S, 300)
    assert greeting in audio                                      # the greeting, whole and unchanged
    assert long[:1600] in audio and long not in audio             # the long prompt, begun and cut off
    assert audio.index(greeting) + len(greeting) <= audio.index(long[:1600])
    frames = [audio[i:i + 160] for i in range(0, len(audio), 160)]
    heard = sum(f != SILENT_FRAME for f in frames) * 0.020
    assert GREETING_S + 0.2 <= heard < GREETING_S + LONG_S        # the greeting and the long prompt's start


def test_expectations(main_call):
    report = main_call[0]
    assert check_expectations(report, {"transfer": "number", "target": AGENT, "clears": 1,
                                       "prompt_contains": "hallo", "whisper_contains": "onderwerp"}) == []
    failures = check_expectations(report, {"transfer": "sip", "clears": 2, "hangup": True,
                                           "prompt_contains": "tot ziens"})
    assert len(failures) == 4


def test_caller_hangs_up(bot: FakeBot, tmp_path):
    bot.log = Log()
    clip = tmp_path / "hum.wav"
    t = np.arange(int(16000 * 0.3)) / 16000
    write_wav(clip, (np.sin(2 * np.pi * 200 * t) * 6000).astype(np.int16).tobytes(), 16000)
    report = place_call(bot.url, [{"wav": str(clip)}, {"hangup": True, "wait": 0.5}], auth_token=TOKEN,
                        public_url=PUBLIC, max_seconds=10)
    bot.log.wait_closed()
    (stop,) = bot.log.of("stop")
    assert stop["stop"] == {"accountSid": bot.log.forms["voice"]["AccountSid"], "callSid": report.call_sid}
    assert "after" not in bot.log.forms  # Twilio runs no action for a caller who is gone
    assert bot.log.forms["status"]["CallStatus"] == "completed"
    assert report.hung_up_by == "caller" and not report.timed_out and report.transfer is None
    assert report.latencies == [None]


def test_max_seconds_hangs_up(bot: FakeBot, redis_url):
    bot.log = Log()
    report = place_call(bot.url, [], auth_token=TOKEN, public_url=PUBLIC, max_seconds=1.5, redis_url=redis_url)
    assert report.timed_out and report.hung_up_by == "caller"
    bot.log.wait_closed()
    assert len(bot.log.of("media")) <= 1.5 / 0.020   # no frame after 1.5 s of the call (a stall only means fewer)
    assert bot.log.of("stop") and "after" not in bot.log.forms
    assert check_expectations(report, {"prompt_contains": "hallo"}) == ["the call did not end by itself (timed out)"]


def test_without_the_servers_record_what_the_bot_said_is_unknown(bot: FakeBot, redis_url):
    """The line carries prompt numbers only; what they said comes from the server's Redis or not at all."""
    dead = "redis://127.0.0.1:9/0"
    for given, why in ((None, "no Redis URL was given"), (dead, "cannot be reached"),
                       (redis_url.rsplit("/", 1)[0] + "/9", "has no record of call")):
        bot.log = Log()
        out = io.StringIO()
        report = place_call(bot.url, [{"dtmf": "5"}], auth_token=TOKEN, public_url=PUBLIC, max_seconds=4,
                            redis_url=given, out=out)
        bot.log.wait_closed()
        assert report.marks[:2] == [START, HELLO] and report.bot_prompts is None and why in report.said_unknown
        (failure,) = [f for f in check_expectations(report, {"prompt_contains": "hallo"}) if "timed out" not in f]
        assert failure.startswith("prompt_contains cannot be checked") and why in failure
        assert "hallo" not in out.getvalue()


def test_stream_handshake_signature_is_checked(bot: FakeBot):
    bot.log = Log()
    with pytest.raises(EmulatorError, match="handshake.*403"):
        place_call(bot.url, [], auth_token=TOKEN, public_url=PUBLIC, called="+31000000000", max_seconds=3)
    assert bot.log.refused == ["/twilio/media"]


def test_wrong_token_is_refused(bot: FakeBot):
    bot.log = Log()
    with pytest.raises(WebhookRefused):
        place_call(bot.url, [], auth_token="wrong", public_url=PUBLIC)
    result = CliRunner().invoke(call, ["--server", bot.url, "--public-url", PUBLIC, "--auth-token", "wrong"])
    assert result.exit_code == 1
    assert "refused" in result.output and "TWILIO_AUTH_TOKEN" in result.output
    assert "Traceback" not in result.output
    assert bot.log.refused == ["/twilio/voice", "/twilio/voice"] and bot.log.opened is None


def test_cli_errors_without_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # no development server's token here
    runner = CliRunner()
    result = runner.invoke(call, ["--server", "http://127.0.0.1:9", "--auth-token", "x"])
    assert result.exit_code == 1 and "cannot reach the server" in result.output
    result = runner.invoke(call, ["--server", "http://127.0.0.1:9"])
    assert result.exit_code != 0 and "TWILIO_AUTH_TOKEN" in result.output


def test_record_into_a_missing_folder_fails_before_dialling(bot: FakeBot, tmp_path):
    bot.log = Log()
    record = tmp_path / "no" / "such" / "bot.wav"
    result = CliRunner().invoke(call, ["--server", bot.url, "--public-url", PUBLIC, "--auth-token", TOKEN,
                                       "--dtmf", "1", "--record", str(record)])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    assert bot.log.forms == {}, "no call was placed"


def test_a_recording_that_cannot_be_written_is_a_failure_not_a_crash(bot: FakeBot, tmp_path, monkeypatch):
    bot.log = Log()

    def disk_full(path, audio):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emulated_call, "ulaw_to_wav", disk_full)
    report = place_call(bot.url, [], auth_token=TOKEN, public_url=PUBLIC, max_seconds=1.0,
                        record=str(tmp_path / "bot.wav"))
    assert not report.passed and report.recording is None
    assert any("No space left on device" in failure for failure in report.failures)
    bot.log.wait_closed()


def test_a_server_address_that_is_no_url_is_one_clear_error():
    result = CliRunner().invoke(call, ["--server", "notaurl", "--auth-token", "x", "--dtmf", "1"])
    assert result.exit_code == 1 and "notaurl" in result.output and "http://" in result.output
    assert "Traceback" not in result.output


def test_cli_script_with_expectations(bot: FakeBot, tmp_path, redis_url):
    bot.log = Log()
    scenario = tmp_path / "barge.yaml"
    scenario.write_text(f"""
caller: "+31687654321"
turns:
  - dtmf: "5"
  - say: yes
    voice: en
    barge_in: 0.4
expect:
  transfer: number
  target: "{AGENT}"
  clears: 1
  prompt_contains: lang verhaal
  whisper_contains: onderwerp
""", encoding="utf-8")
    result = CliRunner().invoke(call, ["--server", bot.url, "--public-url", PUBLIC, "--auth-token", TOKEN,
                                       "--script", str(scenario), "--max-seconds", "20", "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    assert bot.log.forms["voice"]["From"] == "+31687654321"
    assert 'caller "yes"' in result.output and "PASS" in result.output
    assert "transferred (number +31201234567)" in result.output


def test_command_line_turn_order():
    args = ["--say", "hallo", "--dtmf=12#", "--server", "x", "--wav", "a.wav", "--say", "--dtmf"]
    order = turn_order(args)
    assert order == ["say", "dtmf", "wav", "say"]
    turns = _turns_from_options(order, {"say": ("hallo", "--dtmf"), "dtmf": ("12#",), "wav": ("a.wav",)})
    assert turns == [{"say": "hallo"}, {"dtmf": "12#"}, {"wav": "a.wav"}, {"say": "--dtmf"}]


class _RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, data: str) -> None:
        self.sent.append(json.loads(data))


def test_playback_marks_and_malformed_messages_frame_by_frame():
    """Playback semantics without a clock: a mark comes back once the audio before it has played."""
    log = CallLog(CallReport(call_sid="CA1"))
    ws = _RecordingSocket()
    stream = MediaStream(ws, "MZ1", [], deadline=float("inf"), log=log, account_sid="AC1")  # type: ignore[arg-type]

    def message(event: str, **body: Any) -> str:
        return json.dumps({"event": event, "streamSid": "MZ1", **body})

    stream._on_message(message("media", media={"payload": base64.b64encode(tone(0.04)).decode()}), 0.0)
    stream._on_message(message("mark", mark={"name": "1:twee frames"}), 0.0)
    echoed = lambda: [m["mark"]["name"] for m in ws.sent if m["event"] == "mark"]  # noqa: E731
    stream._play(0.00)   # frame 1 starts
    stream._play(0.02)   # frame 1 done, frame 2 starts
    assert echoed() == [] and not stream.idle()
    stream._play(0.04)   # frame 2 done: the mark's audio has played
    assert echoed() == ["1:twee frames"] and stream.idle()
    assert log.report.failures == []
    stream._on_message(message("media", media={"payload": "AAAA", "track": "outbound"}), 0.1)
    stream._on_message(json.dumps({"event": "clear", "streamSid": "MZ2"}), 0.1)
    stream._on_message("not json", 0.1)
    assert len(log.report.failures) == 3 and log.report.clears == 0
    assert len(stream.timeline) == 3 * 160


class _ClosingSocket(_RecordingSocket):
    """A socket whose server has just sent its close frame: the next frame cannot be sent."""

    def send(self, data: str) -> None:
        from wsproto.utilities import LocalProtocolError

        if json.loads(data)["event"] == "media":
            raise LocalProtocolError("Event TextMessage cannot be sent in state ConnectionState.REMOTE_CLOSING.")
        super().send(data)

    def receive(self, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        pass


def test_a_server_that_closes_between_two_frames_hung_up():
    """The bot hangs up while a frame is on its way: the call ends as the server's, not with a crash."""
    log = CallLog(CallReport(call_sid="CA1"))
    stream = MediaStream(_ClosingSocket(), "MZ1", [], deadline=float("inf"), log=log,  # type: ignore[arg-type]
                         account_sid="AC1")
    assert stream.run({}) == "server"


def test_scenario_files_are_checked_before_calling(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("caller: +31612345678\nturns: [{say: ja}]\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="quote the number"):
        load_scenario(bad)
    bad.write_text("turns: [{say: ja, dtmf: '1'}]\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="exactly one of"):
        load_scenario(bad)
    good = tmp_path / "good.yaml"
    good.write_text("turns: [{say: yes}, {wav: hello.wav}, {hangup: true}]\nexpect: {hangup: false}\n",
                    encoding="utf-8")
    scenario = load_scenario(good)
    assert scenario["turns"][0] == {"say": "yes"}  # YAML 1.2 reading: 'yes' stays text
    assert scenario["turns"][1]["wav"] == str(tmp_path / "hello.wav")
    assert scenario["expect"] == {"hangup": False}


@pytest.mark.parametrize("text, problem", [
    ("rate: fast\nturns: [{say: ja}]\n", "'rate' is espeak-ng words per minute"),
    ("voice: 12\nturns: [{say: ja}]\n", "'voice' is an espeak-ng voice name"),
    ("max_seconds: lang\nturns: [{say: ja}]\n", "'max_seconds' is a number of seconds"),
    ("turns: [{say: ja}, {say: nee, rate: fast}]\n", "turn 2: 'rate'"),
    ("turns: [{say: ja, voice: [nl]}]\n", "turn 1: 'voice'"),
    ("turns: [{dtmf: '1'}, {dtmf: 12a}]\n", "turn 2: dtmf '12a'"),
    ("turns: [{say: ja}]\nexpect: {clears: x}\n", "expect.clears must be a whole number"),
    ("turns: [{say: ja}]\nexpect: {hangup: maybe}\n", "expect.hangup must be true or false"),
    ("turns: [{say: ja}]\nexpect: {target: +31201234567}\n", "expect.target must be text"),
])
def test_bad_values_in_a_scenario_name_the_file_and_turn(tmp_path, text, problem):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(scenario)
    assert str(raised.value).startswith(f"{scenario}: ") and problem in str(raised.value)
    result = CliRunner().invoke(call, ["--server", "http://127.0.0.1:9", "--auth-token", "x",
                                       "--script", str(scenario)])
    assert result.exit_code == 1 and problem in result.output and "Traceback" not in result.output


def test_a_scenario_that_is_not_utf8_is_a_scenario_error(tmp_path):
    scenario = tmp_path / "latin1.yaml"
    scenario.write_bytes("turns: [{say: café}]\n".encode("latin-1"))
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(scenario)
