"""Text messages go through the real twilio package, its REST client pointed at a local server."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from voicebot.config import load_settings
from voicebot.dialog.actions import SendSms
from voicebot.telephony.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
SID = "AC" + "1" * 32


class FakeTwilio(BaseHTTPRequestHandler):
    received: list[tuple[str, dict, str]] = []
    status = 201

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        FakeTwilio.received.append((self.path, urllib.parse.parse_qs(body), self.headers.get("Authorization", "")))
        reply = {"sid": "SM" + "0" * 32, "account_sid": SID, "status": "queued", "body": "x"} \
            if self.status == 201 else {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}
        data = json.dumps(reply).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    FakeTwilio.received, FakeTwilio.status = [], 201
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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


def test_summary_is_sent_as_a_text_message(api, redis_url, tmp_path):
    rt = runtime_for(api, redis_url, tmp_path)
    rt.send_sms("CA-sms", "+31850000000", SendSms(to="+31612345678", text="Samenvatting van uw gesprek: meterstand 12345."))
    wait_for(lambda: FakeTwilio.received)
    path, form, auth = FakeTwilio.received[0]
    assert path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert form == {"To": ["+31612345678"], "From": ["+31850000000"],
                    "Body": ["Samenvatting van uw gesprek: meterstand 12345."]}
    assert auth.startswith("Basic ")


def test_a_refused_text_message_is_logged_and_the_call_goes_on(api, redis_url, tmp_path, caplog):
    FakeTwilio.status = 400
    rt = runtime_for(api, redis_url, tmp_path)
    with caplog.at_level("ERROR", logger="voicebot.runtime"):
        rt.send_sms("CA-sms2", "+3185", SendSms(to="+32470123456", text="x"))
        wait_for(lambda: "text message failed" in caplog.text)
    assert "CA-sms2" in caplog.text and "tok" not in caplog.text
