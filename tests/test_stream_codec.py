"""The Media Stream codec on its own: Twilio's messages in, typed values out, our messages back.

Messages are written as Twilio sends them (https://www.twilio.com/docs/voice/media-streams/websocket-messages):
counters as strings, mediaFormat numbers as numbers. No sockets, no files, no clock.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import random

import pytest

from voicebot.telephony import stream_codec
from voicebot.telephony.stream_codec import (
    CHUNK_BYTES, KINDS, MAX_FRAME_BYTES, MAX_MARK_NAME_CHARS, MAX_MESSAGE_CHARS, MAX_PARAMETERS, Connected, Dtmf,
    Mark, Media, ProtocolError, Start, Stop, StreamDecoder, encode_clear, encode_mark, encode_media)

ACCOUNT = "AC25e16e9a716a4a1786a7c83f58e30482"
CALL = "CA8d7a0c2e6f1b4c3d9e8f7a6b5c4d3e2f"
STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
FRAME = bytes(range(96, 256))                    # 160 bytes: one 20 ms frame of mu-law
PAYLOAD = base64.b64encode(FRAME).decode()

CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start", "sequenceNumber": "1", "streamSid": STREAM,
    "start": {"accountSid": ACCOUNT, "streamSid": STREAM, "callSid": CALL, "tracks": ["inbound"],
              "customParameters": {"flow": "energie", "from": "+31612345678", "to": "+31201234567",
                                   "token": "9f2c4e1a7b"},
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
}
MEDIA = {"event": "media", "sequenceNumber": "3", "streamSid": STREAM,
         "media": {"track": "inbound", "chunk": "2", "timestamp": "20", "payload": PAYLOAD}}
DTMF = {"event": "dtmf", "streamSid": STREAM, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "1"}}
MARK = {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM, "mark": {"name": "1:Welkom bij Energie"}}
STOP = {"event": "stop", "sequenceNumber": "6", "streamSid": STREAM, "stop": {"accountSid": ACCOUNT, "callSid": CALL}}


def raw(message: dict) -> str:
    return json.dumps(message)


def started() -> StreamDecoder:
    decoder = StreamDecoder()
    decoder.decode(raw(CONNECTED))
    decoder.decode(raw(START))
    return decoder


def with_(base: dict, path: str, value: object) -> dict:
    """A deep copy of ``base`` with ``path`` ("start.tracks") set to ``value``, or removed for ``...``."""
    message = json.loads(json.dumps(base))
    *parents, last = path.split(".")
    node = message
    for key in parents:
        node = node[key]
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return message


# -- recorded messages ------------------------------------------------------------------------------


def test_a_recorded_stream_decodes_to_typed_messages():
    decoder = StreamDecoder()
    assert decoder.stream_sid is None
    assert decoder.decode(raw(CONNECTED)) == Connected(protocol="Call", version="1.0.0")
    start = decoder.decode(raw(START))
    assert start == Start(stream_sid=STREAM, call_sid=CALL, account_sid=ACCOUNT,
                          parameters={"flow": "energie", "from": "+31612345678", "to": "+31201234567",
                                      "token": "9f2c4e1a7b"},
                          tracks=("inbound",))
    assert decoder.stream_sid == STREAM
    first = with_(MEDIA, "media.chunk", "1")
    first["media"]["timestamp"] = "0"
    assert decoder.decode(raw(first)) == Media(audio=FRAME, timestamp=0, chunk=1)
    assert decoder.decode(raw(MEDIA)) == Media(audio=FRAME, timestamp=20, chunk=2)
    assert decoder.decode(raw(MARK)) == Mark(name="1:Welkom bij Energie")
    assert decoder.decode(raw(DTMF)) == Dtmf(digit="1")
    assert decoder.decode(raw(STOP)) == Stop()


def test_bytes_of_text_are_still_binary_frames():
    # Twilio sends text frames; the socket layer gives bytes only for binary ones.
    with pytest.raises(ProtocolError) as error:
        StreamDecoder().decode(raw(CONNECTED).encode())
    assert error.value.kind == "binary"


@pytest.mark.parametrize("message, expected", [
    ({"event": "connected"}, Connected(protocol="Call", version="")),
    ({"event": "connected", "protocol": "Call", "version": "1.0.0", "extra": [1, {"x": None}]},
     Connected(protocol="Call", version="1.0.0")),
])
def test_connected(message, expected):
    assert StreamDecoder().decode(raw(message)) == expected


@pytest.mark.parametrize("change", [
    lambda m: m["start"].pop("streamSid"),                 # only the top-level streamSid
    lambda m: m.pop("streamSid"),                          # only start.streamSid
    lambda m: m["start"].pop("mediaFormat"),               # absent mediaFormat is accepted
    lambda m: m["start"].pop("tracks"),                    # absent tracks: inbound
    lambda m: m["start"].update(streamSid=""),             # empty counts as absent
    lambda m: m.pop("sequenceNumber"),                     # fields we do not use are not required
    lambda m: m["start"].update(somethingNew={"a": [1, 2]}),  # nor checked
])
def test_start_variants_twilio_may_send(change):
    message = json.loads(raw(START))
    change(message)
    start = StreamDecoder().decode(raw(message))
    assert start.stream_sid == STREAM and start.call_sid == CALL and start.account_sid == ACCOUNT
    assert start.tracks == ("inbound",)


def test_start_without_parameters_and_with_both_tracks():
    message = with_(START, "start.customParameters", ...)
    message["start"]["tracks"] = ["inbound", "outbound"]
    start = StreamDecoder().decode(raw(message))
    assert start.parameters == {} and start.tracks == ("inbound", "outbound")


def test_parameters_at_twilios_limits_and_in_any_language():
    longest = stream_codec.MAX_PARAMETER_CHARS - 1 - len("p00")        # name plus value under 500
    parameters = {f"p{i:02d}": "x" * longest for i in range(MAX_PARAMETERS)}
    parameters["p00"] = "Jürgen, 김민수, 🙂"
    start = StreamDecoder().decode(raw(with_(START, "start.customParameters", parameters)))
    assert start.parameters == parameters
    assert len(raw(with_(START, "start.customParameters", parameters))) < MAX_MESSAGE_CHARS


@pytest.mark.parametrize("size", [0, 1, 159, 161, 333, MAX_FRAME_BYTES])
def test_media_of_any_size_up_to_the_limit(size):
    audio = random.Random(size).randbytes(size)
    message = with_(MEDIA, "media.payload", base64.b64encode(audio).decode())
    assert started().decode(raw(message)).audio == audio


@pytest.mark.parametrize("body, chunk, timestamp", [
    ({"chunk": "1", "timestamp": "0"}, 1, 0),
    ({"chunk": 7, "timestamp": 140}, 7, 140),              # plain integers, as some emulators send
    ({"chunk": ..., "timestamp": ...}, None, None),
    ({"track": ...}, 2, 20),
])
def test_media_counters(body, chunk, timestamp):
    message = json.loads(raw(MEDIA))
    for key, value in body.items():
        if value is ...:
            message["media"].pop(key)
        else:
            message["media"][key] = value
    media = started().decode(raw(message))
    assert (media.chunk, media.timestamp) == (chunk, timestamp)


@pytest.mark.parametrize("digit", sorted("0123456789*#ABCD"))
def test_every_key(digit):
    assert started().decode(raw(with_(DTMF, "dtmf.digit", digit))) == Dtmf(digit)


# -- encoding and round trips -----------------------------------------------------------------------


def test_encoders_write_exactly_twilios_messages():
    assert encode_media(STREAM, FRAME) == [
        '{"event":"media","streamSid":"%s","media":{"payload":"%s"}}' % (STREAM, PAYLOAD)]
    assert encode_mark(STREAM, "prompt-42") == '{"event":"mark","streamSid":"%s","mark":{"name":"prompt-42"}}' % STREAM
    assert encode_clear(STREAM) == '{"event":"clear","streamSid":"%s"}' % STREAM


def test_outbound_audio_is_cut_into_chunks():
    assert CHUNK_BYTES % 160 == 0                          # whole 20 ms frames
    audio = bytes(i % 256 for i in range(2 * CHUNK_BYTES + 333))
    messages = [json.loads(m) for m in encode_media(STREAM, audio)]
    pieces = [base64.b64decode(m["media"]["payload"]) for m in messages]
    assert [len(p) for p in pieces] == [CHUNK_BYTES, CHUNK_BYTES, 333]
    assert b"".join(pieces) == audio
    assert encode_media(STREAM, b"") == []
    assert len(encode_media(STREAM, bytearray(CHUNK_BYTES))) == 1


def twilio_echo(sent: str, sequence: int) -> str:
    """What Twilio sends back for a mark of ours once the audio before it has played."""
    mark = json.loads(sent)
    return json.dumps({"event": "mark", "sequenceNumber": str(sequence), "streamSid": mark["streamSid"],
                       "mark": {"name": mark["mark"]["name"]}})


@pytest.mark.parametrize("name", ["1:Welkom", "3:Waarmee kan ik u helpen?", "2:안녕하세요 🙂", "x" * MAX_MARK_NAME_CHARS,
                                  '"quoted" \\ back\nslash'])
def test_a_mark_comes_back_as_sent(name):
    decoder = started()
    assert decoder.decode(twilio_echo(encode_mark(decoder.stream_sid, name), 7)) == Mark(name)


def test_sent_audio_decodes_back_to_the_same_bytes():
    """Our media in the shape of Twilio's inbound media (as the emulator loops it back)."""
    decoder = started()
    audio = random.Random(1).randbytes(CHUNK_BYTES + 480)
    back = b""
    for n, sent in enumerate(encode_media(STREAM, audio), start=1):
        message = json.loads(sent)
        message["media"].update(track="inbound", chunk=str(n), timestamp=str((n - 1) * 1000))
        media = decoder.decode(json.dumps(message))
        assert media.chunk == n
        back += media.audio
    assert back == audio


