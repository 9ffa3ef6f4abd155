"""The server as an attacker meets it: forged webhooks and streams, idle sockets, huge bodies, replays,
text messages to anywhere, and metrics in the open.

The first half drives the Flask app and the runtime directly (with the session's real Redis); the
second half runs `voicebot serve` under gunicorn and talks to it over real TCP sockets.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from twilio.request_validator import RequestValidator

from conftest import _free_port
import servers
from voicebot.config import load_settings
from voicebot.dialog.actions import SendSms
from voicebot.telephony.logsafe import esc, mask_number
from voicebot.telephony.runtime import Runtime
from voicebot.telephony.sms import DailyLimit, country_problem
from voicebot.telephony.stream_auth import StreamClaims, stream_secret, stream_token, token_ok
from voicebot.web import create_app

REPO = Path(__file__).resolve().parent.parent
PUBLIC = "https://bot.example.com"
TOKEN = "hardening-auth-token"
ACCOUNT = "AC" + "7" * 32
SECRET = stream_secret("", TOKEN)


def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{_free_port()}/0"


def start(call_sid: str, token: str | None = None, account: str = ACCOUNT, stream: str = "MZ1") -> SimpleNamespace:
    """What the session hands to admit_stream: a stream_codec.Start's fields."""
    params = {"flow": "ko_test"} if token is None else {"flow": "ko_test", "token": token}
    return SimpleNamespace(call_sid=call_sid, account_sid=account, stream_sid=stream, parameters=params)


