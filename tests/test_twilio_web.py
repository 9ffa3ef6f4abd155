"""Twilio's webhooks through the Flask app: signatures, TwiML, the after-stream decision, metrics."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from voicebot.config import load_settings
from voicebot.telephony.runtime import Runtime
from voicebot.telephony.stream_auth import stream_secret, stream_token, token_ok
from voicebot.web import create_app

REPO = Path(__file__).resolve().parent.parent
PUBLIC = "https://bot.example.com"
TOKEN = "test-auth-token"


@pytest.fixture(scope="module")
def base_settings(redis_url, tmp_path_factory):
    settings = load_settings(REPO / "config.yaml", environ={
        "REDIS_URL": redis_url, "PUBLIC_URL": PUBLIC, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": "AC1"})
    return dataclasses.replace(settings, flows_dir=REPO / "tests" / "data", default_flow="ko_test",
                               prompts=dataclasses.replace(settings.prompts,
                                                           cache_dir=tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def runtime(base_settings, speech_models):
    return Runtime(base_settings, models=speech_models)


def make_client(settings, runtime, **telephony):
    settings = dataclasses.replace(settings, telephony=dataclasses.replace(settings.telephony, **telephony))
    return create_app(settings, runtime=runtime).test_client()


@pytest.fixture
def client(base_settings, runtime):
    return make_client(base_settings, runtime)


def refused(runtime) -> float:
    """Requests refused for their signature so far (the counter behind voicebot_refused_requests_total)."""
    return runtime.metrics.registry.get_sample_value("voicebot_refused_requests_total") or 0.0


def scraped(client, sample: str) -> float:
    """One sample's value as GET /metrics shows it; 0 when absent."""
    for row in client.get("/metrics").data.decode().splitlines():
        if row.startswith(sample + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def post(client, path, params, *, token=TOKEN, url=None, signature=None):
    sig = signature if signature is not None else RequestValidator(token).compute_signature(url or PUBLIC + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": sig})


CALL = {"CallSid": "CA100", "AccountSid": "AC1", "From": "+31612345678", "To": "+31850000000",
        "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}


def test_incoming_call_connects_a_bidirectional_stream(client):
    response = post(client, "/twilio/voice", CALL)
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ET.fromstring(response.data)
    connect = root.find("Connect")
    assert connect.get("action") == f"{PUBLIC}/twilio/after-stream"
    stream = connect.find("Stream")
    assert stream.get("url") == "wss://bot.example.com/twilio/media" and "?" not in stream.get("url")
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    token = params.pop("token")
    assert params == {"from": "+31612345678", "to": "+31850000000", "flow": "ko_test"}
    assert token_ok(stream_secret("", TOKEN), "CA100", token) and not token_ok(stream_secret("", TOKEN), "CA101", token)



def test_an_incoming_call_records_the_version_of_the_flow_that_answers_it(client, runtime):
    assert post(client, "/twilio/voice", {**CALL, "CallSid": "CA-version"}).status_code == 200
    record = runtime.store.get("CA-version")
    flow = runtime.flow("ko_test")
    assert len(flow.version) == 12 and record["flow_version"] == flow.version and record["flow"] == "ko_test"


@pytest.mark.parametrize("how", ["forged", "missing", "wrong_token", "internal_url"])
def test_bad_signatures_are_refused(client, runtime, caplog, how):
    kwargs = {"forged": {"signature": "bm90IGEgc2lnbmF0dXJl"}, "missing": {"signature": ""},
              "wrong_token": {"token": "other-token"}, "internal_url": {"url": "http://localhost/twilio/voice"}}[how]
    before = refused(runtime)
    with caplog.at_level("WARNING", logger="voicebot.web"):
        response = post(client, "/twilio/voice", CALL, **kwargs)
    assert response.status_code == 403
    assert refused(runtime) == before + 1
    assert "bad or missing X-Twilio-Signature" in caplog.text


def test_tampered_parameters_are_refused(client, runtime):
    before = refused(runtime)
    sig = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/voice", CALL)
    response = client.post("/twilio/voice", data={**CALL, "From": "+31600000000"}, headers={"X-Twilio-Signature": sig})
    assert response.status_code == 403
    assert refused(runtime) == before + 1


def test_websocket_handshake_needs_the_signature_of_the_wss_url(client, runtime):
    before = refused(runtime)
    assert client.get("/twilio/media").status_code == 403
    sig = RequestValidator(TOKEN).compute_signature("https://bot.example.com/twilio/media", {})
    assert client.get("/twilio/media", headers={"X-Twilio-Signature": sig}).status_code == 403
    assert refused(runtime) == before + 2


def test_without_public_url_everything_is_refused(base_settings, runtime):
    client = make_client(base_settings, runtime, public_url="")
    before = refused(runtime)
    assert post(client, "/twilio/voice", CALL, url="http://localhost/twilio/voice").status_code == 403
    assert refused(runtime) == before + 1


@pytest.mark.parametrize("how", ["config", "env"])
def test_the_unsigned_mode_is_gone_and_says_what_replaced_it(tmp_path, how):
    from voicebot.errors import ConfigError

    config = tmp_path / "config.yaml"
    config.write_text("telephony: {verify_signatures: false}\n" if how == "config" else "{}\n")
    env = {"VOICEBOT_INSECURE_NO_SIGNATURES": "1"} if how == "env" else {}
    with pytest.raises(ConfigError, match="voicebot serve --dev"):
        load_settings(config, environ=env)


def test_malformed_webhook_gets_a_clear_error(client):
    response = post(client, "/twilio/voice", {"From": "+31612345678"})
    assert response.status_code == 400 and b"CallSid" in response.data


def test_after_stream_dials_the_agent_with_a_whisper(base_settings, runtime):
    client = make_client(base_settings, runtime, agent_number="+31201234567")
    runtime.store.update("CA200", flow="ko_test", language="ko", ending={
        "action": "transfer", "queue": "agents", "reason": "explicit_request",
        "context": {"call_id": "CA200", "summary": "주제 예약. 이유 고객이 상담원을 요청했습니다.", "after_hours": False}})
    response = post(client, "/twilio/after-stream", {**CALL, "CallSid": "CA200", "CallStatus": "in-progress"})
    root = ET.fromstring(response.data)
    dial = root.find("Dial")
    assert dial.get("answerOnBridge") == "true"
    number = dial.find("Number")
    assert number.text == "+31201234567"
    whisper_url = number.get("url")
    token = stream_token(stream_secret("", TOKEN), "CA200")
    assert whisper_url == f"{PUBLIC}/twilio/whisper?call=CA200&token={token}"
    path = whisper_url[len(PUBLIC):]
    sig = RequestValidator(TOKEN).compute_signature(whisper_url, {"CallSid": "CA-agent"})
    whisper = client.post(path, data={"CallSid": "CA-agent"}, headers={"X-Twilio-Signature": sig})
    say = ET.fromstring(whisper.data).find("Say")
    assert say.text.startswith("주제 예약") and say.get("language") == "ko-KR"


def test_an_after_hours_transfer_skips_the_dial_and_offers_a_call_back(base_settings, runtime):
    client = make_client(base_settings, runtime, agent_number="+31201234567")
    runtime.store.update("CA-closed", flow="ko_test", language="ko", caller="+31612345678", ending={
        "action": "transfer", "queue": "evening", "reason": "explicit_request",
        "context": {"call_id": "CA-closed", "summary": "x", "after_hours": True}})
    response = post(client, "/twilio/after-stream", {**CALL, "CallSid": "CA-closed", "CallStatus": "in-progress"})
    root = ET.fromstring(response.data)
    assert root.find("Dial") is None and root.find("Enqueue") is None
    assert root.find("Gather").get("action") == f"{PUBLIC}/twilio/unreachable?why=after_hours&offer=1"


def test_after_stream_without_a_decision_is_handed_over_by_the_engine_with_its_context(base_settings, runtime):
    client = make_client(base_settings, runtime, agent_number="+31201234567")
    response = post(client, "/twilio/after-stream", {**CALL, "CallSid": "CA-undecided", "CallStatus": "in-progress"})
    root = ET.fromstring(response.data)
    assert root.find("Say").text and root.find("Dial/Number").text == "+31201234567"
    ending = runtime.store.get("CA-undecided")["ending"]
    assert ending["reason"] == "error" and ending["context"]["call_id"] == "CA-undecided"
    assert ending["context"]["summary"] and "transcript" in ending["context"]


def test_after_stream_to_a_sip_address_or_a_queue(base_settings, runtime):
    runtime.store.update("CA201", flow="ko_test", ending={"action": "transfer", "queue": "agents", "context": {}})
    sip = make_client(base_settings, runtime, agent_sip="sip:agents@pbx.example.com")
    root = ET.fromstring(post(sip, "/twilio/after-stream", {**CALL, "CallSid": "CA201"}).data)
    assert root.find("Dial/Sip").text == "sip:agents@pbx.example.com"
    queue = make_client(base_settings, runtime)
    root = ET.fromstring(post(queue, "/twilio/after-stream", {**CALL, "CallSid": "CA201"}).data)
    assert root.find("Enqueue").text == "agents"


def test_after_stream_hangs_up_when_the_bot_said_goodbye(client, runtime):
    runtime.store.update("CA202", flow="ko_test", ending={"action": "hangup", "reason": "completed"})
    root = ET.fromstring(post(client, "/twilio/after-stream", {**CALL, "CallSid": "CA202"}).data)
    assert root.find("Hangup") is not None and root.find("Dial") is None


def test_after_stream_without_a_decision_is_never_a_dead_end(client):
    root = ET.fromstring(post(client, "/twilio/after-stream", {**CALL, "CallSid": "CA-unknown"}).data)
    assert root.find("Say").text and root.find("Enqueue").text == "agents"


def test_an_unanswered_agent_is_never_a_dead_end(client, runtime):
    runtime.store.update("CA203", flow="ko_test", caller="+31612345678", ending={"action": "transfer", "queue": "agents"})
    root = ET.fromstring(post(client, "/twilio/dial-status",
                              {**CALL, "CallSid": "CA203", "DialCallStatus": "no-answer"}).data)
    assert root.find("Gather/Say").text          # told, and offered a call back or a text (test_no_answer.py)


def test_status_callback_finalises_and_metrics_show_it(client, runtime):
    calls, refusals = scraped(client, "voicebot_calls_total"), scraped(client, "voicebot_refused_requests_total")
    assert post(client, "/twilio/voice", {**CALL, "CallSid": "CA205"}).status_code == 200
    assert post(client, "/twilio/voice", CALL, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    runtime.store.update("CA204", flow="ko_test", state={"failures": [{"step": "booking", "kind": "no_input"}]})
    response = post(client, "/twilio/status", {**CALL, "CallSid": "CA204", "CallStatus": "completed",
                                               "CallDuration": "42"})
    assert response.status_code == 204
    assert runtime.store.get("CA204")["finished"] is True
    assert post(client, "/twilio/stream-status", {"CallSid": "CA204", "StreamEvent": "stream-stopped"}).status_code == 204
    assert scraped(client, "voicebot_calls_total") == calls + 1
    assert scraped(client, "voicebot_refused_requests_total") == refusals + 1
    assert scraped(client, 'voicebot_caller_failures_total{flow="ko_test",kind="no_input",step="booking"}') == 1
    text = client.get("/metrics").data.decode()
    for name in ("voicebot_active_calls", "voicebot_turns_total", "voicebot_recognition_seconds_bucket",
                 "voicebot_response_seconds_bucket", "voicebot_transfers_total",
                 "voicebot_handoff_delay_seconds_count", "voicebot_webhook_given_up_total", "voicebot_webhook_failing"):
        assert name in text      # exported from the start; calls move them (test_call_session, test_phone_e2e,
                                 # the worker's figures: test_worker, test_webhooks)
