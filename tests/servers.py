"""`voicebot serve` under gunicorn on a free port, for tests and benchmarks that need a live server.

The server uses the real Korean flow of tests/data and a real redis-server; several of them can
share one Redis and one public URL, as nodes behind a load balancer do.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import simple_websocket
from twilio.request_validator import RequestValidator

from conftest import _free_port

REPO = Path(__file__).resolve().parent.parent
TOKEN = "e2e-auth-token"
SALT = "e2e-hash-salt-" + "5" * 32
"""One salt for every node: hashes one node writes (lockouts, unfinished calls) another must find."""
AGENT = "+31201234567"
ACCOUNT = "AC" + "0" * 32
START_TIMEOUT = 180.0
"""Loading flows, the model and prompts takes ~20 s on an idle 2-core machine; far longer when it is busy."""
SILENCE = base64.b64encode(b"\xff" * 160).decode()
"""20 ms of phone-line silence, as a media payload."""


class Server:
    """One `voicebot serve` process; ``public_url`` is the address Twilio signs for (default: its own)."""

    def __init__(self, tmp: Path, redis_url: str, name: str, *, public_url: str | None = None,
                 token: str = TOKEN, account: str = ACCOUNT, telephony: str = "",
                 flows: Path | None = None, default_flow: str = "ko_test", environ: dict[str, str] | None = None,
                 settings: str = "", sections: str = "", watch_seconds: float | None = None):
        """``telephony``: more settings of that section as YAML flow-style pairs (``max_calls: 2``).
        ``flows``: another folder of flows than tests/data; ``environ``: more environment variables;
        ``settings``/``sections``: more sections of its config.yaml, as YAML lines (``identity: {database: ...}``);
        ``watch_seconds``: ``flows.watch_seconds`` (default: the setting's own)."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.public_url = public_url or self.url
        self.redis_url = redis_url
        config = tmp / f"{name}.yaml"
        config.write_text(
            f"flows: {{dir: {flows or REPO / 'tests' / 'data'}, default: {default_flow}"
            f"{'' if watch_seconds is None else f', watch_seconds: {watch_seconds}'}}}\n"
            f"prompts: {{cache_dir: {tmp / 'cache'}}}\n"
            f"telephony: {{agent_number: '{AGENT}'{', ' + telephony if telephony else ''}}}\n"
            f"{settings}" + (sections.rstrip("\n") + "\n" if sections else ""))
        self.config = config
        env = {**os.environ, "VOICEBOT_CONFIG": str(config), "REDIS_URL": redis_url, "TWILIO_AUTH_TOKEN": token,
               "TWILIO_ACCOUNT_SID": account, "PUBLIC_URL": self.public_url, "VOICEBOT_HASH_SALT": SALT,
               **(environ or {})}
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "voicebot", "serve", "--port", str(self.port)],
                                     env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, line: str) -> float:
        """The value of one /metrics line, e.g. ``voicebot_refused_requests_total``; 0 when absent."""
        for row in urllib.request.urlopen(self.url + "/metrics", timeout=5).read().decode().splitlines():
            if row.startswith(line + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0

    def worker_pid(self) -> int:
        """The gunicorn worker (the process serving requests): the serve process's child."""
        return worker_pid(self.proc.pid)


def worker_pid(master: int) -> int:
    children = [int(c) for c in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker under {master}, found {children}")
    return children[0]


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# -- Twilio's side, by hand: signed webhooks and a media stream that forwards the TwiML's parameters --

def signed_post(server: Server, url: str, params: dict[str, str], method: str = "POST") -> str:
    """Request ``url`` (a public URL, verbatim from TwiML) on ``server``, signed as Twilio signs it."""
    if method.upper() == "GET":
        url, params = url + ("&" if urlsplit(url).query else "?") + urlencode(params), {}
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    parts = urlsplit(url)
    local = server.url + parts.path + (f"?{parts.query}" if parts.query else "")
    data = urlencode(params).encode() if method.upper() == "POST" else None
    request = urllib.request.Request(local, data=data, method=method.upper(), headers={"X-Twilio-Signature": signature})
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.read().decode()


def twiml(text: str):
    return ET.fromstring(text)


def voice_params(call_sid: str) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": "+8210", "To": "+8220", "CallStatus": "ringing",
            "Direction": "inbound", "ApiVersion": "2010-04-01"}


class Stream:
    """A media stream opened the way Twilio opens it for the ``<Stream>`` of ``voice_twiml``, on ``server``."""

    def __init__(self, server: Server, voice_twiml: str, call_sid: str):
        stream = twiml(voice_twiml).find("Connect/Stream")
        if stream is None:
            raise AssertionError(f"no <Connect><Stream> in {voice_twiml}")
        url = stream.get("url", "")
        local = "ws://127.0.0.1:%d%s" % (server.port, urlsplit(url).path)
        self.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        self.call_sid, self.sid, self.seq = call_sid, "MZ" + secrets.token_hex(16), 0
        self.ws = simple_websocket.Client.connect(
            local, headers={"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})})
        self.marks: list[str] = []
        self.closed = False

    def send(self, message: dict | str) -> None:

        try:
            self.ws.send(message if isinstance(message, str) else json.dumps(message))
        except (simple_websocket.ConnectionClosed, OSError):  # closed, or reset by the server
            self.closed = True

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def open(self) -> None:
        self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.send({"event": "start", "sequenceNumber": self._next(), "streamSid": self.sid,
                   "start": {"streamSid": self.sid, "accountSid": ACCOUNT, "callSid": self.call_sid,
                             "tracks": ["inbound"], "customParameters": self.parameters,
                             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})

    def media(self, payload: str = SILENCE) -> None:
        self.send({"event": "media", "sequenceNumber": self._next(), "streamSid": self.sid,
                   "media": {"track": "inbound", "chunk": self.seq, "timestamp": str(self.seq * 20),
                             "payload": payload}})

    def dtmf(self, digit: str) -> None:
        self.send({"event": "dtmf", "sequenceNumber": self._next(), "streamSid": self.sid,
                   "dtmf": {"track": "inbound_track", "digit": digit}})

    def pump(self, seconds: float, quiet: float | None = None) -> bool:
        """Send silence every 20 ms and echo every mark for ``seconds`` (or until the server has been quiet
        for ``quiet`` seconds after a mark, or closes); True when the server closed the socket."""

        end = time.monotonic() + seconds
        last = time.monotonic()
        while not self.closed and time.monotonic() < end:
            try:
                raw = self.ws.receive(timeout=0.02)
            except simple_websocket.ConnectionClosed:
                self.closed = True
                break
            now = time.monotonic()
            if raw:
                last = now
                message = json.loads(raw)
                if message.get("event") == "mark":
                    self.marks.append(message["mark"]["name"])
                    self.send({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.sid,
                               "mark": message["mark"]})
            elif quiet is not None and self.marks and now - last > quiet:
                break
            self.media()
        return self.closed

    def drain(self, timeout: float = 0.0) -> bool:
        """Read what the server sent (echoing marks) without sending audio; True once the server closed."""
        while not self.closed:
            try:
                raw = self.ws.receive(timeout=timeout)
            except simple_websocket.ConnectionClosed:
                self.closed = True
                break
            if raw is None:
                break
            message = json.loads(raw)
            if message.get("event") == "mark":
                self.marks.append(message["mark"]["name"])
                self.send({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.sid,
                           "mark": message["mark"]})
        return self.closed

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - already gone
            pass