@pytest.mark.parametrize("call", [
    lambda: encode_mark(STREAM, ""),
    lambda: encode_mark(STREAM, "x" * (MAX_MARK_NAME_CHARS + 1)),
    lambda: encode_mark(STREAM, "\ud800"),
    lambda: encode_mark(STREAM, 5),
    lambda: encode_mark(None, "a"),
    lambda: encode_clear(""),
    lambda: encode_media('MZ1","event":"clear', b"\xff"),
])
def test_encoders_refuse_what_would_never_come_back(call):
    with pytest.raises(ValueError):
        call()


# -- malformed messages -----------------------------------------------------------------------------

SURROGATE = '"\\ud83d"'                                    # half of an emoji pair: valid JSON, not UTF-8


def media_with(**fields) -> str:
    message = json.loads(raw(MEDIA))
    message["media"].update(fields)
    return raw(message)


def start_with(path: str, value: object) -> str:
    return raw(with_(START, path, value))


FRESH, STARTED = "fresh", "started"

# (decoder state, raw message, kind). Every kind of KINDS appears at least once (checked below).
MALFORMED = [
    # framing
    (FRESH, b'{"event": "connected"}', "binary"),
    (FRESH, bytearray(b"\x00\xff"), "binary"),
    (FRESH, None, "binary"),
    (STARTED, media_with(payload="A" * MAX_MESSAGE_CHARS), "oversized"),
    (FRESH, " " * (MAX_MESSAGE_CHARS + 1), "oversized"),
    (FRESH, "{not json", "not_json"),
    (FRESH, "", "not_json"),
    (FRESH, '{"event": "connected"', "not_json"),
    (FRESH, '{"event": "connected"} trailing', "not_json"),
    (FRESH, '{"event": "connected", \'single\': 1}', "not_json"),
    (FRESH, "[" * 50_000, "too_deep"),
    (FRESH, "[" * 30_000 + "]" * 30_000, "too_deep"),
    (FRESH, '{"a":' * 10_000 + "1" + "}" * 10_000, "too_deep"),
    (STARTED, '{"event": "media", "streamSid": "%s", "media": %s}' % (STREAM, "[" * 40_000), "too_deep"),
    (FRESH, '{"event": "connected", "x": NaN}', "bad_number"),
    (FRESH, '{"event": "connected", "x": -Infinity}', "bad_number"),
    (FRESH, '{"event": "connected", "x": 1e999}', "bad_number"),
    (FRESH, '{"event": "connected", "x": %s}' % ("9" * 5000), "bad_number"),
    (FRESH, '{"event": "connected", "x": %s}' % ("9" * 21), "bad_number"),
    (STARTED, '{"event": "media", "streamSid": "%s", "media": {"payload": "/w==", "chunk": %s}}'
     % (STREAM, "1" * 30), "bad_number"),
    (FRESH, "[]", "not_object"),
    (FRESH, '"start"', "not_object"),
    (FRESH, "null", "not_object"),
    (FRESH, "{}", "no_event"),
    (FRESH, '{"event": 1}', "no_event"),
    (FRESH, '{"event": null}', "no_event"),
    (FRESH, '{"event": ["start"]}', "no_event"),
    (FRESH, '{"Event": "start"}', "no_event"),
    (FRESH, '{"event": "bogus"}', "unknown_event"),
    (STARTED, '{"event": "clear", "streamSid": "%s"}' % STREAM, "unknown_event"),
    (STARTED, '{"event": "MEDIA", "streamSid": "%s"}' % STREAM, "unknown_event"),
    (FRESH, '{"event": %s}' % SURROGATE, "unknown_event"),
    # order
    (FRESH, raw(MEDIA), "before_start"),
    (FRESH, raw(DTMF), "before_start"),
    (FRESH, raw(MARK), "before_start"),
    (FRESH, raw(STOP), "before_start"),
    (STARTED, raw(START), "second_start"),
    (STARTED, raw(with_(START, "streamSid", "MZ2") | {"start": {}}), "second_start"),
    (STARTED, raw(CONNECTED), "connected_after_start"),
    (STARTED, raw(with_(MEDIA, "streamSid", "MZ-other")), "wrong_stream"),
    (STARTED, raw(with_(MEDIA, "streamSid", ...)), "wrong_stream"),
    (STARTED, raw(with_(MEDIA, "streamSid", [STREAM])), "wrong_stream"),
    (STARTED, raw(with_(DTMF, "streamSid", STREAM.lower())), "wrong_stream"),
    (STARTED, raw(with_(MARK, "streamSid", None)), "wrong_stream"),
    (STARTED, raw(with_(STOP, "streamSid", "")), "wrong_stream"),
    # connected
    (FRESH, raw(CONNECTED | {"protocol": 1}), "bad_connected"),
    (FRESH, raw(CONNECTED | {"version": ["1.0.0"]}), "bad_connected"),
    (FRESH, raw(CONNECTED | {"version": None}), "bad_connected"),
    (FRESH, raw(CONNECTED | {"protocol": "Call" * 100}), "bad_connected"),
    (FRESH, '{"event": "connected", "protocol": %s}' % SURROGATE, "bad_connected"),
    # start
    (FRESH, raw(with_(START, "start", ...)), "bad_start"),
    (FRESH, raw(with_(START, "start", "MZ1")), "bad_start"),
    (FRESH, raw(with_(START, "start", [START["start"]])), "bad_start"),
    (FRESH, start_with("start.callSid", ...), "no_call_sid"),
    (FRESH, start_with("start.callSid", ""), "no_call_sid"),
    (FRESH, start_with("start.callSid", None), "no_call_sid"),
    (FRESH, raw(with_(with_(START, "streamSid", ...), "start.streamSid", ...)), "no_stream_sid"),
    (FRESH, raw(with_(with_(START, "streamSid", ""), "start.streamSid", None)), "no_stream_sid"),
    (FRESH, start_with("start.accountSid", ...), "no_account_sid"),
    (FRESH, start_with("start.accountSid", ""), "no_account_sid"),
    (FRESH, start_with("start.callSid", 12345), "bad_sid"),
    (FRESH, start_with("start.callSid", ["CA1"]), "bad_sid"),
    (FRESH, start_with("start.callSid", "CA1\nINFO forged log line"), "bad_sid"),
    (FRESH, start_with("start.callSid", "CA" + "0" * 100), "bad_sid"),
    (FRESH, start_with("start.callSid", "CA/../../x"), "bad_sid"),
    (FRESH, start_with("start.streamSid", {"sid": STREAM}), "bad_sid"),
    (FRESH, start_with("streamSid", True), "bad_sid"),
    (FRESH, start_with("start.accountSid", 1.5), "bad_sid"),
    (FRESH, start_with("start.accountSid", "AC ünïcode"), "bad_sid"),
    (FRESH, start_with("streamSid", "MZ-other"), "stream_sid_mismatch"),
    (FRESH, start_with("start.tracks", "inbound"), "bad_tracks"),
    (FRESH, start_with("start.tracks", []), "bad_tracks"),
    (FRESH, start_with("start.tracks", ["outbound"]), "bad_tracks"),
    (FRESH, start_with("start.tracks", ["inbound", "inbound"]), "bad_tracks"),
    (FRESH, start_with("start.tracks", ["inbound", 1]), "bad_tracks"),
    (FRESH, start_with("start.tracks", ["inbound_track"]), "bad_tracks"),
    (FRESH, start_with("start.tracks", {"inbound": True}), "bad_tracks"),
    (FRESH, start_with("start.mediaFormat", None), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat", {}), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat", "audio/x-mulaw"), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat.encoding", "audio/x-alaw"), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat.encoding", ...), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat.sampleRate", 16000), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat.sampleRate", "8000"), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat.sampleRate", 8000.0), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat.channels", 2), "bad_media_format"),
    (FRESH, start_with("start.mediaFormat.channels", True), "bad_media_format"),
    (FRESH, start_with("start.customParameters", ["flow", "energie"]), "bad_parameters"),
    (FRESH, start_with("start.customParameters", "flow=energie"), "bad_parameters"),
    (FRESH, start_with("start.customParameters.flow", 1), "bad_parameters"),
    (FRESH, start_with("start.customParameters.flow", None), "bad_parameters"),
    (FRESH, start_with("start.customParameters.flow", {"nested": "x"}), "bad_parameters"),
    (FRESH, raw(START).replace('"energie"', SURROGATE), "bad_parameters"),
    (FRESH, raw(START).replace('"flow"', SURROGATE), "bad_parameters"),
    (FRESH, start_with("start.customParameters", {f"p{i}": "v" for i in range(MAX_PARAMETERS + 1)}),
     "too_many_parameters"),
    (FRESH, start_with("start.customParameters.flow", "x" * 496), "parameter_too_long"),
    (FRESH, start_with("start.customParameters", {"n" * 500: ""}), "parameter_too_long"),
    # media
    (STARTED, raw(with_(MEDIA, "media", ...)), "no_payload"),
    (STARTED, raw(with_(MEDIA, "media", PAYLOAD)), "no_payload"),
    (STARTED, raw(with_(MEDIA, "media.payload", ...)), "no_payload"),
    (STARTED, media_with(payload=None), "no_payload"),
    (STARTED, media_with(payload=12345678), "no_payload"),
    (STARTED, media_with(payload=[PAYLOAD]), "no_payload"),
    (STARTED, media_with(payload="A" * 20_000), "payload_oversized"),
    (STARTED, media_with(payload="A" * 10_668), "payload_oversized"),   # 8,001 bytes once decoded
    (STARTED, media_with(payload="!!not base64!!"), "payload_not_base64"),
    (STARTED, media_with(payload="%%%"), "payload_not_base64"),
    (STARTED, media_with(payload="/w="), "payload_not_base64"),          # truncated
    (STARTED, media_with(payload=PAYLOAD[:-3]), "payload_not_base64"),
    (STARTED, media_with(payload="/w==\n"), "payload_not_base64"),
    (STARTED, media_with(payload="-_8="), "payload_not_base64"),         # the URL-safe alphabet
    (STARTED, media_with(payload="ÿÿÿÿ"), "payload_not_base64"),
    (STARTED, media_with(payload="/w=="[:2] + "\u0661\u0662"), "payload_not_base64"),
    (STARTED, raw(MEDIA).replace(PAYLOAD, "\\udfff\\udfff\\udfff\\udfff"), "payload_not_base64"),
    (STARTED, media_with(track="outbound"), "bad_track"),
    (STARTED, media_with(track="inbound_track"), "bad_track"),
    (STARTED, media_with(track=1), "bad_track"),
    (STARTED, media_with(track=None), "bad_track"),
    (STARTED, media_with(chunk="-1"), "bad_chunk"),
    (STARTED, media_with(chunk=-1), "bad_chunk"),
    (STARTED, media_with(chunk="1.5"), "bad_chunk"),
    (STARTED, media_with(chunk=1.0), "bad_chunk"),
    (STARTED, media_with(chunk=True), "bad_chunk"),
    (STARTED, media_with(chunk=""), "bad_chunk"),
    (STARTED, media_with(chunk="\u0663"), "bad_chunk"),                  # an Arabic-Indic three
    (STARTED, media_with(chunk="1" * 21), "bad_chunk"),
    (STARTED, media_with(chunk=["1"]), "bad_chunk"),
    (STARTED, media_with(timestamp="20ms"), "bad_timestamp"),
    (STARTED, media_with(timestamp={"ms": 20}), "bad_timestamp"),
    (STARTED, media_with(timestamp=" 20"), "bad_timestamp"),
    # dtmf
    (STARTED, raw(with_(DTMF, "dtmf", ...)), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf", "1")), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf.digit", ...)), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf.digit", "x")), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf.digit", "12")), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf.digit", "")), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf.digit", "a")), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf.digit", 1)), "bad_digit"),
    (STARTED, raw(with_(DTMF, "dtmf.digit", ["1"])), "bad_digit"),
    # mark
    (STARTED, raw(with_(MARK, "mark", ...)), "bad_mark_name"),
    (STARTED, raw(with_(MARK, "mark", {})), "bad_mark_name"),
    (STARTED, raw(with_(MARK, "mark", "1:Welkom")), "bad_mark_name"),
    (STARTED, raw(with_(MARK, "mark.name", 7)), "bad_mark_name"),
    (STARTED, raw(with_(MARK, "mark.name", None)), "bad_mark_name"),
    (STARTED, raw(with_(MARK, "mark.name", "")), "bad_mark_name"),
    (STARTED, raw(MARK).replace('"1:Welkom bij Energie"', SURROGATE), "bad_mark_name"),
    (STARTED, raw(with_(MARK, "mark.name", "x" * (MAX_MARK_NAME_CHARS + 1))), "mark_name_too_long"),
]


