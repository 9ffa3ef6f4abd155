"""Twilio's Messages API on a local port, as far as the twilio package needs it: the REST calls of
text messages go here (``TWILIO_API_BASE``) and each is kept for the test to read."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 65536


class _Messages(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self):
        api = self.server.api
        body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), MAX_BODY)).decode()
        api.received.append((self.path, urllib.parse.parse_qs(body), self.headers.get("Authorization", "")))
        reply = {"sid": "SM" + "0" * 32, "account_sid": api.account, "status": "queued", "body": "x"} \
            if api.status == 201 else {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}
        data = json.dumps(reply).encode()
        self.send_response(api.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    api: "TwilioMessages"


class TwilioMessages:
    """``with TwilioMessages(account) as api``: ``api.url`` is the base URL; ``api.received`` holds
    (path, form, Authorization) per request; ``api.status = 400`` makes Twilio refuse them."""

    def __init__(self, account: str):
        self.account = account
        self.status = 201
        self.received: list[tuple[str, dict[str, list[str]], str]] = []
        self._server = _Server(("127.0.0.1", 0), _Messages)
        self._server.api = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def forms(self) -> list[dict[str, list[str]]]:
        """The posted forms (To, From, Body, ...), in order."""
        return [form for _, form, _ in self.received]

    def __enter__(self) -> "TwilioMessages":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
