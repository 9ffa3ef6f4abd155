"""One call placed as Twilio's network would place it: webhooks, the stream, the TwiML after it.

- **Signatures.** The voice webhook, the WebSocket upgrade, the ``<Connect action>`` request, the
  whisper and the status callbacks all carry ``X-Twilio-Signature``, computed with the twilio SDK
  over the *public* URL (``wss://`` for the stream, the query string included for a whisper URL). A
  server that checks against the address it is reached at fails here just as it would behind TLS
  termination or a tunnel (``voicebot.emulator.signing``).
- **The call's course.** The incoming-call webhook answers with TwiML; a ``<Connect><Stream>``
  opens the media stream (``voicebot.emulator.stream``) and, once the server closes it, the TwiML
  after it is followed (``voicebot.emulator.twiml``). ``<Stream statusCallback>`` and the final
  status callback are sent as Twilio sends them.

``place_call`` is the way in: it checks its arguments before dialling and returns a ``CallReport``.
Given the server's Redis (``redis_url``), the report also holds what the bot said, read from the
server's record of the call (``voicebot.emulator.record``): the line itself never carries it.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, TextIO

from simple_websocket import Client
from simple_websocket import ConnectionError as WebSocketRefused

from voicebot.emulator.errors import EmulatorError, ServerUnreachable
from voicebot.emulator.record import said_by_bot
from voicebot.emulator.report import CallLog, CallReport, check_expectations
from voicebot.emulator.scenario import (
    DEFAULT_CALLED, DEFAULT_CALLER, DEFAULT_MAX_SECONDS, DEFAULT_RATE, DEFAULT_VOICE, ScriptedTurn, prepare_turns,
)
from voicebot.emulator.signing import HTTP_TIMEOUT, SignedClient, local_url, new_sid
from voicebot.emulator.stream import MediaStream
from voicebot.emulator.twiml import TwimlFollower, parse_twiml
from voicebot.speech.audio import ulaw_to_wav

STATUS_PATH = "/twilio/status"
VOICE_PATH = "/twilio/voice"


class Call:
    """One call from ringing to the status callback."""

    def __init__(self, server: str, public: str, auth_token: str, caller: str, called: str,
                 call_sid: str | None, account_sid: str | None, out: TextIO | None):
        self.http = SignedClient(server, public, auth_token)
        self.server, self.public = server.rstrip("/"), public.rstrip("/")
        self.account_sid = account_sid or new_sid("AC")
        self.report = CallReport(call_sid=call_sid or new_sid("CA"))
        self.log = CallLog(self.report, out)
        self.params = {"CallSid": self.report.call_sid, "AccountSid": self.account_sid, "From": caller, "To": called,
                       "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}

    def run(self, script: list[ScriptedTurn], max_seconds: float) -> CallReport:
        """Ring, stream, follow the TwiML after the stream, then report the call as completed."""
        try:
            return self._run(script, max_seconds)
        finally:
            self.http.close()

    def _run(self, script: list[ScriptedTurn], max_seconds: float) -> CallReport:
        log = self.log
        log.t0 = time.monotonic()
        url = self.public + VOICE_PATH
        self.report.voice_twiml = self.http.request(url, self.params)
        log.twiml(self.report.voice_twiml, log.t0)
        root = parse_twiml(self.report.voice_twiml, f"the answer to {url}")
        follower = TwimlFollower(self.http, log, self.params)
        connect = root.find("Connect")
        stream = connect.find("Stream") if connect is not None else None
        if connect is None or stream is None:
            follower.follow(root, url, depth=0)
        else:
            outcome = self._stream(stream, script, max_seconds)
            if outcome == "server":
                try:
                    follower.after_stream(root, connect, url)
                except EmulatorError as exc:  # the call is up: a broken answer is a result, not a crash
                    log.note("error", str(exc), time.monotonic(), fatal=True)
            else:
                self.report.hung_up_by = "caller"
                self.report.timed_out = outcome == "timeout"
                if self.report.timed_out:
                    log.note("hangup", f"(no end after {max_seconds:g} s: the caller gives up)", time.monotonic())
        self._status()
        return self.report

    def _stream(self, stream: ET.Element, script: list[ScriptedTurn], max_seconds: float) -> str:
        note = self.log.note
        stream_url = stream.get("url", "")
        if not stream_url.startswith("wss://"):
            note("error", f"warning 31922: Twilio only dials wss:// streams, not {stream_url!r} "
                          "(fine for a local test)", time.monotonic())
        if urllib.parse.urlsplit(stream_url).query:
            note("error", "31920 <Stream url> must not carry a query string; use <Parameter>",
                 time.monotonic(), fatal=True)
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        local = local_url(stream_url, self.public, self.server)
        try:
            ws = Client.connect(local, headers={"X-Twilio-Signature": self.http.signature(stream_url)})
        except WebSocketRefused as exc:
            status = exc.args[0] if exc.args else "?"
            hint = " (check TWILIO_AUTH_TOKEN and --public-url)" if status == 403 else ""
            raise EmulatorError(f"the media stream handshake at {local} was refused with HTTP {status}{hint}; "
                                f"signed as {stream_url}") from None
        except OSError as exc:
            raise ServerUnreachable(f"cannot open the media stream at {local}: {exc}") from None
        sid = new_sid("MZ")
        self.report.stream_sid = sid
        started = threading.Thread(target=self._stream_status, args=(stream, sid, "stream-started"), daemon=True)
        started.start()  # Twilio does not hold the stream up for this callback
        runner = MediaStream(ws, sid, script, self.log.t0 + max_seconds, log=self.log, account_sid=self.account_sid)
        outcome = runner.run(parameters)
        started.join(timeout=HTTP_TIMEOUT)
        self._stream_status(stream, sid, "stream-stopped")
        if outcome == "server":
            note("hangup", "(server closed the media stream)", time.monotonic(), show=False)
        return outcome

    def _stream_status(self, stream: ET.Element, sid: str, event: str) -> None:
        """``<Stream statusCallback>``: stream-started and stream-stopped, when the TwiML asks for them."""
        url = stream.get("statusCallback")
        if not url:
            return
        params = {"AccountSid": self.account_sid, "CallSid": self.report.call_sid, "StreamSid": sid,
                  "StreamName": stream.get("name") or sid, "StreamEvent": event,
                  "Timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")}
        try:
            self.http.request(urllib.parse.urljoin(self.public + VOICE_PATH, url), params,
                              stream.get("statusCallbackMethod", "POST"))
        except EmulatorError as exc:
            self.log.note("error", f"stream status callback ({event}): {exc}", time.monotonic())

    def _status(self) -> None:
        """The final status callback; a server without the route only gets a note."""
        self.report.duration = time.monotonic() - self.log.t0
        params = {**self.params, "CallStatus": "completed", "CallDuration": str(int(round(self.report.duration)))}
        try:
            self.http.request(self.public + STATUS_PATH, params)
        except EmulatorError as exc:
            self.log.note("error", f"status callback: {exc}", time.monotonic())


def _check_base_url(url: str, what: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EmulatorError(f"{what} {url!r} is not an http:// or https:// address, e.g. http://127.0.0.1:5000")


def _check_record_path(record: str) -> None:
    """Refuse a recording path that cannot be written, before the call rather than after it."""
    folder = Path(record).parent
    if not folder.is_dir():
        raise EmulatorError(f"cannot record to {record}: the folder {folder} does not exist")
    if Path(record).is_dir():
        raise EmulatorError(f"cannot record to {record}: it is a folder; name a .wav file")
    if not os.access(folder, os.W_OK):
        raise EmulatorError(f"cannot record to {record}: the folder {folder} is not writable")


def place_call(server: str, turns: list[dict[str, Any]], *, auth_token: str, public_url: str | None = None,
               caller: str = DEFAULT_CALLER, called: str = DEFAULT_CALLED, voice: str = DEFAULT_VOICE,
               rate: int = DEFAULT_RATE, call_sid: str | None = None, record: str | None = None,
               max_seconds: float = DEFAULT_MAX_SECONDS, out: TextIO | None = None,
               expect: dict[str, Any] | None = None, account_sid: str | None = None,
               redis_url: str | None = None) -> CallReport:
    """Place one call on ``server`` as Twilio would and return what happened.

    ``public_url`` is the base the server believes Twilio reaches it at (what it validates
    signatures against); URLs in the TwiML are mapped from it onto ``server``. ``redis_url`` is
    the server's Redis, where what the bot said is read after the call (``report.bot_prompts``). Raises
    ``ServerUnreachable``, ``WebhookRefused`` or ``EmulatorError`` when the call cannot go ahead and
    ``ScenarioError`` for a bad script.
    """
    if not auth_token:
        raise EmulatorError("no auth token: the server's TWILIO_AUTH_TOKEN is needed to sign requests")
    _check_base_url(server, "the server address")
    if public_url:
        _check_base_url(public_url, "the public URL")
    if record:
        _check_record_path(record)
    script = prepare_turns(turns, voice=voice, rate=rate)
    call = Call(server, public_url or server, auth_token, caller, called, call_sid, account_sid, out)
    report = call.run(script, max_seconds)
    _read_what_was_said(call.log, redis_url)
    if record:
        try:
            ulaw_to_wav(record, report.bot_audio)
            report.recording = record
        except OSError as exc:  # the call happened: report it, with the recording as a failure
            report.failures.append(f"cannot write the recording {record}: {exc.strerror or exc}")
    if expect:
        report.failures += check_expectations(report, expect)
    report.passed = not report.failures
    return report


def _read_what_was_said(log: CallLog, redis_url: str | None) -> None:
    """Fill ``bot_prompts`` from the server's record of the call, and print it."""
    report = log.report
    if not redis_url:
        report.said_unknown = "no Redis URL was given (the server's REDIS_URL)"
        return
    report.bot_prompts, report.said_unknown = said_by_bot(redis_url, report.call_sid)
    if report.bot_prompts is None:
        log.say(f"(what the bot said is unknown: {report.said_unknown})")
        return
    log.say("the bot said (from the server's record of the call):")
    for text in report.bot_prompts:
        log.say(f"         {text}")