def test_every_kind_has_a_malformed_case():
    kinds = {kind for *_, kind in MALFORMED} | {"after_stop"}       # after_stop: test_nothing_after_stop
    assert kinds == set(KINDS)


@pytest.mark.parametrize("state, message, kind", MALFORMED,
                         ids=[f"{kind}-{n}" for n, (_, _, kind) in enumerate(MALFORMED)])
def test_malformed_message(state, message, kind):
    decoder = started() if state == STARTED else StreamDecoder()
    with pytest.raises(ProtocolError) as error:
        decoder.decode(message)
    assert error.value.kind == kind
    assert isinstance(error.value, ValueError)
    assert str(error.value) == KINDS[kind]             # our words only, never the sender's
    # A refused message changes nothing: the stream goes on as before.
    if state == STARTED:
        assert decoder.stream_sid == STREAM
        assert decoder.decode(raw(MEDIA)) == Media(audio=FRAME, timestamp=20, chunk=2)
    else:
        assert decoder.stream_sid is None
        assert isinstance(decoder.decode(raw(START)), Start)


def test_a_refused_start_leaves_the_stream_unstarted():
    decoder = StreamDecoder()
    decoder.decode(raw(CONNECTED))
    for bad in [start_with("start.accountSid", ...), start_with("start.mediaFormat.channels", 2),
                start_with("start.customParameters.flow", 1)]:
        with pytest.raises(ProtocolError):
            decoder.decode(bad)
        assert decoder.stream_sid is None
        with pytest.raises(ProtocolError) as error:
            decoder.decode(raw(MEDIA))
        assert error.value.kind == "before_start"
    assert isinstance(decoder.decode(raw(START)), Start)
    assert decoder.decode(raw(MEDIA)).audio == FRAME


