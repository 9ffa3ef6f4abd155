"""Whole calls end to end: `voicebot serve` under gunicorn on a free port, a real redis-server, the
real Korean Vosk model, and `voicebot call`'s Twilio emulator on the other side."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import redis
from jsonschema import Draft202012Validator
from twilio.request_validator import RequestValidator

from conftest import _free_port
from servers import ACCOUNT, AGENT, REPO, TOKEN, Server
from voicebot.emulator import WebhookRefused, place_call
from voicebot.emulator.record import said_by_bot
from voicebot.handoff.queueing import handoff_queue
from voicebot.telephony.stream_auth import stream_secret, stream_token


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url):
    srv = Server(tmp_path_factory.mktemp("e2e"), redis_url, "main")
    yield srv
    srv.stop()


def call(server, turns, **kw):
    return place_call(server.url, turns, auth_token=TOKEN, account_sid=ACCOUNT, voice="ko", max_seconds=60,
                      redis_url=server.redis_url, **kw)


def test_a_whole_call_with_barge_in_keys_and_a_transfer_with_whisper(server, redis_url, tmp_path):
    record = tmp_path / "bot.wav"
    report = call(server, [{"say": "예약", "barge_in": 1.0}, {"dtmf": "123#"}, {"say": "상담원 연결해 주세요"}],
                  record=str(record))
    assert not report.timed_out, report.events
    assert not report.failures, report.failures        # every message we sent had the documented shape
    assert report.clears >= 1                                   # the caller talked over the opening
    assert report.marks and all(mark.isdigit() for mark in report.marks)   # the line never carries a prompt's text
    said = report.bot_prompts                                                # the server's record of the call does
    assert "번호를 눌러 주세요" in said and "맞습니까" in said    # choice by voice, then keys
    assert said[-1] == "상담원에게 연결해 드리겠습니다"
    token = stream_token(stream_secret("", TOKEN), report.call_sid)
    assert report.transfer == {"kind": "number", "target": AGENT, "answer_on_bridge": True,
                               "whisper_url": f"{server.url}/twilio/whisper?call={report.call_sid}&token={token}"}
    assert report.whisper_text and "고객이 상담원을 요청했습니다" in report.whisper_text
    assert all(lat is not None and lat < 5 for lat in report.latencies)
    assert record.stat().st_size > 8000
    # The agent's context went through RQ: a real worker delivers it.
    connection = redis.Redis.from_url(redis_url)
    job = handoff_queue(connection, "handoff").fetch_job(f"handoff-{report.call_sid}")
    assert job is not None
    subprocess.run([sys.executable, "-m", "voicebot", "worker", "--burst"], check=True, timeout=60,
                   env={**os.environ, "REDIS_URL": redis_url}, capture_output=True)
    context = json.loads(connection.get(f"voicebot:handoff:{report.call_sid}"))
    assert context["reason"] == "explicit_request" and context["slots"] == {"booking": "reserve", "number": "123"}
    assert context["summary"] and context["transcript"]
    # The published record: valid against docs/handoff.schema.json, with the caller's wait, on the queue's stream.
    schema = json.loads((REPO / "docs" / "handoff.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator(schema).validate(context)
    assert context["waited_seconds"] is not None and context["waited_seconds"] >= 0
    assert any(t.get("confidence") for t in context["transcript"] if t["who"] == "caller")
    stream = connection.xrange(f"voicebot:handoff:stream:{context['queue']}")
    entries = [json.loads(fields[b"context"]) for _, fields in stream]
    assert [e for e in entries if e["call_id"] == report.call_sid] == [context]
    metrics = urllib.request.urlopen(server.url + "/metrics").read().decode()
    assert 'voicebot_transfers_total{reason="explicit_request"}' in metrics


def test_forged_signatures_are_refused_for_webhook_and_socket(server):
    with pytest.raises(WebhookRefused):
        place_call(server.url, [], auth_token="wrong-token", voice="ko", max_seconds=5)
    import simple_websocket

    bad = RequestValidator("wrong-token").compute_signature(f"ws://127.0.0.1:{server.port}/twilio/media", {})
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        simple_websocket.Client.connect(f"ws://127.0.0.1:{server.port}/twilio/media",
                                        headers={"X-Twilio-Signature": bad})
    assert refused.value.status_code == 403
    assert "bad or missing X-Twilio-Signature" in server.output()


def test_bad_stream_input_over_a_real_socket(server):
    import simple_websocket

    url = f"ws://127.0.0.1:{server.port}/twilio/media"
    ws = simple_websocket.Client.connect(url, headers={
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})})
    frame = base64.b64encode(b"\xff" * 160).decode()
    for message in ["{not json", json.dumps({"event": "media", "streamSid": "MZ9", "media": {"payload": frame}}),
                    json.dumps({"event": "surprise"}), json.dumps([1, 2])]:
        ws.send(message)
    ws.send(json.dumps({"event": "start", "streamSid": "MZ9", "start": {
        "streamSid": "MZ9", "callSid": "CA-e2e-bad", "accountSid": ACCOUNT,
        "customParameters": {"from": "+8210", "to": "+8220", "flow": "ko_test",
                             "token": stream_token(stream_secret("", TOKEN), "CA-e2e-bad")}}}))
    for message in [json.dumps({"event": "media", "streamSid": "MZ-wrong", "media": {"payload": frame}}),
                    json.dumps({"event": "media", "streamSid": "MZ9", "media": {"payload": "%%%"}}),
                    json.dumps({"event": "media", "streamSid": "MZ9", "media": {"payload": "A" * 50000}}),
                    json.dumps({"event": "dtmf", "streamSid": "MZ9", "dtmf": {"digit": "0"}})]:
        ws.send(message)
    marks, closed = [], False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            raw = ws.receive(timeout=0.5)
        except simple_websocket.ConnectionClosed:
            closed = True
            break
        if raw:
            message = json.loads(raw)
            if message["event"] == "mark":
                marks.append(message["mark"]["name"])
                ws.send(json.dumps({"event": "mark", "streamSid": "MZ9", "mark": message["mark"]}))
    assert closed and marks and all(mark.isdigit() for mark in marks)
    said, _ = said_by_bot(server.redis_url, "CA-e2e-bad")
    assert said and said[-1] == "상담원에게 연결해 드리겠습니다"
    log = server.output()
    for kind in ("not_json", "before_start", "unknown_event", "not_object", "wrong_stream", "payload_not_base64",
                 "payload_oversized"):
        assert f"bad stream message: {kind}" in log
    assert urllib.request.urlopen(server.url + "/healthz").status == 200


def test_with_redis_down_the_call_still_reaches_a_person(tmp_path):
    dead = f"redis://127.0.0.1:{_free_port()}/0"
    srv = Server(tmp_path, dead, "noredis")
    try:
        report = call(srv, [{"dtmf": "0"}])
        assert report.transfer and report.transfer["target"] == AGENT
        assert "Redis" in srv.output()
    finally:
        srv.stop()


def test_call_command_runs_a_scenario_file(server):
    from click.testing import CliRunner

    from voicebot.cli import main

    result = CliRunner().invoke(main, ["call", "--server", server.url, "--auth-token", TOKEN, "--account-sid", ACCOUNT,
                                       "--script", str(REPO / "tests" / "data" / "calls" / "ko_call.yaml"),
                                       "--redis-url", server.redis_url])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "transfer" in result.output
