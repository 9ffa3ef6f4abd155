"""A local Twilio: place a call on a running voicebot server the way Twilio's network would.

A bot that passes the text simulator can still fail on the phone, because what breaks there is the
telephony contract, not the dialog. This emulator plays Twilio's side of that contract closely
enough to catch those faults before a real number is pointed at the server:

- **Signatures.** The voice webhook, the WebSocket upgrade, the ``<Connect action>`` request, the
  whisper and the status callback all carry ``X-Twilio-Signature``, computed with the twilio SDK over
  the *public* URL (``wss://`` for the stream, the query string included for a whisper URL). A
  server that checks against the address it is reached at fails here just as it would behind TLS
  termination or a tunnel.
- **Real-time pacing.** Twilio sends one 20 ms frame (160 bytes of mu-law) every 20 ms for the life
  of the call, silence included, on a fixed clock. End-of-speech detection, no-input timers and
  barge-in only behave as on the phone when audio arrives at that pace, so frames are scheduled on
  ``time.monotonic`` from the stream start (no sleep drift) and never sent faster.
- **Playback.** The bot's audio is buffered and played at 8000 bytes a second. A ``mark`` comes back
  only when the audio queued before it has played, and at once when nothing is buffered: that is how
  the bot learns what the caller actually heard. ``clear`` drops the buffer and returns every
  pending mark at once. The played audio is kept as a timeline (silence where nothing played).
- **After the stream.** ``<Connect>`` blocks until the *server* closes the socket; only then is the
  ``action`` URL requested and its TwiML run (``<Dial>`` with a whisper URL on the agent leg,
  ``<Enqueue>``, ``<Hangup>``). When the caller hangs up first, Twilio sends ``stop`` and never
  requests the action.

The caller follows a script of turns (speech from espeak-ng or a WAV file, keys, silence, hang-up),
by default waiting politely until the bot has finished talking, or interrupting it on purpose
(``barge_in``). The result is a ``CallReport`` with a timed event list, the bot's audio, the
transfer and per-turn response latencies.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np
from simple_websocket import Client, ConnectionClosed
from simple_websocket import ConnectionError as WebSocketRefused
from twilio.request_validator import RequestValidator

from voicebot.errors import ScenarioError, VoicebotError
from voicebot.speech.audio import FRAME_BYTES, FRAME_MS, ULAW_SILENCE, frames, ulaw_to_pcm, ulaw_to_wav, wav_to_ulaw
from voicebot.speech.prompts import espeak_ng_wav

FRAME_S = FRAME_MS / 1000
BYTES_PER_S = 8000
HTTP_TIMEOUT = 15.0
"""Twilio gives a webhook 15 seconds before it gives up on it."""
DTMF_GAP = 0.15
"""Seconds between two keys of one ``dtmf`` turn."""
SPEECH_PEAK = 1000
"""A caller frame whose loudest sample is below this counts as silence when timing the end of speech."""
DEFAULT_PAUSE = 0.4
DEFAULT_WAIT = 30.0
DEFAULT_CALLER = "+31612345678"
DEFAULT_CALLED = "+31850000000"
DEFAULT_VOICE = "nl"
DEFAULT_RATE = 165
DEFAULT_MAX_SECONDS = 120.0
MAX_REDIRECTS = 5
STATUS_PATH = "/twilio/status"
VOICE_PATH = "/twilio/voice"

DTMF_KEYS = "0123456789*#"
TURN_ACTIONS = ("say", "wav", "dtmf", "silence", "hangup")
TURN_KEYS = set(TURN_ACTIONS) | {"voice", "rate", "pause", "barge_in", "wait"}
EXPECT_KEYS = {"transfer", "target", "hangup", "clears", "prompt_contains", "whisper_contains"}
SCENARIO_KEYS = {"name", "caller", "called", "voice", "rate", "turns", "expect", "max_seconds"}


class EmulatorError(VoicebotError):
    """The call could not be placed or carried on (no server, refused request, unusable TwiML)."""


class ServerUnreachable(EmulatorError):
    """Nothing answers at the server address."""


class WebhookRefused(EmulatorError):
    """The server answered a signed request with 403: it does not accept our signature."""


@dataclass
class CallReport:
    """What happened on one emulated call; times are seconds from the incoming-call webhook.

    ``failures`` holds protocol faults Twilio would reject (malformed stream messages, an
    after-stream answer that fails) and, when expectations were given, the unmet ones.
    """

    call_sid: str
    stream_sid: str = ""
    events: list[tuple[float, str, str]] = field(default_factory=list)
    clears: int = 0
    bot_prompts: list[str] = field(default_factory=list)
    bot_audio: bytes = b""
    voice_twiml: str = ""
    after_twiml: str | None = None
    transfer: dict[str, Any] | None = None
    whisper_text: str | None = None
    hung_up_by: str | None = None
    timed_out: bool = False
    latencies: list[float | None] = field(default_factory=list)
    recording: str | None = None
    """The WAV file the bot's audio was written to (None when not asked for or not writable)."""
    passed: bool = True
    failures: list[str] = field(default_factory=list)
    duration: float = 0.0

    def kinds(self, kind: str) -> list[tuple[float, str, str]]:
        """The events of one kind, in order."""
        return [e for e in self.events if e[1] == kind]