def test_a_second_start_does_not_move_the_stream():
    decoder = started()
    other = with_(with_(START, "streamSid", "MZ2"), "start.streamSid", "MZ2")
    with pytest.raises(ProtocolError):
        decoder.decode(raw(other))
    assert decoder.stream_sid == STREAM
    with pytest.raises(ProtocolError) as error:
        decoder.decode(raw(with_(MEDIA, "streamSid", "MZ2")))
    assert error.value.kind == "wrong_stream"


def test_connected_may_repeat_before_start():
    decoder = StreamDecoder()
    assert decoder.decode(raw(CONNECTED)) == decoder.decode(raw(CONNECTED))
    assert decoder.decode(raw(START)).stream_sid == STREAM


def test_nothing_after_stop():
    decoder = started()
    assert decoder.decode(raw(STOP)) == Stop()
    for message in [MEDIA, DTMF, MARK, STOP, START, CONNECTED]:
        with pytest.raises(ProtocolError) as error:
            decoder.decode(raw(message))
        assert error.value.kind == "after_stop"


def test_protocol_error_kinds_are_fixed():
    with pytest.raises(AssertionError):
        ProtocolError("anything the sender wrote")
    assert all(kind.isidentifier() and len(kind) <= 24 for kind in KINDS)


# -- random garbage ---------------------------------------------------------------------------------

