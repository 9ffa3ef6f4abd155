"""Twilio Media Stream messages as typed values, and the messages we send back.

Everything that arrives on a stream socket was written by someone we have not yet trusted: Twilio,
or anyone who reached the socket. :class:`StreamDecoder` turns one text frame into a frozen value
(:class:`Connected`, :class:`Start`, :class:`Media`, :class:`Dtmf`, :class:`Mark`, :class:`Stop`)
or raises :class:`ProtocolError`, and nothing else. Its ``kind`` is one of a fixed set of labels
(:data:`KINDS`), so it can go into a metric label or a log line without carrying the sender's words.

The decoder is a small state machine, because the order of messages is part of the protocol:
until a ``start`` is accepted only ``connected`` and ``start`` are allowed; after it, every message
must name the started ``streamSid``; there is one ``start`` per stream and nothing after ``stop``.
A rejected ``start`` changes nothing, so the stream stays unstarted.

Fields this module does not use (``sequenceNumber``, ``dtmf.track``, ``stop.*``) are ignored, so a
field Twilio adds later does not break calls. Fields it does use are checked for type, size and
value, so what comes out is safe to store, log and act on.

The encoders build exactly the three messages Twilio accepts from us: ``media``, ``mark`` and
``clear`` (https://www.twilio.com/docs/voice/media-streams/websocket-messages).

Pure: no sockets, no logging, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

# A 20 ms frame is about 300 characters of JSON and a start with every parameter at Twilio's
# limit about 17,000: anything longer is not a Twilio message, and is refused before parsing.
MAX_MESSAGE_CHARS = 64_000

# Decoded bytes of audio in one inbound media message. Twilio sends 160 bytes (20 ms); one second
# of audio in one message is already far from that, and bounds what one message can make us buffer.
MAX_FRAME_BYTES = 8_000

# Outbound media is sent in one-second pieces: a multiple of the 160-byte frame, few messages per
# prompt, and no pacing needed (Twilio buffers and plays them in order).
CHUNK_BYTES = 8_000

# Twilio's own limits on <Parameter>: its documentation gives "name plus value under 500
# characters"; 32 entries is more than any call of ours sets and bounds what a start can carry.
MAX_PARAMETERS = 32
MAX_PARAMETER_CHARS = 500

# Our mark names are a counter and the start of the prompt's text (well under 200 characters);
# an echo longer than this was not sent by us.
MAX_MARK_NAME_CHARS = 256

# Twilio SIDs are two letters and 32 hex digits. The pattern is wider (emulators and tests use
# short ones) but keeps SIDs safe as Redis keys and in log lines.
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Numbers in a message are small (a sample rate, a chunk counter, milliseconds since the start).
# Longer digit strings are refused before Python turns them into integers.
MAX_NUMBER_DIGITS = 20

# ``protocol`` and ``version`` of ``connected`` are short words ("Call", "1.0.0").
MAX_CONNECTED_FIELD_CHARS = 64

KEYS = frozenset("0123456789*#ABCD")
TRACKS = frozenset({"inbound", "outbound"})

KINDS: dict[str, str] = {
    # framing
    "binary": "a binary frame, not text",
    "oversized": "a message longer than MAX_MESSAGE_CHARS",
    "not_json": "a message that is not JSON",
    "too_deep": "JSON nested too deeply to parse",
    "bad_number": "a number that is NaN, infinite or too long",
    "not_object": "a message that is not a JSON object",
    "no_event": "a message without a string 'event'",
    "unknown_event": "an event that is not one of Twilio's",
    # order
    "before_start": "media, dtmf, mark or stop before an accepted 'start'",
    "after_stop": "a message after 'stop'",
    "second_start": "a second 'start'",
    "connected_after_start": "'connected' after 'start'",
    "wrong_stream": "a streamSid that is not the started one",
    # connected
    "bad_connected": "'connected' with a protocol or version that is not a short string",
    # start
    "bad_start": "'start' without a 'start' object",
    "no_call_sid": "'start' without callSid",
    "no_stream_sid": "'start' without streamSid",
    "no_account_sid": "'start' without accountSid",
    "bad_sid": "a SID that is not a short string of letters, digits, '-' or '_'",
    "stream_sid_mismatch": "'start' naming two different streamSids",
    "bad_tracks": "'start' tracks that are not a list including 'inbound'",
    "bad_media_format": "a mediaFormat other than audio/x-mulaw, 8000 Hz, one channel",
    "bad_parameters": "customParameters that are not an object of strings",
    "too_many_parameters": "more than MAX_PARAMETERS customParameters",
    "parameter_too_long": "a customParameter whose name and value reach MAX_PARAMETER_CHARS",
    # media
    "no_payload": "'media' without a string payload",
    "payload_oversized": "a media payload of more than MAX_FRAME_BYTES",
    "payload_not_base64": "a media payload that is not base64",
    "bad_track": "a media track other than 'inbound'",
    "bad_chunk": "a media chunk that is not a non-negative integer",
    "bad_timestamp": "a media timestamp that is not a non-negative integer",
    # dtmf and mark
    "bad_digit": "'dtmf' without a digit in 0-9, *, #, A-D",
    "bad_mark_name": "'mark' without a non-empty string name",
    "mark_name_too_long": "a mark name longer than MAX_MARK_NAME_CHARS",
}


class ProtocolError(ValueError):
    """A stream message we cannot use. ``kind`` is a key of :data:`KINDS`; the text is ours too."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise AssertionError(f"unknown ProtocolError kind {kind!r}")
        super().__init__(KINDS[kind])
        self.kind = kind