# -- the caller's script ---------------------------------------------------------------------------


@dataclass
class _Turn:
    kind: str
    label: str
    audio: bytes = b""
    speech_frames: int = 0
    keys: str = ""
    seconds: float = 0.0
    pause: float = DEFAULT_PAUSE
    barge_in: float | None = None
    wait: float = DEFAULT_WAIT


class CheckedTurns(list):
    """Turns ``check_turns`` has accepted; ``place_call`` does not check them again."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _voice_rate_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a mapping's ``voice`` and ``rate`` (a scenario's or a turn's), if anything."""
    if "voice" in data and (not isinstance(data["voice"], str) or not data["voice"]):
        return "'voice' is an espeak-ng voice name, e.g. voice: nl"
    if "rate" in data and (not isinstance(data["rate"], int) or isinstance(data["rate"], bool) or data["rate"] <= 0):
        return "'rate' is espeak-ng words per minute, a whole number such as rate: 165"
    return None


def check_turns(turns: list[dict[str, Any]], where: str = "turn") -> CheckedTurns:
    """Refuse unknown keys, turns with no or several actions and bad values, before any call is placed."""
    if not isinstance(turns, list):
        raise ScenarioError("'turns' must be a list")
    for n, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise ScenarioError(f"{where} {n}: a turn is a mapping, e.g. {{say: ja}}")
        unknown = set(turn) - TURN_KEYS
        if unknown:
            raise ScenarioError(f"{where} {n}: unknown keys {sorted(unknown)}; use {sorted(TURN_KEYS)}")
        actions = [k for k in TURN_ACTIONS if k in turn]
        if len(actions) != 1:
            raise ScenarioError(f"{where} {n}: needs exactly one of {', '.join(TURN_ACTIONS)}")
        if "hangup" in turn and turn["hangup"] is not True:
            raise ScenarioError(f"{where} {n}: write 'hangup: true'")
        for key in ("silence", "pause", "barge_in", "wait"):
            if key in turn and (not _is_number(turn[key]) or turn[key] < 0):
                raise ScenarioError(f"{where} {n}: '{key}' is a number of seconds")
        if "dtmf" in turn:
            keys = str(turn["dtmf"])
            if not keys or any(k not in DTMF_KEYS for k in keys):
                raise ScenarioError(f"{where} {n}: dtmf {keys!r}: use the keys 0-9 * # (quote them in YAML)")
        for key, example in (("say", "ja"), ("wav", "hello.wav")):
            if key in turn and (isinstance(turn[key], bool) or not isinstance(turn[key], (str, int, float))):
                raise ScenarioError(f"{where} {n}: '{key}' is text, e.g. {key}: {example}")
        problem = _voice_rate_problem(turn)
        if problem:
            raise ScenarioError(f"{where} {n}: {problem}")
    return CheckedTurns(turns)


def _check_expect(expect: Any, where: str) -> dict[str, Any]:
    """A scenario's ``expect`` block, each value of the type ``check_expectations`` compares it as."""
    if not expect:
        return {}
    if not isinstance(expect, dict) or set(expect) - EXPECT_KEYS:
        raise ScenarioError(f"{where}: 'expect' takes {sorted(EXPECT_KEYS)}")
    for key, value in expect.items():
        if key == "transfer":
            ok = isinstance(value, (bool, str))
        elif key == "hangup":
            ok = isinstance(value, bool)
        elif key == "clears":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif key == "prompt_contains":
            ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        else:  # target, whisper_contains
            ok = isinstance(value, str)
        if not ok:
            shape = {"transfer": "true, false or a kind such as number", "hangup": "true or false",
                     "clears": "a whole number", "prompt_contains": "text or a list of texts",
                     "target": 'text (quote a number: target: "+31201234567")'}.get(key, "text")
            raise ScenarioError(f"{where}: expect.{key} must be {shape}, not {value!r}")
    return dict(expect)


def _speech_frames(audio: bytes) -> int:
    """Frames up to and including the last one with speech in it (trailing silence is not speech)."""
    pcm = np.frombuffer(ulaw_to_pcm(b"".join(frames(audio))), dtype=np.int16).reshape(-1, FRAME_BYTES)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)).max(axis=1) >= SPEECH_PEAK)
    return int(loud[-1]) + 1 if loud.size else len(pcm)


def prepare_turns(turns: list[dict[str, Any]], *, voice: str, rate: int) -> list[_Turn]:
    """Turn the script into audio and timings up front: synthesis must not stall the 20 ms clock.

    Turns from ``load_scenario`` were checked there; others are checked here.
    """
    if not isinstance(turns, CheckedTurns):
        check_turns(turns)
    out: list[_Turn] = []
    for turn in turns:
        common = {"pause": float(turn.get("pause", DEFAULT_PAUSE)), "wait": float(turn.get("wait", DEFAULT_WAIT)),
                  "barge_in": None if turn.get("barge_in") is None else float(turn["barge_in"])}
        if "say" in turn:
            text = str(turn["say"])
            wav = espeak_ng_wav(text, str(turn.get("voice", voice)), int(turn.get("rate", rate)))
            audio = wav_to_ulaw(wav)
            out.append(_Turn("say", f'"{text}"', audio, _speech_frames(audio), **common))
        elif "wav" in turn:
            path = Path(str(turn["wav"]))
            try:
                audio = wav_to_ulaw(path)
            except Exception as exc:  # noqa: BLE001 - wave, pydub and ffmpeg each raise their own
                raise ScenarioError(f"cannot read {path}: {exc}") from None
            out.append(_Turn("wav", f"[{path.name}]", audio, _speech_frames(audio), **common))
        elif "dtmf" in turn:
            keys = str(turn["dtmf"])
            out.append(_Turn("dtmf", f"#{keys}", keys=keys, **common))
        elif "silence" in turn:
            seconds = float(turn["silence"])
            out.append(_Turn("silence", f"(silence {seconds:g} s)", seconds=seconds, **common))
        else:
            out.append(_Turn("hangup", "(hangs up)", **common))
    return out


