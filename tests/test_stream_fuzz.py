"""Generated and mutated Media Stream frames over a real socket into live calls on a live server.

Whatever arrives on the socket (valid JSON with wrong types, huge numbers, unicode, messages out of
order, truncated base64, unknown events, deep nesting, oversized or binary frames), the server must
not crash (same worker process all along), must keep answering, must leave no thread behind, and
must answer the next genuine call. Frames are sent as fast as the socket takes them, many per
socket; a socket the server closes is replaced by a new call. The profile is derandomized, so a
run is reproducible. Deeply nested JSON makes ``json.loads`` raise ``RecursionError`` (not a
``ValueError``): the call loop must treat it as the bad message it is.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers import ACCOUNT, AGENT, TOKEN, Server, Stream, rss_bytes, signed_post, threads, voice_params
from voicebot.emulator import place_call

SID = "@@SID@@"
"""Stands for the live stream's SID in generated frames (the SID changes when a call is replaced)."""
MIN_FRAMES = 1000
EXAMPLES = 80
WARM_UP_EXAMPLES = 15
SETTLE_SECONDS = 30.0
CALL_SETTLE_SECONDS = 6.0

# -- frames ----------------------------------------------------------------------------------------

huge = st.integers(min_value=-(2 ** 128), max_value=2 ** 128) | st.sampled_from([2 ** 63, -(2 ** 63) - 1, 10 ** 400])
scalars = st.none() | st.booleans() | huge | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=16)
events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", "", "MEDIA", "surprise",
                          "media\x00", "미디어"])


def _ulaw(data: bytes) -> str:
    return base64.b64encode(data).decode()


@st.composite
def valid_messages(draw) -> dict[str, Any]:
    """Messages Twilio could send in the middle of a call (a second start and stop included: wrong order)."""
    kind = draw(st.sampled_from(["media", "media", "media", "dtmf", "mark", "stop", "start", "connected"]))
    seq = str(draw(st.integers(min_value=1, max_value=10 ** 6)))
    if kind == "media":
        audio = draw(st.binary(min_size=0, max_size=480) | st.just(b"\xff" * 160))
        return {"event": "media", "sequenceNumber": seq, "streamSid": SID,
                "media": {"track": "inbound", "chunk": seq, "timestamp": seq, "payload": _ulaw(audio)}}
    if kind == "dtmf":
        return {"event": "dtmf", "sequenceNumber": seq, "streamSid": SID,
                "dtmf": {"track": "inbound_track", "digit": draw(st.sampled_from(list("0123456789*#ABCD")))}}
    if kind == "mark":
        return {"event": "mark", "sequenceNumber": seq, "streamSid": SID, "mark": {"name": draw(st.text(max_size=30))}}
    if kind == "stop":
        return {"event": "stop", "sequenceNumber": seq, "streamSid": SID,
                "stop": {"accountSid": ACCOUNT, "callSid": "CA" + "1" * 32}}
    if kind == "start":
        return {"event": "start", "sequenceNumber": seq, "streamSid": SID,
                "start": {"streamSid": SID, "accountSid": ACCOUNT, "callSid": "CA" + "2" * 32,
                          "tracks": ["inbound"], "customParameters": draw(st.dictionaries(
                              st.text(max_size=10), st.text(max_size=20), max_size=3)),
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    return found


@st.composite
def mutated(draw) -> str | dict[str, Any]:
    """A valid message with one thing wrong."""
    message = json.loads(json.dumps(draw(valid_messages())))
    how = draw(st.sampled_from(["drop", "replace", "truncate", "event", "unicode", "base64", "sid"]))
    paths = _paths(message)
    if how in ("drop", "replace") and paths:
        path = draw(st.sampled_from(paths))
        parent = message
        for key in path[:-1]:
            parent = parent[key]
        if how == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    elif how == "truncate":
        text = json.dumps(message, ensure_ascii=draw(st.booleans()))
        return text[:draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))]
    elif how == "event":
        message["event"] = draw(events | json_values)
    elif how == "unicode":
        text = json.dumps(message, ensure_ascii=False)
        at = draw(st.integers(min_value=0, max_value=len(text)))
        return text[:at] + draw(st.text(min_size=1, max_size=8)) + text[at:]
    elif how == "base64":
        payload = _ulaw(draw(st.binary(min_size=1, max_size=480)))
        cut = draw(st.integers(min_value=1, max_value=len(payload)))
        message = {"event": "media", "streamSid": SID, "media": {"payload": payload[:cut] + draw(
            st.sampled_from(["", "=", "==", "%", "\u00e9", " "]))}}
    elif how == "sid":
        message["streamSid"] = draw(st.text(max_size=40) | json_values)
    return message


def nested(depth: int) -> str:
    return '{"event":"media","media":' + "[" * depth + "]" * depth + "}"