@dataclass(frozen=True)
class Connected:
    """The first message of every stream; it carries nothing we act on."""

    protocol: str = "Call"
    version: str = ""


@dataclass(frozen=True)
class Start:
    """The stream's identity. ``parameters`` are the ``<Parameter>`` values of our TwiML."""

    stream_sid: str
    call_sid: str
    account_sid: str
    parameters: dict[str, str]
    tracks: tuple[str, ...] = ("inbound",)


@dataclass(frozen=True)
class Media:
    """Inbound audio, decoded: raw mu-law at 8 kHz. Sizes need not be whole 20 ms frames."""

    audio: bytes
    timestamp: int | None = None
    chunk: int | None = None


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    """Twilio's echo of a mark we sent: the audio before it has played (or was cleared)."""

    name: str


@dataclass(frozen=True)
class Stop:
    """The stream has ended (the call hung up or was moved on)."""


Message = Connected | Start | Media | Dtmf | Mark | Stop


class StreamDecoder:
    """Decodes the messages of one stream, in order. ``stream_sid`` is set by the accepted start."""

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        self._stopped = False

    def decode(self, raw: str | bytes) -> Message:
        """One text frame to a message; :class:`ProtocolError` for anything unusable."""
        message = _parse(raw)
        event = message.get("event")
        if not isinstance(event, str):
            raise ProtocolError("no_event")
        if event not in _EVENTS:
            raise ProtocolError("unknown_event")
        if self._stopped:
            raise ProtocolError("after_stop")
        if event == "connected":
            if self.stream_sid is not None:
                raise ProtocolError("connected_after_start")
            return _connected(message)
        if event == "start":
            if self.stream_sid is not None:
                raise ProtocolError("second_start")
            start = _start(message)
            self.stream_sid = start.stream_sid
            return start
        if self.stream_sid is None:
            raise ProtocolError("before_start")
        if message.get("streamSid") != self.stream_sid:
            raise ProtocolError("wrong_stream")
        if event == "media":
            return _media(message)
        if event == "dtmf":
            return _dtmf(message)
        if event == "mark":
            return _mark(message)
        self._stopped = True
        return Stop()