ODD_VALUES = [None, True, False, 0, -1, 1.5, 10**19, "", " ", "x" * 600, "\u0000", "\ud800", "🙂" * 300,
              "inbound", "8000", [], [1, [2, [3]]], {}, {"a": {"b": None}}, STREAM, "MZ-other", PAYLOAD,
              PAYLOAD[:-2], "9" * 40]
RECORDED = [CONNECTED, START, MEDIA, DTMF, MARK, STOP]


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    if not isinstance(node, dict):
        return [prefix]
    paths = [prefix] if prefix else []
    for key, value in node.items():
        paths += _paths(value, prefix + (key,))
    return paths


def _mutate(rng: random.Random) -> str | bytes | object:
    """One garbage message: a recorded one with a field changed, removed or cut short, or noise."""
    choice = rng.randrange(8)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if choice == 1:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x10FFFF)]))
                       for _ in range(rng.randrange(60)))
    message = json.loads(json.dumps(rng.choice(RECORDED)))
    text: str
    if choice in (2, 3, 4):
        for _ in range(rng.randrange(1, 4)):
            path = rng.choice(_paths(message))
            node = message
            for key in path[:-1]:
                node = node[key] if isinstance(node, dict) and isinstance(node.get(key), dict) else None
                if node is None:
                    break
            if isinstance(node, dict):
                if rng.random() < 0.2:
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = rng.choice(ODD_VALUES)
        text = json.dumps(message, ensure_ascii=rng.random() < 0.5)
    elif choice == 5:
        text = json.dumps(message)
        text = text[:rng.randrange(len(text))]
    elif choice == 6:
        text = json.dumps(message)
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice(["[", "{", '"', "\\", "NaN", "1e999", "\\ud800", ",", "}", "9" * 30]) + text[at:]
    else:
        depth = rng.choice([10, 500, 990, 5000, 20_000])
        text = '{"event": "start", "start": ' + "[" * depth + "]" * depth + "}"
    return text


def test_random_garbage_only_ever_raises_protocol_errors():
    rng = random.Random(8)
    decoders = [StreamDecoder(), started()]
    kinds: set[str] = set()
    decoded = 0
    for _ in range(3000):
        message = _mutate(rng)
        for i, decoder in enumerate(decoders):
            try:
                result = decoder.decode(message)
            except ProtocolError as error:
                assert error.kind in KINDS
                kinds.add(error.kind)
            else:
                assert isinstance(result, (Connected, Start, Media, Dtmf, Mark, Stop))
                decoded += 1
                if isinstance(result, (Start, Stop)):
                    decoders[i] = StreamDecoder() if i == 0 else started()   # keep both states in play
    assert decoded > 100 and len(kinds) > 15


# -- purity -----------------------------------------------------------------------------------------


def test_the_codec_needs_only_the_standard_librarys_data_modules():
    """No sockets, no logging, no test-only libraries such as hypothesis: plain values in and out."""
    tree = ast.parse(inspect.getsource(stream_codec))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "base64", "binascii", "json", "re", "dataclasses", "typing"}