def load_scenario(path: str | Path) -> dict[str, Any]:
    """A YAML scenario file as keyword arguments for ``place_call`` (plus ``expect``).

    ``voicebot.flow.yamlsrc`` keeps ``say: yes`` as text. Phone numbers must be quoted, because YAML
    reads ``+31612345678`` as a number and the ``+`` would be lost.
    """
    import yaml

    from voicebot.flow.yamlsrc import load_yaml

    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: cannot read the scenario: not UTF-8 text") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
        raise ScenarioError(f"{path}: expected a mapping with 'turns' (a list)")
    unknown = set(data) - SCENARIO_KEYS
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {sorted(unknown)}; use {sorted(SCENARIO_KEYS)}")
    for key in ("caller", "called"):
        if key in data and not isinstance(data[key], str):
            raise ScenarioError(f'{path}: quote the number in \'{key}\', e.g. {key}: "+31612345678"')
    problem = _voice_rate_problem(data)
    if problem:
        raise ScenarioError(f"{path}: {problem}")
    if "max_seconds" in data and (not _is_number(data["max_seconds"]) or data["max_seconds"] <= 0):
        raise ScenarioError(f"{path}: 'max_seconds' is a number of seconds, e.g. max_seconds: 60")
    expect = _check_expect(data.get("expect"), str(path))
    turns = check_turns([dict(t) if isinstance(t, dict) else t for t in data["turns"]], where=f"{path}: turn")
    for turn in turns:
        if "wav" in turn and not Path(str(turn["wav"])).is_absolute():
            turn["wav"] = str(path.parent / str(turn["wav"]))
    out: dict[str, Any] = {k: data[k] for k in ("caller", "called", "voice", "rate") if k in data}
    if "max_seconds" in data:
        out["max_seconds"] = float(data["max_seconds"])
    out["turns"] = turns
    out["expect"] = expect
    return out


# -- HTTP: signed form posts, the way Twilio requests webhooks --------------------------------------


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _local_url(url: str, public: str, server: str) -> str:
    """Where a public URL is reached on the local server: same path and query, the server's address."""
    scheme = urllib.parse.urlsplit(url).scheme
    websocket = scheme in ("ws", "wss")
    http_url = ("https" if scheme == "wss" else "http") + url[len(scheme):] if websocket else url
    public, server = public.rstrip("/"), server.rstrip("/")
    if http_url == public or http_url.startswith(public + "/") or http_url.startswith(public + "?"):
        local = server + http_url[len(public):]
    else:
        parts, base = urllib.parse.urlsplit(http_url), urllib.parse.urlsplit(server)
        local = urllib.parse.urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
    if websocket:
        local = ("wss" if local.startswith("https:") else "ws") + local[local.index(":"):]
    return local