def encode_media(stream_sid: str, ulaw: bytes) -> list[str]:
    """Outbound audio (raw mu-law, 8 kHz, no header) as ``media`` messages of CHUNK_BYTES each."""
    _check_sid(stream_sid)
    audio = bytes(ulaw)
    return [_dump({"event": "media", "streamSid": stream_sid,
                   "media": {"payload": base64.b64encode(audio[i:i + CHUNK_BYTES]).decode("ascii")}})
            for i in range(0, len(audio), CHUNK_BYTES)]


def encode_mark(stream_sid: str, name: str) -> str:
    """A ``mark``: Twilio echoes it when the audio sent before it has played."""
    _check_sid(stream_sid)
    if not name or not _is_text(name, MAX_MARK_NAME_CHARS):
        # The echo of such a name would be refused by the decoder, so the mark would never come back.
        raise ValueError(f"mark names are 1 to {MAX_MARK_NAME_CHARS} characters of text")
    return _dump({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def encode_clear(stream_sid: str) -> str:
    """A ``clear``: Twilio drops the audio it has buffered and echoes every pending mark."""
    _check_sid(stream_sid)
    return _dump({"event": "clear", "streamSid": stream_sid})


# -- decoding ---------------------------------------------------------------------------------------

_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})
_MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
# Base64 of MAX_FRAME_BYTES: checked before decoding, so an oversized payload costs nothing.
_MAX_PAYLOAD_CHARS = -(-MAX_FRAME_BYTES // 3) * 4


def _parse(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str):
        raise ProtocolError("binary")
    if len(raw) > MAX_MESSAGE_CHARS:
        raise ProtocolError("oversized")
    try:
        message = json.loads(raw, parse_constant=_refuse_constant, parse_int=_small_int,
                             parse_float=_finite_float)
    except ProtocolError:
        raise
    except RecursionError:
        # json's C scanner recurses once per nesting level: '[' * 10_000 raises this, not ValueError.
        raise ProtocolError("too_deep") from None
    except ValueError:
        raise ProtocolError("not_json") from None
    if not isinstance(message, dict):
        raise ProtocolError("not_object")
    return message


def _refuse_constant(name: str) -> Any:
    raise ProtocolError("bad_number")      # NaN, Infinity, -Infinity: not JSON, though Python accepts them


def _small_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ProtocolError("bad_number")
    return int(digits)


def _finite_float(text: str) -> float:
    if len(text) > 2 * MAX_NUMBER_DIGITS:
        raise ProtocolError("bad_number")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ProtocolError("bad_number")
    return value


def _connected(message: dict[str, Any]) -> Connected:
    protocol = message.get("protocol", "Call")
    version = message.get("version", "")
    if not (_is_text(protocol, MAX_CONNECTED_FIELD_CHARS) and _is_text(version, MAX_CONNECTED_FIELD_CHARS)):
        raise ProtocolError("bad_connected")
    return Connected(protocol=protocol, version=version)


def _start(message: dict[str, Any]) -> Start:
    body = message.get("start")
    if not isinstance(body, dict):
        raise ProtocolError("bad_start")
    call_sid = _sid(body.get("callSid"), "no_call_sid")
    # Twilio names the stream twice (top level and inside start); either will do, both must agree.
    named = {_sid(sid, "no_stream_sid") for sid in (body.get("streamSid"), message.get("streamSid"))
             if sid is not None and sid != ""}
    if not named:
        raise ProtocolError("no_stream_sid")
    if len(named) > 1:
        raise ProtocolError("stream_sid_mismatch")
    (stream_sid,) = named
    account_sid = _sid(body.get("accountSid"), "no_account_sid")
    tracks = _tracks(body.get("tracks"))
    if "mediaFormat" in body and not _is_mulaw(body["mediaFormat"]):
        raise ProtocolError("bad_media_format")
    parameters = _parameters(body.get("customParameters"))
    return Start(stream_sid=stream_sid, call_sid=call_sid, account_sid=account_sid,
                 parameters=parameters, tracks=tracks)


def _sid(value: Any, missing: str) -> str:
    if value is None or value == "":
        raise ProtocolError(missing)
    if not isinstance(value, str) or not _SID.fullmatch(value):
        raise ProtocolError("bad_sid")
    return value


def _tracks(value: Any) -> tuple[str, ...]:
    if value is None:
        return ("inbound",)
    if (not isinstance(value, list) or not 1 <= len(value) <= len(TRACKS)
            or not all(isinstance(t, str) and t in TRACKS for t in value)
            or len(set(value)) != len(value) or "inbound" not in value):
        raise ProtocolError("bad_tracks")
    return tuple(value)


def _is_mulaw(value: Any) -> bool:
    # type() rather than ==: True == 1 and 8000.0 == 8000, and neither is what Twilio sends.
    return (isinstance(value, dict)
            and all(type(value.get(key)) is type(want) and value.get(key) == want
                    for key, want in _MEDIA_FORMAT.items()))


def _parameters(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("bad_parameters")
    if len(value) > MAX_PARAMETERS:
        raise ProtocolError("too_many_parameters")
    parameters: dict[str, str] = {}
    for name, text in value.items():
        if not (isinstance(name, str) and isinstance(text, str) and _utf8(name) and _utf8(text)):
            raise ProtocolError("bad_parameters")
        if len(name) + len(text) >= MAX_PARAMETER_CHARS:
            raise ProtocolError("parameter_too_long")
        parameters[name] = text
    return parameters


def _media(message: dict[str, Any]) -> Media:
    body = message.get("media")
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, str):
        raise ProtocolError("no_payload")
    if len(payload) > _MAX_PAYLOAD_CHARS:
        raise ProtocolError("payload_oversized")
    track = body.get("track", "inbound")
    if track != "inbound":
        raise ProtocolError("bad_track")
    chunk = _counter(body.get("chunk"), "bad_chunk")
    timestamp = _counter(body.get("timestamp"), "bad_timestamp")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        # binascii.Error: bad alphabet or padding; ValueError (UnicodeEncodeError): not ASCII at all.
        raise ProtocolError("payload_not_base64") from None
    if len(audio) > MAX_FRAME_BYTES:
        raise ProtocolError("payload_oversized")
    return Media(audio=audio, timestamp=timestamp, chunk=chunk)


def _counter(value: Any, kind: str) -> int | None:
    """Twilio sends counters as strings of digits; plain JSON integers are accepted as well."""
    if value is None:
        return None
    if type(value) is int and 0 <= value:
        return value
    if isinstance(value, str) and 0 < len(value) <= MAX_NUMBER_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    raise ProtocolError(kind)


def _dtmf(message: dict[str, Any]) -> Dtmf:
    body = message.get("dtmf")
    digit = body.get("digit") if isinstance(body, dict) else None
    if not isinstance(digit, str) or digit not in KEYS:
        raise ProtocolError("bad_digit")
    return Dtmf(digit=digit)


def _mark(message: dict[str, Any]) -> Mark:
    body = message.get("mark")
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name or not _utf8(name):
        raise ProtocolError("bad_mark_name")
    if len(name) > MAX_MARK_NAME_CHARS:
        raise ProtocolError("mark_name_too_long")
    return Mark(name=name)


def _is_text(value: Any, limit: int) -> bool:
    """A string of at most ``limit`` characters that can be written as UTF-8."""
    return isinstance(value, str) and len(value) <= limit and _utf8(value)


def _utf8(value: str) -> bool:
    # JSON's \ud800 escapes give lone surrogates, which cannot be encoded: redis, logs and files
    # would fail on them later, far from here.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- encoding ---------------------------------------------------------------------------------------

def _check_sid(stream_sid: str) -> None:
    if not isinstance(stream_sid, str) or not _SID.fullmatch(stream_sid):
        raise ValueError("stream_sid must be the SID of an accepted start")


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
