"""Text messages go through the real twilio package, its REST client pointed at a local server."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from fake_twilio import TwilioMessages

from voicebot.config import load_settings
from voicebot.dialog.actions import SendSms
from voicebot.telephony.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
SID = "AC" + "1" * 32


@pytest.fixture
def twilio():
    with TwilioMessages(SID) as fake:
        yield fake




def runtime_for(api_base: str, redis_url: str, tmp_path) -> Runtime:
    settings = load_settings(REPO / "config.yaml", environ={
        "REDIS_URL": redis_url, "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "tok", "TWILIO_API_BASE": api_base})
    settings = dataclasses.replace(settings, flows_dir=REPO / "tests" / "data", default_flow="mini",
                                   prompts=dataclasses.replace(settings.prompts, cache_dir=tmp_path))
    return Runtime(settings)


def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_summary_is_sent_as_a_text_message(twilio, redis_url, tmp_path):
    rt = runtime_for(twilio.url, redis_url, tmp_path)
    rt.send_sms("CA-sms", "+31850000000", SendSms(to="+31612345678", text="Samenvatting van uw gesprek: meterstand 12345."))
    wait_for(lambda: twilio.received)
    path, form, auth = twilio.received[0]
    assert path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert form == {"To": ["+31612345678"], "From": ["+31850000000"],
                    "Body": ["Samenvatting van uw gesprek: meterstand 12345."]}
    assert auth.startswith("Basic ")


def test_a_refused_text_message_is_logged_and_the_call_goes_on(twilio, redis_url, tmp_path, caplog):
    twilio.status = 400
    rt = runtime_for(twilio.url, redis_url, tmp_path)
    with caplog.at_level("ERROR", logger="voicebot.runtime"):
        rt.send_sms("CA-sms2", "+3185", SendSms(to="+32470123456", text="x"))
        wait_for(lambda: "text message failed" in caplog.text)
    assert "CA-sms2" in caplog.text and "tok" not in caplog.text