def make_settings(redis_url: str, tmp_path: Path, **telephony):
    settings = load_settings(REPO / "config.yaml", environ={
        "REDIS_URL": redis_url, "PUBLIC_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT})
    return dataclasses.replace(settings, flows_dir=REPO / "tests" / "data", default_flow="ko_test",
                               prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path),
                               telephony=dataclasses.replace(settings.telephony, **telephony))


@pytest.fixture
def runtime(redis_url, tmp_path):
    return Runtime(make_settings(redis_url, tmp_path))


def sign(path: str, params: dict, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(PUBLIC + path, params)


def metric(rt: Runtime, name: str, **labels) -> float:
    value = rt.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


# -- the stream token -------------------------------------------------------------------------------

def test_the_token_proves_one_call_and_every_node_derives_the_same_secret():
    token = stream_token(SECRET, "CA1")
    assert token_ok(SECRET, "CA1", token)
    assert not token_ok(SECRET, "CA2", token)
    assert not token_ok(SECRET, "CA1", token.upper()) and not token_ok(SECRET, "CA1", "") \
        and not token_ok(SECRET, "CA1", None) and not token_ok(SECRET, "CA1", ["x"])
    assert stream_secret("", TOKEN) == SECRET and SECRET != TOKEN.encode()          # derived, not the token
    assert stream_secret("explicit", TOKEN) == b"explicit"
    assert not token_ok(stream_secret("", ""), "CA1", stream_token(b"", "CA1"))      # nothing configured


def test_admit_stream_refuses_forged_starts_and_counts_them(runtime, caplog):
    good = runtime.call_token("CA-a")
    with caplog.at_level(logging.WARNING, logger="voicebot.runtime"):
        assert runtime.admit_stream(start("CA-a")) == "bad_token"                            # no token at all
        assert runtime.admit_stream(start("CA-a", runtime.call_token("CA-b"))) == "bad_token"  # another call's
        assert runtime.admit_stream(start("CA-a", good, account="AC" + "6" * 32)) == "wrong_account"
        assert runtime.admit_stream(start("CA-a", good)) is None
        assert runtime.admit_stream(start("CA-a", good, stream="MZ2")) == "already_live"
        assert runtime.admit_stream(start("CA-a\nINFO forged line", good)) == "bad_token"
    assert "\nINFO forged line" not in caplog.text and "'CA-a\\nINFO forged line'" in caplog.text
    for kind, count in (("bad_token", 3), ("wrong_account", 1), ("already_live", 1)):
        assert metric(runtime, "voicebot_refused_streams_total", kind=kind) == count
    assert runtime.live_streams() == 1
    runtime.release_stream("CA-a")
    assert runtime.live_streams() == 0 and runtime.admit_stream(start("CA-a", good, stream="MZ3")) is None
    runtime.release_stream("CA-a")


def test_admit_stream_refuses_past_max_calls(redis_url, tmp_path):
    rt = Runtime(make_settings(redis_url, tmp_path, max_calls=1))
    assert rt.admit_stream(start("CA-f1", rt.call_token("CA-f1"))) is None
    assert rt.at_capacity()
    assert rt.admit_stream(start("CA-f2", rt.call_token("CA-f2"))) == "full"
    assert metric(rt, "voicebot_refused_streams_total", kind="full") == 1
    rt.release_stream("CA-f1")
    assert not rt.at_capacity() and rt.admit_stream(start("CA-f2", rt.call_token("CA-f2"))) is None
    rt.release_stream("CA-f2")


def test_one_live_stream_per_call_across_nodes_and_in_memory_without_redis(redis_url):
    one, two = (StreamClaims(redis.Redis.from_url(redis_url)) for _ in range(2))
    assert one.claim("CA-n") and not two.claim("CA-n")
    two.release("CA-n")                          # not its claim: nothing happens
    assert not two.claim("CA-n")
    assert redis.Redis.from_url(redis_url).ttl("voicebot:stream:CA-n") > 0     # lapses if the node dies
    one.release("CA-n")
    assert two.claim("CA-n")
    two.release("CA-n")
    alone = StreamClaims(redis.Redis.from_url(dead_redis_url(), socket_timeout=0.2, socket_connect_timeout=0.2))
    assert alone.claim("CA-m") and not alone.claim("CA-m") and alone.live() == 1
    alone.release("CA-m")
    assert alone.live() == 0 and alone.claim("CA-m")


# -- webhooks: signatures, the whisper's call, replays, capacity ------------------------------------

WEBHOOKS = [("/twilio/voice", {"CallSid": "CA-h", "From": "+31612345678", "To": "+31850000000"}),
            ("/twilio/after-stream", {"CallSid": "CA-h"}),
            ("/twilio/whisper?call=CA-h", {"CallSid": "CA-agent", "ParentCallSid": "CA-h"}),
            ("/twilio/status", {"CallSid": "CA-h", "CallStatus": "completed"}),
            ("/twilio/dial-status", {"CallSid": "CA-h", "DialCallStatus": "no-answer"}),
            ("/twilio/unreachable?why=no-answer&offer=1", {"CallSid": "CA-h", "Digits": "1"}),
            ("/twilio/queue-pickup", {"CallSid": "CA-h", "DequeingCallSid": "CA-agent", "QueueTime": "3"}),
            ("/twilio/stream-status", {"CallSid": "CA-h", "StreamEvent": "stream-started"})]


@pytest.fixture
def app(runtime):
    return create_app(runtime.settings, runtime=runtime)


@pytest.mark.parametrize("path,params", WEBHOOKS, ids=[p.split("?")[0].rsplit("/", 1)[1] for p, _ in WEBHOOKS])
@pytest.mark.parametrize("how", ["unsigned", "forged", "other_token", "tampered"])
def test_every_webhook_is_refused_unsigned_or_forged(app, runtime, caplog, path, params, how):
    headers = {"unsigned": {}, "forged": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
               "other_token": {"X-Twilio-Signature": sign(path, params, "other-token")},
               "tampered": {"X-Twilio-Signature": sign(path, {**params, "CallSid": "CA-other"})}}[how]
    before = metric(runtime, "voicebot_refused_requests_total")
    with caplog.at_level(logging.WARNING, logger="voicebot.web"):
        response = app.test_client().post(path, data=params, headers=headers)
    assert response.status_code == 403
    assert metric(runtime, "voicebot_refused_requests_total") == before + 1
    assert "bad or missing X-Twilio-Signature" in caplog.text
    assert "+31612345678" not in caplog.text and "CA-h" not in caplog.text      # no body values in the log
    assert runtime.store.get("CA-h") is None


def test_the_whisper_cannot_be_pointed_at_another_call(app, runtime):
    runtime.store.update("CA-w1", flow="ko_test", language="ko", ending={"context": {"summary": "비밀 요약"}})
    client = app.test_client()

    def whisper(query: str, params: dict):
        return client.post("/twilio/whisper?" + query, data=params,
                           headers={"X-Twilio-Signature": sign("/twilio/whisper?" + query, params)})

    leg = {"CallSid": "CA-agent"}
    before = metric(runtime, "voicebot_refused_requests_total")
    assert whisper("call=CA-w1", leg).status_code == 403                                        # no token
    assert whisper(f"call=CA-w1&token={runtime.call_token('CA-w2')}", leg).status_code == 403   # another call's
    ok = f"call=CA-w1&token={runtime.call_token('CA-w1')}"
    assert whisper(ok, {**leg, "ParentCallSid": "CA-w2"}).status_code == 403                   # not its parent
    assert metric(runtime, "voicebot_refused_requests_total") == before + 3
    response = whisper(ok, {**leg, "ParentCallSid": "CA-w1"})
    assert response.status_code == 200 and "비밀 요약" in response.data.decode()


def test_replayed_webhooks_for_a_finished_call_change_nothing(app, runtime, redis_url):
    client = app.test_client()
    status = {"CallSid": "CA-r", "CallStatus": "completed", "CallDuration": "30"}
    runtime.store.update("CA-r", flow="ko_test")
    assert client.post("/twilio/status", data=status,
                       headers={"X-Twilio-Signature": sign("/twilio/status", status)}).status_code == 204
    record = runtime.store.get("CA-r")
    assert record["finished"] is True
    r = redis.Redis.from_url(redis_url)
    r.expire("voicebot:call:CA-r", 100)
    for path, params in (("/twilio/status", {**status, "CallStatus": "in-progress"}),
                         ("/twilio/voice", {"CallSid": "CA-r", "From": "+31600000000", "To": "+3185"})):
        response = client.post(path, data=params, headers={"X-Twilio-Signature": sign(path, params)})
        assert response.status_code in (200, 204)
    assert ET.fromstring(response.data).find("Hangup") is not None        # the replayed call is not answered again
    assert runtime.store.get("CA-r") == record
    assert 0 < r.ttl("voicebot:call:CA-r") <= 100                           # no TTL renewed
    assert metric(runtime, "voicebot_replayed_webhooks_total") == 2


def test_a_caller_over_capacity_hears_a_message_and_waits_in_the_queue(redis_url, tmp_path):
    rt = Runtime(make_settings(redis_url, tmp_path, max_calls=1))
    assert rt.admit_stream(start("CA-live", rt.call_token("CA-live"))) is None
    client = create_app(rt.settings, runtime=rt).test_client()
    params = {"CallSid": "CA-over", "From": "+31612345678", "To": "+31850000000"}
    response = client.post("/twilio/voice", data=params, headers={"X-Twilio-Signature": sign("/twilio/voice", params)})
    root = ET.fromstring(response.data)
    assert root.find("Connect") is None and root.find("Say").text and root.find("Enqueue").text == "agents"
    assert metric(rt, "voicebot_calls_over_capacity_total") == 1
    rt.release_stream("CA-live")
    response = client.post("/twilio/voice", data={**params, "CallSid": "CA-room"},
                           headers={"X-Twilio-Signature": sign("/twilio/voice", {**params, "CallSid": "CA-room"})})
    assert ET.fromstring(response.data).find("Connect/Stream") is not None


def test_large_bodies_are_refused_from_their_length(app):
    response = app.test_client().post("/twilio/voice", data=b"x" * (1 << 20),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


def test_metrics_behind_a_bearer_token(runtime):
    app = create_app(dataclasses.replace(runtime.settings, metrics_token="s3cret"), runtime=runtime)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200 and b"voicebot_refused_streams_total" in response.data


def test_log_values_are_escaped_and_cut():
    assert esc("CA1\r\nERROR x") == "'CA1\\r\\nERROR x'"
    assert esc("\x1b[31mred") == "'\\x1b[31mred'"
    long = esc("A" * 5000)
    assert len(long) < 100 and long.endswith("…(+4936)")
    assert esc(None) == "-" and mask_number("+31612345678") == "+316******78"


# -- text messages ------------------------------------------------------------------------------------

def test_text_messages_only_to_allowed_countries():
    assert country_problem("+31612345678", ("NL", "BE")) is None
    assert country_problem("+32470123456", ("NL", "BE")) is None
    assert country_problem("+447700900123", ("NL", "BE")) == "country"
    assert country_problem("+447700900123", ("NL", "GB")) is None
    for bad in ("0612345678", "+1", "+31 6 1234", "anonymous", "", "+3161234567890123456"):
        assert country_problem(bad, ("NL",)) == "not_e164"


@pytest.mark.parametrize("where", ["redis", "memory"])
def test_at_most_a_few_text_messages_per_number_per_day(redis_url, where):
    url = redis_url if where == "redis" else dead_redis_url()
    client = redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
    number = f"+3161{time.time_ns() % 10**7:07d}"
    limit = DailyLimit(client, 3)
    assert [limit.take(number) for _ in range(5)] == [True, True, True, False, False]
    other = number[:-1] + ("8" if number.endswith("9") else "9")       # never the same number
    assert limit.take("+31699999999" if where == "memory" else other)
    if where == "redis":                       # shared by every node, and no phone number in Redis keys
        assert not DailyLimit(client, 3).take(number)
        assert not any(number[1:] in k.decode() for k in client.keys("voicebot:sms:*"))
        # Keyed with the salt: a plain hash of the number (undone by hashing every number) is not there either.
        assert DailyLimit(client, 3, salt="s" * 32).take(number)      # another salt, another key
        plain = hashlib.sha256(number.encode()).hexdigest()[:32]
        assert not [k for k in client.keys("voicebot:sms:*") if k.decode().endswith(plain)]


def test_refused_text_messages_are_masked_and_counted(runtime, caplog):
    with caplog.at_level(logging.WARNING, logger="voicebot.sms"):
        assert not runtime.sms.send("CA-s", "+31850000000", SendSms(to="+447700900123", text="x"))
        assert not runtime.sms.send("CA-s", "+31850000000", SendSms(to="+31 6 12", text="x"))
    assert metric(runtime, "voicebot_sms_refused_total", reason="country") == 1
    assert metric(runtime, "voicebot_sms_refused_total", reason="not_e164") == 1
    assert "+447700900123" not in caplog.text and "+447*******23" in caplog.text


# -- over real sockets, against `voicebot serve` under gunicorn ----------------------------------------

class Server(servers.Server):
    def __init__(self, tmp: Path, redis_url: str):
        super().__init__(tmp, redis_url, "hardening", token=TOKEN, account=ACCOUNT,
                         telephony="max_pending_streams: 8, start_timeout_seconds: 3.0")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio/media"

    def ws_signature(self, token: str = TOKEN) -> str:
        return RequestValidator(token).compute_signature(self.ws_url, {})


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    srv = Server(tmp_path_factory.mktemp("hardening"), redis_url)
    yield srv
    srv.stop()


def raw_handshake(port: int, signature: str | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /twilio/media HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if signature:
        lines.append(f"X-Twilio-Signature: {signature}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def status_of(sock: socket.socket) -> int:
    """The HTTP status of the answer on ``sock`` (read up to the end of its headers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def signed_voice(server: Server, call_sid: str, timeout: float = 10) -> ET.Element:
    params = {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": "+31612345678", "To": "+31850000000",
              "CallStatus": "ringing"}
    request = urllib.request.Request(
        server.url + "/twilio/voice", data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(server.url + "/twilio/voice",
                                                                                 params)})
    return ET.fromstring(urllib.request.urlopen(request, timeout=timeout).read())


def open_stream(server: Server, call_sid: str, parameters: dict, account: str = ACCOUNT, stream: str = "MZ1"):
    import simple_websocket

    ws = simple_websocket.Client.connect(server.ws_url, headers={"X-Twilio-Signature": server.ws_signature()})
    ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream, "start": {
        "streamSid": stream, "callSid": call_sid, "accountSid": account, "tracks": ["inbound"],
        "customParameters": parameters, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                        "channels": 1}}}))
    return ws


def media_until_closed(ws, seconds: float = 10.0) -> tuple[int, bool]:
    """(bytes of bot audio received, whether the server closed the socket) within ``seconds``."""
    import simple_websocket

    audio, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            raw = ws.receive(timeout=0.2)
        except simple_websocket.ConnectionClosed:
            return audio, True
        if raw:
            message = json.loads(raw)
            if message.get("event") == "media":
                audio += len(base64.b64decode(message["media"]["payload"]))
    return audio, False


def test_the_socket_handshake_is_refused_with_403_for_a_bad_signature(server):
    for signature in (None, server.ws_signature("wrong-token"),
                      RequestValidator(TOKEN).compute_signature(f"http://127.0.0.1:{server.port}/twilio/media", {})):
        with raw_handshake(server.port, signature) as sock:
            assert status_of(sock) == 403
    import simple_websocket

    with pytest.raises(simple_websocket.ConnectionError) as refused:
        simple_websocket.Client.connect(server.ws_url, headers={"X-Twilio-Signature": server.ws_signature("x")})
    assert refused.value.status_code == 403


@pytest.mark.parametrize("case", ["no_token", "other_calls_token", "wrong_account", "no_parameters"])
def test_forged_starts_get_no_audio_and_are_counted(server, case):
    root = signed_voice(server, "CA-victim-" + case)
    params = {p.get("name"): p.get("value") for p in root.findall("Connect/Stream/Parameter")}
    other = {p.get("name"): p.get("value")
             for p in signed_voice(server, "CA-attacker-" + case).findall("Connect/Stream/Parameter")}
    parameters, account, kind = {
        "no_token": ({k: v for k, v in params.items() if k != "token"}, ACCOUNT, "bad_token"),
        "other_calls_token": (other, ACCOUNT, "bad_token"),
        "wrong_account": (params, "AC" + "6" * 32, "wrong_account"),
        "no_parameters": ({}, ACCOUNT, "bad_token"),
    }[case]
    line = f'voicebot_refused_streams_total{{kind="{kind}"}}'
    before = server.metric(line)
    ws = open_stream(server, "CA-victim-" + case, parameters, account=account)
    audio, closed = media_until_closed(ws)
    assert closed and audio == 0
    assert server.metric(line) == before + 1
    stored = redis.Redis.from_url(server.redis_url).hgetall(f"voicebot:call:CA-victim-{case}")
    assert stored and b"state" not in stored                           # nothing of the call was touched


def test_a_second_stream_for_a_live_call_is_refused(server):
    root = signed_voice(server, "CA-twice")
    params = {p.get("name"): p.get("value") for p in root.findall("Connect/Stream/Parameter")}
    first = open_stream(server, "CA-twice", params)
    audio, _ = media_until_closed(first, seconds=3)
    assert audio > 0                                                  # the genuine stream is greeted
    before = server.metric('voicebot_refused_streams_total{kind="already_live"}')
    second = open_stream(server, "CA-twice", params, stream="MZ2")
    audio2, closed = media_until_closed(second)
    assert closed and audio2 == 0
    assert server.metric('voicebot_refused_streams_total{kind="already_live"}') == before + 1
    first.close()


def test_idle_sockets_do_not_stop_a_new_call_from_being_answered(server):
    sockets = [raw_handshake(server.port, server.ws_signature()) for _ in range(48)]
    try:
        root = signed_voice(server, "CA-after-idle", timeout=10)   # answered while 48 sockets sit idle
        assert root.find("Connect/Stream") is not None
        statuses = [status_of(sock) for sock in sockets]
        assert set(statuses) <= {101, 503} and 0 < statuses.count(101) <= 8
        held = [sock for sock, status in zip(sockets, statuses) if status == 101]
        held[0].settimeout(20)
        while held[0].recv(4096):                                 # closed by the server: no start in time
            pass
    finally:
        for sock in sockets:
            sock.close()
    assert server.metric('voicebot_closed_sockets_total{reason="too_many_pending"}') >= 40
    deadline = time.monotonic() + 20
    while server.metric('voicebot_closed_sockets_total{reason="no_start"}') < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_16_mb_body_is_refused_without_reading_it(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall((f"POST /twilio/voice HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\n"
                      f"Content-Length: {16 * 1024 * 1024}\r\n\r\n").encode() + b"x" * 65536)
        assert status_of(sock) == 413
    assert urllib.request.urlopen(server.url + "/healthz", timeout=5).status == 200


def test_without_any_secret_every_stream_and_handshake_is_refused(redis_url, tmp_path):
    settings = make_settings(redis_url, tmp_path)
    bare = Runtime(dataclasses.replace(settings, telephony=dataclasses.replace(
        settings.telephony, auth_token="", account_sid="", stream_secret="")))
    assert bare.admit_stream(start("CA-bare")) == "bad_token"      # fails closed: no token can prove a call
    client = create_app(bare.settings, runtime=bare).test_client()
    assert client.get("/twilio/media", headers={"X-Twilio-Signature": "anything"}).status_code == 403


def test_while_the_app_is_built_the_port_answers_503_starting():
    from voicebot.web import _Starting

    port = _free_port()
    with _Starting("127.0.0.1", port):
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert answer.value.code == 503 and json.loads(answer.value.read())["ready"] is False
    with socket.socket() as sock:                       # the port is free again for gunicorn
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_metrics_on_a_loopback_port_of_their_own(runtime):
    from voicebot.web import start_metrics_server

    settings = dataclasses.replace(runtime.settings, metrics_port=_free_port())
    assert create_app(settings, runtime=runtime).test_client().get("/metrics").status_code == 404
    served = start_metrics_server(settings, runtime)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5).read()
        assert b"voicebot_refused_requests_total" in text
    finally:
        if isinstance(served, tuple):
            served[0].shutdown()