oddities = st.one_of(
    st.builds(nested, st.integers(min_value=100, max_value=200_000)),
    st.builds(lambda n: json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "A" * n}}),
              st.sampled_from([8_000, 70_000, 300_000])),
    st.binary(max_size=64),
    st.text(max_size=200),
    st.builds(json.dumps, json_values),
    st.builds(lambda e, body: json.dumps({"event": e, "streamSid": SID, **body}), events,
              st.dictionaries(st.sampled_from(["media", "dtmf", "mark", "start", "stop"]), json_values, max_size=3)),
    st.sampled_from(["", " ", "null", "[]", "{}", '{"event": null}', '{"event": "media"}', "1" * 5000,
                     '{"event":"media","streamSid":"' + SID + '","media":{"payload":"' + "/" * 210 + '"}}']),
)
frames = st.one_of(valid_messages(), mutated(), mutated(), oddities)


# -- the live server -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    srv = Server(tmp_path_factory.mktemp("fuzz"), redis_url, "fuzz")
    yield srv
    srv.stop()


class Caller:
    """The fuzzer's side of one live call at a time: a new call whenever the server closed the last one.

    Before a new call it waits (a while) for the worker's thread count to come back to what it was
    before the last call, so calls do not pile up while the server is still tidying up the last
    one: the worker's request thread pool, which grows with concurrency and never shrinks, then
    stays at the size the warm-up gave it, and any thread count above the baseline is a thread left
    behind by a call.
    """

    def __init__(self, server: Server):
        self.server = server
        self.pid = server.worker_pid()
        self.stream: Stream | None = None
        self.calls = 0
        self.sent = 0
        self._threads_before = threads(self.pid)

    def live(self) -> Stream:
        if self.stream is None or self.stream.closed:
            if self.stream is not None:
                self.stream.close()
                _settle(self.pid, at_most=self._threads_before, timeout=CALL_SETTLE_SECONDS)
            self._threads_before = threads(self.pid)
            call = "CA" + secrets.token_hex(16)
            voice = signed_post(self.server, self.server.public_url + "/twilio/voice", voice_params(call))
            self.stream = Stream(self.server, voice, call)
            self.stream.open()
            self.calls += 1
        return self.stream

    def send(self, frame: str | bytes | dict[str, Any]) -> None:
        stream = self.live()
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        if isinstance(frame, str):
            frame = frame.replace(SID, stream.sid)
        try:
            stream.ws.send(frame)
        except Exception:  # noqa: BLE001 - the server closed it (or the frame was too big): a new call next
            stream.closed = True
        self.sent += 1
        stream.drain()

    def hang_up(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
            _settle(self.pid, at_most=self._threads_before, timeout=CALL_SETTLE_SECONDS)


def _settle(pid: int, at_most: int | None = None, steady: float = 2.0, timeout: float = SETTLE_SECONDS) -> int:
    """The worker's thread count once it is down to ``at_most``, or (no target) unchanged for ``steady``
    seconds; after ``timeout``, whatever it is then."""
    deadline = time.monotonic() + timeout
    count, since = threads(pid), time.monotonic()
    while time.monotonic() < deadline:
        if at_most is not None and count <= at_most:
            break
        time.sleep(0.2)
        now = threads(pid)
        if now != count:
            count, since = now, time.monotonic()
        elif at_most is None and time.monotonic() - since >= steady:
            break
    return count


def _transfer_call(server: Server):
    return place_call(server.url, [{"dtmf": "0"}], auth_token=TOKEN, voice="ko", max_seconds=60,
                      account_sid=ACCOUNT)


def _fuzz(caller: Caller, examples: int, pid: int) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(frames, min_size=10, max_size=30))
    def run(batch):
        for frame in batch:
            caller.send(frame)
        assert caller.server.proc.poll() is None and caller.server.worker_pid() == pid, "the worker died"

    run()
    caller.hang_up()


def test_fuzzed_frames_on_live_calls_break_nothing(server):
    pid = server.worker_pid()
    # Warm up: a genuine call, a few streams at once and a short round of fuzzing, so that the
    # worker's pools (request threads, background jobs, the synthesiser's thread) are as large as
    # the fuzzing below can make them; then take the baseline.
    assert _transfer_call(server).transfer["target"] == AGENT
    warm = [Caller(server) for _ in range(4)]
    for caller in warm:
        caller.live().pump(0.3)
    for caller in warm:
        caller.stream.close()
    _fuzz(Caller(server), WARM_UP_EXAMPLES, pid)
    baseline = _settle(pid)

    caller = Caller(server)
    _fuzz(caller, EXAMPLES, pid)
    assert caller.sent >= MIN_FRAMES, caller.sent
    assert caller.calls > 1                      # some frames ended a call, and a new one was taken

    assert urllib.request.urlopen(server.url + "/healthz", timeout=5).status == 200
    report = _transfer_call(server)             # the next genuine call is answered and reaches a person
    assert not report.timed_out and report.transfer["target"] == AGENT, report.events
    assert server.worker_pid() == pid
    assert _settle(pid, at_most=baseline) <= baseline, f"threads: {baseline} before, {threads(pid)} after"
    print(f"{caller.sent} frames on {caller.calls} calls; worker threads {baseline} -> {threads(pid)}, "
          f"RSS {rss_bytes(pid) // 2 ** 20} MB")
    log = server.output()
    failures = sorted({line for line in log.splitlines() if line.endswith(("Error", "Exception")) or "Error: " in line})
    assert "Traceback" not in log, f"the call loop raised: {failures}"