@dataclass
class _Http:
    """Signed requests to the server: signed over the public URL, sent to the local address."""

    server: str
    public: str
    validator: RequestValidator

    def request(self, url: str, params: dict[str, str], method: str = "POST") -> str:
        """Request ``url`` (public, absolute) as Twilio would and return the body."""
        method = (method or "POST").upper()
        if method == "GET":
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            url, params = url + sep + urllib.parse.urlencode(params), {}
        signature = self.validator.compute_signature(url, params)
        local = _local_url(url, self.public, self.server)
        data = urllib.parse.urlencode(params).encode() if method == "POST" else None
        try:
            req = urllib.request.Request(local, data=data, method=method, headers={
                "X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1 (voicebot emulator)",
                "Accept": "*/*", **({"Content-Type": "application/x-www-form-urlencoded"} if data else {})})
        except ValueError as exc:  # "unknown url type": not an http(s) address
            raise EmulatorError(f"cannot request {local}: {exc}") from None
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:  # noqa: S310 - our own server
                return resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code == 403:
                raise WebhookRefused(
                    f"{local} refused the request (403): the server did not accept the X-Twilio-Signature. "
                    f"Check TWILIO_AUTH_TOKEN and --public-url (signed as {url})") from None
            body = exc.read().decode("utf-8", "replace").strip()[:200]
            raise EmulatorError(f"{local} answered {exc.code} {exc.reason}" + (f": {body}" if body else "")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(f"cannot reach the server at {local}: {reason}") from None


def _parse_twiml(text: str, what: str) -> ET.Element:
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise EmulatorError(f"{what} is not TwiML ({exc}): {text.strip()[:200]!r}") from None
    if root.tag != "Response":
        raise EmulatorError(f"{what}: TwiML must have <Response> at the top, not <{root.tag}>")
    return root


def _one_line(twiml: str) -> str:
    """TwiML on one printed line, without the XML declaration."""
    text = twiml.strip()
    if text.startswith("<?xml"):
        text = text[text.find("?>") + 2:]
    return " ".join(line.strip() for line in text.strip().splitlines())


def _mark_text(name: str) -> str:
    """``"3:Welkom bij ..."`` -> ``"Welkom bij ..."``: the server numbers its marks."""
    head, sep, rest = name.partition(":")
    return rest if sep and head.isdigit() else name


# -- the media stream ---------------------------------------------------------------------------------


class _Stream:
    """One bidirectional Media Stream, driven by a 20 ms clock, with a playback buffer and a caller."""

    def __init__(self, call: _Call, ws: Client, stream_sid: str, script: list[_Turn], deadline: float):
        self.call, self.ws, self.sid, self.deadline = call, ws, stream_sid, deadline
        self.report = call.report
        self.seq = 0
        self.chunk = 0
        self.ticks = 0
        self.t_stream = 0.0
        # playback: absolute byte positions in the bot's audio
        self.buffer = bytearray()
        self.started = 0        # bytes handed to the "speaker" (the frame now playing included)
        self.played = 0         # bytes fully played
        self.marks: list[tuple[int, str]] = []
        self.timeline = bytearray()
        # what the bot is saying
        self.segment_at: float | None = None
        self.segment_bytes = 0
        self.prompt_starts: list[float] = []
        self.last_media_at = -1.0
        # the caller
        self.frame = ULAW_SILENCE * FRAME_BYTES
        self.keys_due: list[str] = []
        self.hangup = False
        self.caller_busy_until = -1.0
        self.caller_done_at = 0.0
        self.reply_for: tuple[int, float] | None = None
        self.caller = self._caller(script)

    # -- sending -------------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message, separators=(",", ":")))

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    def _open(self, account_sid: str, call_sid: str, parameters: dict[str, str]) -> None:
        self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self._send({"event": "start", "sequenceNumber": self._next_seq(), "streamSid": self.sid,
                    "start": {"streamSid": self.sid, "accountSid": account_sid, "callSid": call_sid,
                              "tracks": ["inbound"], "customParameters": parameters,
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})

    def _echo(self, name: str, now: float) -> None:
        self._send({"event": "mark", "streamSid": self.sid, "sequenceNumber": self._next_seq(),
                    "mark": {"name": name}})
        self.call.note("mark", name, now, show=False)

    # -- the clock -------------------------------------------------------------------------------------

    def run(self, account_sid: str, call_sid: str, parameters: dict[str, str]) -> str:
        """Stream until someone hangs up: returns "server", "caller" or "timeout"."""
        try:
            self._open(account_sid, call_sid, parameters)
            self.t_stream = time.monotonic()
            while True:
                due = self.t_stream + self.ticks * FRAME_S
                now = time.monotonic()
                if now >= due:
                    outcome = self._tick(now)
                    if outcome:
                        return outcome
                    self.ticks += 1
                    continue
                raw = self.ws.receive(timeout=due - now)
                if raw is not None:
                    self._on_message(raw, time.monotonic())
        except (ConnectionClosed, OSError):
            return "server"
        except KeyboardInterrupt:  # Ctrl-C in `voicebot call`: the caller puts the phone down
            self.call.note("hangup", "caller hangs up (interrupted)", time.monotonic())
            self._stop()
            return "caller"
        finally:
            self._close_segment(time.monotonic())
            self.report.bot_audio = bytes(self.timeline)
            try:
                self.ws.close()  # already closed after `stop` or by the server: nothing to do
            except (ConnectionClosed, OSError):
                pass

    def _tick(self, now: float) -> str | None:
        """One 20 ms step: finish the frame that was playing, start the next, send the caller's frame."""
        self._play(now)
        if now >= self.deadline:
            self._stop()
            return "timeout"
        self.frame = ULAW_SILENCE * FRAME_BYTES
        try:
            next(self.caller)
        except StopIteration:
            pass
        if self.hangup:
            self._stop()
            return "caller"
        for key in self.keys_due:
            self._send({"event": "dtmf", "streamSid": self.sid, "sequenceNumber": self._next_seq(),
                        "dtmf": {"track": "inbound_track", "digit": key}})
        self.keys_due = []
        self.chunk += 1
        self._send({"event": "media", "sequenceNumber": self._next_seq(), "streamSid": self.sid,
                    "media": {"track": "inbound", "chunk": str(self.chunk),
                              "timestamp": str((self.chunk - 1) * FRAME_MS),
                              "payload": base64.b64encode(self.frame).decode("ascii")}})
        return None

    def _stop(self) -> None:
        """The caller is gone: Twilio says ``stop`` and closes the socket."""
        try:
            self._send({"event": "stop", "sequenceNumber": self._next_seq(), "streamSid": self.sid,
                        "stop": {"accountSid": self.call.account_sid, "callSid": self.report.call_sid}})
            self.ws.close()
        except (ConnectionClosed, OSError):
            pass

    # -- playback --------------------------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing buffered, nothing playing and no mark outstanding: the bot has stopped talking."""
        return not self.buffer and self.started == self.played and not self.marks

    def _play(self, now: float) -> None:
        self.played = self.started
        while self.marks and self.marks[0][0] <= self.played:
            self._echo(self.marks.pop(0)[1], now)
        chunk = bytes(self.buffer[:FRAME_BYTES])
        del self.buffer[:FRAME_BYTES]
        self.started += len(chunk)
        self.timeline += chunk + ULAW_SILENCE * (FRAME_BYTES - len(chunk))
        if not chunk and self.segment_at is not None and not self.marks:
            self._close_segment(now)

    def _on_message(self, raw: str | bytes, now: float) -> None:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            return self._bad(f"not JSON: {str(raw)[:60]!r}", now)
        if not isinstance(message, dict):
            return self._bad("not a JSON object", now)
        event = message.get("event")
        shapes = {"media": ({"event", "streamSid", "media"}, {"payload"}),
                  "mark": ({"event", "streamSid", "mark"}, {"name"}), "clear": ({"event", "streamSid"}, None)}
        if event not in shapes:
            return self._bad(f"unknown event {event!r}", now)
        fields, inner = shapes[event]
        if set(message) != fields or (inner and (not isinstance(message[event], dict) or set(message[event]) != inner)):
            return self._bad(f"'{event}' must have exactly {sorted(fields)}"
                             + (f" and {event}.{sorted(inner)}" if inner else "") + f": {str(raw)[:120]}", now)
        if message["streamSid"] != self.sid:
            return self._bad(f"'{event}' for streamSid {message['streamSid']!r}, not {self.sid}", now)
        if event == "media":
            self._on_media(message["media"]["payload"], now)
        elif event == "mark":
            self._on_mark(str(message["mark"]["name"]), now)
        else:
            self._on_clear(now)

    def _bad(self, problem: str, now: float) -> None:
        """Twilio drops a malformed message with warning 31951; so do we, loudly."""
        self.call.note("error", f"31951 malformed message dropped: {problem}", now, fatal=True)

    def _on_media(self, payload: Any, now: float) -> None:
        try:
            audio = base64.b64decode(str(payload), validate=True)
        except (binascii.Error, ValueError):
            return self._bad("media.payload is not base64", now)
        if audio[:4] == b"RIFF":
            self.call.note("error", "media payload starts with a WAV header: it plays as noise", now, fatal=True)
        if self.segment_at is None:
            self.segment_at = now
            self.prompt_starts.append(now)
        self.segment_bytes += len(audio)
        self.buffer += audio
        self.last_media_at = now
        if self.reply_for is not None:
            index, since = self.reply_for
            self.report.latencies[index] = now - since
            self.reply_for = None

    def _on_mark(self, name: str, now: float) -> None:
        self.report.bot_prompts.append(name)
        seconds = self.segment_bytes / BYTES_PER_S
        audio = f"({seconds:.1f} s of audio)" if self.segment_bytes else "(no audio before this mark)"
        self.call.note("bot", f"{_mark_text(name)} {audio}", self.segment_at or now)
        self.segment_at, self.segment_bytes = None, 0
        if not self.buffer and self.started == self.played:
            self._echo(name, now)
        else:
            self.marks.append((self.started + len(self.buffer), name))

    def _on_clear(self, now: float) -> None:
        self.report.clears += 1
        self._close_segment(now)
        dropped = len(self.buffer) / BYTES_PER_S
        self.buffer.clear()
        pending = [name for _, name in self.marks]
        self.marks = []
        why = "barge-in" if now <= self.caller_busy_until + 1.0 else "caller not speaking"
        detail = f"({why}; {dropped:.1f} s of audio dropped"
        detail += f", marks returned: {', '.join(_mark_text(n)[:30] for n in pending)})" if pending else ")"
        self.call.note("clear", detail, now)
        for name in pending:
            self._echo(name, now)

    def _close_segment(self, now: float) -> None:
        """Audio that no mark followed still counts as something the bot said."""
        if self.segment_at is not None and self.segment_bytes:
            self.call.note("bot", f"(audio without a mark, {self.segment_bytes / BYTES_PER_S:.1f} s)",
                           self.segment_at)
        self.segment_at, self.segment_bytes = None, 0

    # -- the caller ------------------------------------------------------------------------------------

    def _caller(self, script: list[_Turn]) -> Iterator[None]:
        """The caller's side, one ``yield`` per 20 ms tick; sets ``frame``, ``keys_due`` or ``hangup``."""
        for turn in script:
            yield from self._wait_turn(turn)
            now = time.monotonic()
            if turn.kind == "hangup":
                self.call.note("hangup", "caller hangs up", now)
                self.hangup = True
                return
            if turn.kind in ("say", "wav", "dtmf"):
                self.report.latencies.append(None)  # stays None if the bot never answers this turn
            if turn.kind in ("say", "wav"):
                self.call.note("caller", f"{turn.label} ({len(turn.audio) / BYTES_PER_S:.1f} s)", now)
                self.caller_busy_until = now + len(turn.audio) / BYTES_PER_S
                for n, frame in enumerate(frames(turn.audio)):
                    self.frame = frame
                    if n == turn.speech_frames - 1:
                        self._await_reply(time.monotonic())
                    yield
            elif turn.kind == "dtmf":
                self.call.note("dtmf", turn.label, now, label="caller")
                for i, key in enumerate(turn.keys):
                    if i:
                        gap_end = time.monotonic() + DTMF_GAP
                        while time.monotonic() < gap_end - FRAME_S / 2:
                            yield
                    self.keys_due.append(key)
                    if i == len(turn.keys) - 1:
                        self._await_reply(time.monotonic())
                    yield
            else:
                self.call.note("caller", turn.label, now)
                self.caller_done_at = now
                until = now + turn.seconds
                while time.monotonic() < until:
                    yield

    def _await_reply(self, at: float) -> None:
        """The caller's last sound of a turn: the bot's next audio is its reply (and its latency)."""
        self.reply_for = (len(self.report.latencies) - 1, at)
        self.caller_done_at = at

    def _wait_turn(self, turn: _Turn) -> Iterator[None]:
        """Hold the turn until the bot has finished (or, with ``barge_in``, until it is interrupted)."""
        start = time.monotonic()

        def waited_too_long() -> bool:
            return time.monotonic() - start >= turn.wait

        if turn.barge_in is not None:
            # The bot's next prompt is the first to start after the caller's last input, which may
            # already be arriving when this turn comes up.
            since = self.caller_done_at
            while not (starts := [t for t in self.prompt_starts if t >= since]) and not waited_too_long():
                yield
            if starts:
                while time.monotonic() < starts[0] + turn.barge_in:
                    yield
            return
        while True:
            while not (self.idle() and self.last_media_at > self.caller_done_at) and not waited_too_long():
                yield
            if waited_too_long():
                self.call.note("caller", f"(bot not done after {turn.wait:g} s; going ahead)", time.monotonic())
                return
            pause_end = time.monotonic() + turn.pause
            while time.monotonic() < pause_end and self.idle():
                yield
            if self.idle():
                return


# -- the call ---------------------------------------------------------------------------------------


class _Call:
    """One call from ringing to the status callback."""

    def __init__(self, server: str, public: str, auth_token: str, caller: str, called: str,
                 call_sid: str | None, account_sid: str | None, out: TextIO | None):
        self.validator = RequestValidator(auth_token)
        self.http = _Http(server.rstrip("/"), public.rstrip("/"), self.validator)
        self.server, self.public = server.rstrip("/"), public.rstrip("/")
        self.account_sid = account_sid or _sid("AC")
        self.report = CallReport(call_sid=call_sid or _sid("CA"))
        self.params = {"CallSid": self.report.call_sid, "AccountSid": self.account_sid, "From": caller, "To": called,
                       "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
        self.out = out
        self.t0 = time.monotonic()

    def note(self, kind: str, detail: str, at: float, *, show: bool = True, label: str | None = None,
             fatal: bool = False) -> None:
        """Record (and print) an event; a ``fatal`` one fails the call whatever the expectations."""
        if fatal:
            self.report.failures.append(detail)
        seconds = max(0.0, at - self.t0)
        self.report.events.append((round(seconds, 3), kind, detail))
        if show:
            self.say(f"{seconds:6.2f}s  {label or kind:<6} {detail}")

    def say(self, line: str) -> None:
        if self.out is not None:
            self.out.write(line + "\n")
            self.out.flush()

    def run(self, script: list[_Turn], max_seconds: float) -> CallReport:
        """Ring, stream, follow the TwiML after the stream, then report the call as completed."""
        self.t0 = time.monotonic()
        url = self.public + VOICE_PATH
        self.report.voice_twiml = self.http.request(url, self.params)
        self.say(f"  0.00s  twiml  {_one_line(self.report.voice_twiml)}")
        root = _parse_twiml(self.report.voice_twiml, f"the answer to {url}")
        connect = root.find("Connect")
        stream = connect.find("Stream") if connect is not None else None
        if connect is None or stream is None:
            self._follow(root, url, depth=0)
        else:
            outcome = self._stream(stream, script, max_seconds)
            if outcome == "server":
                try:
                    self._after_stream(root, connect, url)
                except EmulatorError as exc:  # the call is up: a broken answer is a result, not a crash
                    self.note("error", str(exc), time.monotonic(), fatal=True)
            else:
                self.report.hung_up_by = "caller"
                self.report.timed_out = outcome == "timeout"
                if self.report.timed_out:
                    self.note("hangup", f"(no end after {max_seconds:g} s: the caller gives up)", time.monotonic())
        self._status()
        return self.report

    def _stream(self, stream: ET.Element, script: list[_Turn], max_seconds: float) -> str:
        stream_url = stream.get("url", "")
        if not stream_url.startswith("wss://"):
            self.note("error", f"warning 31922: Twilio only dials wss:// streams, not {stream_url!r} "
                               "(fine for a local test)", time.monotonic())
        if urllib.parse.urlsplit(stream_url).query:
            self.note("error", "31920 <Stream url> must not carry a query string; use <Parameter>",
                      time.monotonic(), fatal=True)
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        local = _local_url(stream_url, self.public, self.server)
        signature = self.validator.compute_signature(stream_url, {})
        try:
            ws = Client.connect(local, headers={"X-Twilio-Signature": signature})
        except WebSocketRefused as exc:
            status = exc.args[0] if exc.args else "?"
            hint = " (check TWILIO_AUTH_TOKEN and --public-url)" if status == 403 else ""
            raise EmulatorError(f"the media stream handshake at {local} was refused with HTTP {status}{hint}; "
                                f"signed as {stream_url}") from None
        except OSError as exc:
            raise ServerUnreachable(f"cannot open the media stream at {local}: {exc}") from None
        sid = _sid("MZ")
        self.report.stream_sid = sid
        started = threading.Thread(target=self._stream_status, args=(stream, sid, "stream-started"), daemon=True)
        started.start()  # Twilio does not hold the stream up for this callback
        runner = _Stream(self, ws, sid, script, self.t0 + max_seconds)
        outcome = runner.run(self.account_sid, self.report.call_sid, parameters)
        started.join(timeout=HTTP_TIMEOUT)
        self._stream_status(stream, sid, "stream-stopped")
        if outcome == "server":
            self.note("hangup", "(server closed the media stream)", time.monotonic(), show=False)
        return outcome

    def _stream_status(self, stream: ET.Element, sid: str, event: str) -> None:
        """``<Stream statusCallback>``: stream-started and stream-stopped, when the TwiML asks for them."""
        url = stream.get("statusCallback")
        if not url:
            return
        params = {"AccountSid": self.account_sid, "CallSid": self.report.call_sid, "StreamSid": sid,
                  "StreamName": stream.get("name") or sid, "StreamEvent": event,
                  "Timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")}
        try:
            self.http.request(urllib.parse.urljoin(self.public + VOICE_PATH, url), params,
                              stream.get("statusCallbackMethod", "POST"))
        except EmulatorError as exc:
            self.note("error", f"stream status callback ({event}): {exc}", time.monotonic())

    def _after_stream(self, root: ET.Element, connect: ET.Element, voice_url: str) -> None:
        """Twilio requests ``<Connect action>``, or runs the verbs after ``<Connect>`` when there is none."""
        action = connect.get("action")
        if not action:
            rest = list(root)[list(root).index(connect) + 1:]
            after = ET.Element("Response")
            after.extend(rest)
            self.report.after_twiml = ET.tostring(after, encoding="unicode")
            self._follow(after, voice_url, depth=0)
            return
        url = urllib.parse.urljoin(voice_url, action)
        twiml = self.http.request(url, {**self.params, "CallStatus": "in-progress"}, connect.get("method", "POST"))
        self.report.after_twiml = twiml
        self.say(f"{time.monotonic() - self.t0:6.2f}s  twiml  {_one_line(twiml)}")
        self._follow(_parse_twiml(twiml, f"the answer to {url}"), url, depth=0)

    def _follow(self, root: ET.Element, base_url: str, depth: int) -> None:
        """Run the verbs Twilio would run after the stream, up to a transfer or the end of the call."""
        for verb in root:
            now = time.monotonic()
            if verb.tag == "Say":
                self.note("bot", f"<Say> {(verb.text or '').strip()}", now)
            elif verb.tag == "Play":
                self.note("bot", f"<Play> {(verb.text or '').strip()}", now)
            elif verb.tag == "Pause":
                continue
            elif verb.tag == "Dial":
                return self._dial(verb, base_url)
            elif verb.tag == "Enqueue":
                self.report.transfer = {"kind": "queue", "target": (verb.text or "").strip(), "whisper_url": None,
                                        "answer_on_bridge": False}
                self.note("transfer", f"enqueue {(verb.text or '').strip()} (waitUrl: {verb.get('waitUrl')})", now)
                return
            elif verb.tag == "Hangup":
                self.report.hung_up_by = "bot"
                self.note("hangup", "bot hangs up (<Hangup/>)", now)
                return
            elif verb.tag == "Redirect" and depth < MAX_REDIRECTS:
                url = urllib.parse.urljoin(base_url, (verb.text or "").strip())
                twiml = self.http.request(url, {**self.params, "CallStatus": "in-progress"}, verb.get("method", "POST"))
                self.say(f"{now - self.t0:6.2f}s  twiml  {_one_line(twiml)}")
                return self._follow(_parse_twiml(twiml, f"the answer to {url}"), url, depth + 1)
            else:
                self.note("error", f"<{verb.tag}> after the stream is not emulated; the call ends here", now)
                return
        self.report.hung_up_by = "bot"
        self.note("hangup", "bot hangs up (no TwiML left)", time.monotonic())

    def _dial(self, dial: ET.Element, base_url: str) -> None:
        """Record the transfer, then fetch the whisper the agent hears before the caller is put through."""
        nouns = [n for n in dial if n.tag in ("Number", "Sip", "Queue", "Client", "Conference")]
        noun = nouns[0] if nouns else None
        kind = "number" if noun is None else noun.tag.lower()
        target = ((noun.text if noun is not None else dial.text) or "").strip()
        whisper = noun.get("url") if noun is not None else None
        whisper_url = urllib.parse.urljoin(base_url, whisper) if whisper else None
        self.report.transfer = {"kind": kind, "target": target, "whisper_url": whisper_url,
                                "answer_on_bridge": dial.get("answerOnBridge", "false").lower() == "true"}
        if whisper_url:
            leg = {"CallSid": _sid("CA"), "ParentCallSid": self.report.call_sid, "AccountSid": self.account_sid,
                   "From": self.params["From"], "To": target, "CallStatus": "in-progress",
                   "Direction": "outbound-dial", "ApiVersion": "2010-04-01"}
            twiml = self.http.request(whisper_url, leg, noun.get("method", "POST") if noun is not None else "POST")
            root = _parse_twiml(twiml, f"the whisper at {whisper_url}")
            said = " ".join((s.text or "").strip() for s in root.iter("Say") if (s.text or "").strip())
            self.report.whisper_text = said or None
            self.note("whisper", said or "(no <Say>)", time.monotonic(), show=False)
        extra = f' (whisper: "{self.report.whisper_text}")' if self.report.whisper_text else \
            (" (whisper without <Say>)" if whisper_url else " (no whisper)")
        self.note("transfer", f"dial {kind} {target}{extra}", time.monotonic())

    def _status(self) -> None:
        """The final status callback; a server without the route only gets a note."""
        self.report.duration = time.monotonic() - self.t0
        params = {**self.params, "CallStatus": "completed", "CallDuration": str(int(round(self.report.duration)))}
        try:
            self.http.request(self.public + STATUS_PATH, params)
        except EmulatorError as exc:
            self.note("error", f"status callback: {exc}", time.monotonic())


def _check_base_url(url: str, what: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EmulatorError(f"{what} {url!r} is not an http:// or https:// address, e.g. http://127.0.0.1:5000")


def _check_record_path(record: str) -> None:
    """Refuse a recording path that cannot be written, before the call rather than after it."""
    folder = Path(record).parent
    if not folder.is_dir():
        raise EmulatorError(f"cannot record to {record}: the folder {folder} does not exist")
    if Path(record).is_dir():
        raise EmulatorError(f"cannot record to {record}: it is a folder; name a .wav file")
    if not os.access(folder, os.W_OK):
        raise EmulatorError(f"cannot record to {record}: the folder {folder} is not writable")


def place_call(server: str, turns: list[dict[str, Any]], *, auth_token: str, public_url: str | None = None,
               caller: str = DEFAULT_CALLER, called: str = DEFAULT_CALLED, voice: str = DEFAULT_VOICE,
               rate: int = DEFAULT_RATE, call_sid: str | None = None, record: str | None = None,
               max_seconds: float = DEFAULT_MAX_SECONDS, out: TextIO | None = None,
               expect: dict[str, Any] | None = None, account_sid: str | None = None) -> CallReport:
    """Place one call on ``server`` as Twilio would and return what happened.

    ``public_url`` is the base the server believes Twilio reaches it at (what it validates
    signatures against); URLs in the TwiML are mapped from it onto ``server``. Raises
    ``ServerUnreachable``, ``WebhookRefused`` or ``EmulatorError`` when the call cannot go ahead and
    ``ScenarioError`` for a bad script.
    """
    if not auth_token:
        raise EmulatorError("no auth token: the server's TWILIO_AUTH_TOKEN is needed to sign requests")
    _check_base_url(server, "the server address")
    if public_url:
        _check_base_url(public_url, "the public URL")
    if record:
        _check_record_path(record)
    script = prepare_turns(turns, voice=voice, rate=rate)
    call = _Call(server, public_url or server, auth_token, caller, called, call_sid, account_sid, out)
    report = call.run(script, max_seconds)
    if record:
        try:
            ulaw_to_wav(record, report.bot_audio)
            report.recording = record
        except OSError as exc:  # the call happened: report it, with the recording as a failure
            report.failures.append(f"cannot write the recording {record}: {exc.strerror or exc}")
    if expect:
        report.failures += check_expectations(report, expect)
    report.passed = not report.failures
    return report


def check_expectations(report: CallReport, expect: dict[str, Any]) -> list[str]:
    """The scenario's ``expect`` block against the report; an empty list means it passed."""
    failures: list[str] = []
    transfer = report.transfer or {}
    if report.timed_out:
        failures.append("the call did not end by itself (timed out)")
    for key, want in expect.items():
        if key == "transfer":
            if want and not report.transfer:
                failures.append("expected a transfer, but there was none")
            elif not want and report.transfer:
                failures.append(f"unexpected transfer to {transfer.get('target')}")
            elif isinstance(want, str) and transfer.get("kind") != want:
                failures.append(f"transfer is a {transfer.get('kind')}, expected {want}")
        elif key == "target" and transfer.get("target") != str(want):
            failures.append(f"transfer target is {transfer.get('target')!r}, expected {want!r}")
        elif key == "hangup" and (report.hung_up_by == "bot") != bool(want):
            failures.append("expected the bot to hang up" if want else "the bot hung up")
        elif key == "clears" and report.clears < int(want):
            failures.append(f"{report.clears} clear message(s), expected at least {want}")
        elif key == "prompt_contains":
            for text in [want] if isinstance(want, str) else want:
                if not any(str(text).lower() in name.lower() for name in report.bot_prompts):
                    failures.append(f"no bot prompt contains {text!r}")
        elif key == "whisper_contains" and str(want).lower() not in (report.whisper_text or "").lower():
            failures.append(f"whisper {report.whisper_text!r} does not contain {want!r}")
    return failures
