"""The caller's side of one Media Stream: a 20 ms clock, a playback buffer with marks, and the caller.

- **Real-time pacing.** Twilio sends one 20 ms frame (160 bytes of mu-law) every 20 ms for the life
  of the call, silence included, on a fixed clock. End-of-speech detection, no-input timers and
  barge-in only behave as on the phone when audio arrives at that pace, so frames are scheduled on
  ``time.monotonic`` from the stream start (no sleep drift) and never sent faster.
- **Playback.** The bot's audio is buffered and played at 8000 bytes a second. A ``mark`` comes back
  only when the audio queued before it has played, and at once when nothing is buffered: that is how
  the bot learns what the caller actually heard. ``clear`` drops the buffer and returns every
  pending mark at once. The played audio is kept as a timeline (silence where nothing played).
- **The caller** follows the script, by default waiting politely until the bot has finished
  talking, or interrupting it on purpose (``barge_in``).

The stream knows nothing of the call around it: it is given the socket, the SIDs, the script, a
deadline and the ``CallLog`` to write the conversation to.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any, Iterator, Protocol

from simple_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError

from voicebot.emulator.report import CallLog
from voicebot.emulator.scenario import ScriptedTurn
from voicebot.speech.audio import FRAME_BYTES, FRAME_MS, ULAW_SILENCE, frames

FRAME_S = FRAME_MS / 1000
BYTES_PER_S = 8000
DTMF_GAP = 0.15
"""Seconds between two keys of one ``dtmf`` turn."""
SOCKET_GONE = (ConnectionClosed, OSError, LocalProtocolError)
"""A socket the server has closed. A frame sent between the server's close frame arriving and the
client's reader noticing it fails with wsproto's ``LocalProtocolError`` instead of ``ConnectionClosed``:
the bot hung up all the same."""


class Socket(Protocol):
    """What the stream needs of a WebSocket (simple_websocket's ``Client``, or a test's fake)."""

    def send(self, data: str) -> None: ...

    def receive(self, timeout: float | None = None) -> str | bytes | None: ...

    def close(self) -> None: ...


class MediaStream:
    """One bidirectional Media Stream, driven by a 20 ms clock, with a playback buffer and a caller.

    ``deadline`` is a ``time.monotonic()`` value: the caller gives up then. ``account_sid`` goes into
    ``start`` and ``stop``; the call SID is the report's.
    """

    def __init__(self, ws: Socket, stream_sid: str, script: list[ScriptedTurn], deadline: float, *,
                 log: CallLog, account_sid: str):
        self.ws, self.sid, self.deadline = ws, stream_sid, deadline
        self.log, self.account_sid = log, account_sid
        self.report = log.report
        self.seq = 0
        self.chunk = 0
        self.ticks = 0
        self.t_stream = 0.0
        # playback: absolute byte positions in the bot's audio
        self.buffer = bytearray()
        self.started = 0        # bytes handed to the "speaker" (the frame now playing included)
        self.played = 0         # bytes fully played
        self.marks: list[tuple[int, str]] = []
        self.timeline = bytearray()
        # what the bot is saying
        self.segment_at: float | None = None
        self.segment_bytes = 0
        self.prompt_starts: list[float] = []
        self.last_media_at = -1.0
        # the caller
        self.frame = ULAW_SILENCE * FRAME_BYTES
        self.keys_due: list[str] = []
        self.hangup = False
        self.caller_busy_until = -1.0
        self.caller_done_at = 0.0
        self.reply_for: tuple[int, float] | None = None
        self.caller = self._caller(script)

    # -- sending -------------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message, separators=(",", ":")))

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    def _open(self, parameters: dict[str, str]) -> None:
        self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self._send({"event": "start", "sequenceNumber": self._next_seq(), "streamSid": self.sid,
                    "start": {"streamSid": self.sid, "accountSid": self.account_sid,
                              "callSid": self.report.call_sid,
                              "tracks": ["inbound"], "customParameters": parameters,
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})

    def _echo(self, name: str, now: float) -> None:
        self._send({"event": "mark", "streamSid": self.sid, "sequenceNumber": self._next_seq(),
                    "mark": {"name": name}})
        self.log.note("mark", name, now, show=False)

    # -- the clock -------------------------------------------------------------------------------------

    def run(self, parameters: dict[str, str]) -> str:
        """Stream until someone hangs up: returns "server", "caller" or "timeout".

        ``parameters`` are the ``<Stream>``'s ``<Parameter>`` pairs, sent as ``customParameters``.
        """
        try:
            self._open(parameters)
            self.t_stream = time.monotonic()
            while True:
                due = self.t_stream + self.ticks * FRAME_S
                now = time.monotonic()
                if now >= due:
                    outcome = self._tick(now)
                    if outcome:
                        return outcome
                    self.ticks += 1
                    continue
                raw = self.ws.receive(timeout=due - now)
                if raw is not None:
                    self._on_message(raw, time.monotonic())
        except SOCKET_GONE:
            return "server"
        except KeyboardInterrupt:  # Ctrl-C in `voicebot call`: the caller puts the phone down
            self.log.note("hangup", "caller hangs up (interrupted)", time.monotonic())
            self._stop()
            return "caller"
        finally:
            self._close_segment(time.monotonic())
            self.report.bot_audio = bytes(self.timeline)
            try:
                self.ws.close()  # already closed after `stop` or by the server: nothing to do
            except SOCKET_GONE:
                pass

    def _tick(self, now: float) -> str | None:
        """One 20 ms step: finish the frame that was playing, start the next, send the caller's frame."""
        self._play(now)
        if now >= self.deadline:
            self._stop()
            return "timeout"
        self.frame = ULAW_SILENCE * FRAME_BYTES
        try:
            next(self.caller)
        except StopIteration:
            pass
        if self.hangup:
            self._stop()
            return "caller"
        for key in self.keys_due:
            self._send({"event": "dtmf", "streamSid": self.sid, "sequenceNumber": self._next_seq(),
                        "dtmf": {"track": "inbound_track", "digit": key}})
        self.keys_due = []
        self.chunk += 1
        self._send({"event": "media", "sequenceNumber": self._next_seq(), "streamSid": self.sid,
                    "media": {"track": "inbound", "chunk": str(self.chunk),
                              "timestamp": str((self.chunk - 1) * FRAME_MS),
                              "payload": base64.b64encode(self.frame).decode("ascii")}})
        return None

    def _stop(self) -> None:
        """The caller is gone: Twilio says ``stop`` and closes the socket."""
        try:
            self._send({"event": "stop", "sequenceNumber": self._next_seq(), "streamSid": self.sid,
                        "stop": {"accountSid": self.account_sid, "callSid": self.report.call_sid}})
            self.ws.close()
        except SOCKET_GONE:
            pass

    # -- playback --------------------------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing buffered, nothing playing and no mark outstanding: the bot has stopped talking."""
        return not self.buffer and self.started == self.played and not self.marks

    def _play(self, now: float) -> None:
        self.played = self.started
        while self.marks and self.marks[0][0] <= self.played:
            self._echo(self.marks.pop(0)[1], now)
        chunk = bytes(self.buffer[:FRAME_BYTES])
        del self.buffer[:FRAME_BYTES]
        self.started += len(chunk)
        self.timeline += chunk + ULAW_SILENCE * (FRAME_BYTES - len(chunk))
        if not chunk and self.segment_at is not None and not self.marks:
            self._close_segment(now)

    def _on_message(self, raw: str | bytes, now: float) -> None:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            return self._bad(f"not JSON: {str(raw)[:60]!r}", now)
        if not isinstance(message, dict):
            return self._bad("not a JSON object", now)
        event = message.get("event")
        shapes = {"media": ({"event", "streamSid", "media"}, {"payload"}),
                  "mark": ({"event", "streamSid", "mark"}, {"name"}), "clear": ({"event", "streamSid"}, None)}
        if event not in shapes:
            return self._bad(f"unknown event {event!r}", now)
        fields, inner = shapes[event]
        if set(message) != fields or (inner and (not isinstance(message[event], dict) or set(message[event]) != inner)):
            return self._bad(f"'{event}' must have exactly {sorted(fields)}"
                             + (f" and {event}.{sorted(inner)}" if inner else "") + f": {str(raw)[:120]}", now)
        if message["streamSid"] != self.sid:
            return self._bad(f"'{event}' for streamSid {message['streamSid']!r}, not {self.sid}", now)
        if event == "media":
            self._on_media(message["media"]["payload"], now)
        elif event == "mark":
            self._on_mark(str(message["mark"]["name"]), now)
        else:
            self._on_clear(now)

    def _bad(self, problem: str, now: float) -> None:
        """Twilio drops a malformed message with warning 31951; so do we, loudly."""
        self.log.note("error", f"31951 malformed message dropped: {problem}", now, fatal=True)

    def _on_media(self, payload: Any, now: float) -> None:
        try:
            audio = base64.b64decode(str(payload), validate=True)
        except (binascii.Error, ValueError):
            return self._bad("media.payload is not base64", now)
        if audio[:4] == b"RIFF":
            self.log.note("error", "media payload starts with a WAV header: it plays as noise", now, fatal=True)
        if self.segment_at is None:
            self.segment_at = now
            self.prompt_starts.append(now)
        self.segment_bytes += len(audio)
        self.buffer += audio
        self.last_media_at = now
        if self.reply_for is not None:
            index, since = self.reply_for
            self.report.latencies[index] = now - since
            self.reply_for = None

    def _on_mark(self, name: str, now: float) -> None:
        """A prompt's audio is complete. Its mark names it by number only: what it said comes from
        the server's record of the call once the call is over (``voicebot.emulator.record``)."""
        self.report.marks.append(name)
        seconds = self.segment_bytes / BYTES_PER_S
        audio = f"({seconds:.1f} s of audio)" if self.segment_bytes else "(no audio before this mark)"
        self.log.note("bot", f"prompt {name} {audio}", self.segment_at or now)
        self.segment_at, self.segment_bytes = None, 0
        if not self.buffer and self.started == self.played:
            self._echo(name, now)
        else:
            self.marks.append((self.started + len(self.buffer), name))

    def _on_clear(self, now: float) -> None:
        self.report.clears += 1
        self._close_segment(now)
        dropped = len(self.buffer) / BYTES_PER_S
        self.buffer.clear()
        pending = [name for _, name in self.marks]
        self.marks = []
        why = "barge-in" if now <= self.caller_busy_until + 1.0 else "caller not speaking"
        detail = f"({why}; {dropped:.1f} s of audio dropped"
        detail += f", marks returned: {', '.join(n[:30] for n in pending)})" if pending else ")"
        self.log.note("clear", detail, now)
        for name in pending:
            self._echo(name, now)

    def _close_segment(self, now: float) -> None:
        """Audio that no mark followed still counts as something the bot said."""
        if self.segment_at is not None and self.segment_bytes:
            self.log.note("bot", f"(audio without a mark, {self.segment_bytes / BYTES_PER_S:.1f} s)",
                           self.segment_at)
        self.segment_at, self.segment_bytes = None, 0

    # -- the caller ------------------------------------------------------------------------------------

    def _caller(self, script: list[ScriptedTurn]) -> Iterator[None]:
        """The caller's side, one ``yield`` per 20 ms tick; sets ``frame``, ``keys_due`` or ``hangup``."""
        for turn in script:
            yield from self._wait_turn(turn)
            now = time.monotonic()
            if turn.kind == "hangup":
                self.log.note("hangup", "caller hangs up", now)
                self.hangup = True
                return
            if turn.kind in ("say", "wav", "dtmf"):
                self.report.latencies.append(None)  # stays None if the bot never answers this turn
            if turn.kind in ("say", "wav"):
                self.log.note("caller", f"{turn.label} ({len(turn.audio) / BYTES_PER_S:.1f} s)", now)
                self.caller_busy_until = now + len(turn.audio) / BYTES_PER_S
                for n, frame in enumerate(frames(turn.audio)):
                    self.frame = frame
                    if n == turn.speech_frames - 1:
                        self._await_reply(time.monotonic())
                    yield
            elif turn.kind == "dtmf":
                self.log.note("dtmf", turn.label, now, label="caller")
                for i, key in enumerate(turn.keys):
                    if i:
                        gap_end = time.monotonic() + DTMF_GAP
                        while time.monotonic() < gap_end - FRAME_S / 2:
                            yield
                    self.keys_due.append(key)
                    if i == len(turn.keys) - 1:
                        self._await_reply(time.monotonic())
                    yield
            else:
                self.log.note("caller", turn.label, now)
                self.caller_done_at = now
                until = now + turn.seconds
                while time.monotonic() < until:
                    yield

    def _await_reply(self, at: float) -> None:
        """The caller's last sound of a turn: the bot's next audio is its reply (and its latency)."""
        self.reply_for = (len(self.report.latencies) - 1, at)
        self.caller_done_at = at

    def _wait_turn(self, turn: ScriptedTurn) -> Iterator[None]:
        """Hold the turn until the bot has finished (or, with ``barge_in``, until it is interrupted)."""
        start = time.monotonic()

        def waited_too_long() -> bool:
            return time.monotonic() - start >= turn.wait

        if turn.barge_in is not None:
            # The bot's next prompt is the first to start after the caller's last input, which may
            # already be arriving when this turn comes up.
            since = self.caller_done_at
            while not (starts := [t for t in self.prompt_starts if t >= since]) and not waited_too_long():
                yield
            if starts:
                while time.monotonic() < starts[0] + turn.barge_in:
                    yield
            return
        while True:
            while not (self.idle() and self.last_media_at > self.caller_done_at) and not waited_too_long():
                yield
            if waited_too_long():
                self.log.note("caller", f"(bot not done after {turn.wait:g} s; going ahead)", time.monotonic())
                return
            pause_end = time.monotonic() + turn.pause
            while time.monotonic() < pause_end and self.idle():
                yield
            if self.idle():
                return
