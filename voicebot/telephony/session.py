"""One live call on a Twilio Media Stream: stream messages in, dialog events to the engine, audio out.

The dialog engine decides; this adapter makes it audible and keeps Twilio's rules:

- A prompt is sent as mu-law media followed by a mark; it counts as heard only when Twilio
  echoes the mark (bytes sent are not bytes played). The no-input clock starts then.
- Barge-in: when the recogniser says the caller started talking (``min_speech_ms`` of speech, so
  a click does not count) or a key is pressed while a prompt that allows it is playing, ``clear``
  goes out at once. A prompt that does not allow barge-in is not listened over at all: listening
  starts when its mark comes back.
- Keys: collected with a finish key, a maximum length and an inter-digit timeout, in the same
  turn as speech; whichever completes first answers. A lone 0 reaches a person (the engine's rule).
- Transfer or hang-up: the last prompt plays, its mark comes back (or its duration plus a margin
  passes), what ``/twilio/after-stream`` must answer is stored, and the socket is closed.
- Timers run on the call's own audio clock: Twilio sends a frame every 20 ms for as long as the
  call lives, so no timer thread is needed and a dead stream has no timers left to fire.

Nothing a caller or Twilio sends can crash the process: every bad message is logged with the
call SID and skipped; a recogniser that fails or a missing model switches the call to the keypad
(the caller is told, and 0 still reaches a person); a synthesiser that fails hands the call to a
person, whom Twilio's own voice announces.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

from voicebot.dialog.actions import Action, Hangup, Listen, Say, SendSms, Transfer
from voicebot.dialog.context import build_context
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.events import CallEnded, CallStarted, Digits, Event, NoInput
from voicebot.dialog.state import CallState
from voicebot.errors import VoicebotError
from voicebot.speech.recognizer import Final, NoSpeech, RecognitionFailed, SpeechStarted, StreamingRecognizer

log = logging.getLogger("voicebot.call")

MAX_MESSAGE_CHARS = 64_000        # a 20 ms frame is ~300 characters of JSON
MAX_FRAME_BYTES = 8_000           # 1 s of audio in one media message is already far from Twilio's 160 bytes
CHUNK_BYTES = 8_000               # outbound media in 1 s pieces, multiples of 160 bytes, no pacing
MARK_MARGIN = 3.0                 # seconds past a prompt's length before we stop waiting for its mark
KEYS = set("0123456789*#ABCD")
EVENTS = {"connected", "start", "media", "dtmf", "mark", "stop"}


@dataclass
class _Prompt:
    mark: str
    barge_in: bool
    seconds: float
    sent_clock: float


@dataclass
class _Listening:
    action: Listen
    turn: int | None = None
    digits: str = ""
    digit_deadline: float | None = None
    no_input_deadline: float | None = None
    armed: bool = False
    heard_speech: bool = False


@dataclass
class CallInfo:
    call_sid: str
    stream_sid: str
    account_sid: str = ""
    caller: str = ""
    called: str = ""
    flow: str = ""
    params: dict[str, str] = field(default_factory=dict)


class CallSession:
    """The state machine of one media stream. ``on_message`` is called by the socket's thread."""

    def __init__(self, runtime: Any, send: Callable[[str], None], close: Callable[[], None]):
        self.rt = runtime
        self._send_raw = send
        self._close = close
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self.info: CallInfo | None = None
        self.engine: DialogEngine | None = None
        self.state: CallState | None = None
        self.recognizer: StreamingRecognizer | None = None
        self.speech_ok = False
        self.clock = 0.0                      # seconds of inbound audio: the call's own clock
        self.prompts: list[_Prompt] = []       # sent, mark not yet echoed
        self.listening: _Listening | None = None
        self.ending: Transfer | Hangup | None = None
        self.closed = False
        self._marks = 0
        self._response_from: float | None = None
        self._seq = 0

    # -- messages from Twilio -------------------------------------------------------------------

    def on_message(self, raw: Any) -> None:
        if self.closed:
            return
        sid = self.info.call_sid if self.info else "-"
        if not isinstance(raw, str) or len(raw) > MAX_MESSAGE_CHARS:
            return self._bad("oversized or binary message", sid)
        try:
            message = json.loads(raw)
        except ValueError:
            return self._bad("message is not JSON", sid)
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            return self._bad("message has no 'event'", sid)
        event = message["event"]
        handler = {"connected": self._on_connected, "start": self._on_start, "media": self._on_media,
                   "dtmf": self._on_dtmf, "mark": self._on_mark, "stop": self._on_stop}.get(event)
        if handler is None:
            return self._bad(f"unknown event '{event[:40]}'", sid)
        if event not in ("connected", "start"):
            if self.info is None:
                return self._bad(f"'{event}' before 'start'", sid)
            if message.get("streamSid") != self.info.stream_sid:
                return self._bad(f"'{event}' for another streamSid", sid)
        try:
            with self._lock:
                handler(message)
        except _BadMessage as exc:
            self._bad(str(exc), sid)
        except Exception:
            log.exception("call %s: error handling '%s'; handing the call to a person", sid, event)
            with self._lock:
                self._fail_to_agent()

    def _bad(self, what: str, sid: str) -> None:
        log.warning("call %s: bad stream message: %s", sid, what)
        # Quoted names that are not Twilio's events are the sender's words: kept out of metric labels.
        kind = re.sub(r"'([^']*)'", lambda m: m.group(0) if m.group(1) in EVENTS else "'?'", what)
        self.rt.metrics.bad_messages.labels(kind=kind[:48]).inc()

    def _on_connected(self, message: dict[str, Any]) -> None:
        pass

    def _on_start(self, message: dict[str, Any]) -> None:
        if self.info is not None:
            raise _BadMessage("a second 'start'")
        start = message.get("start")
        if not isinstance(start, dict) or not start.get("callSid") or not (message.get("streamSid") or
                                                                          start.get("streamSid")):
            raise _BadMessage("'start' without callSid/streamSid")
        params = start.get("customParameters") if isinstance(start.get("customParameters"), dict) else {}
        params = {str(k): str(v) for k, v in params.items()}
        if self.rt.admit_stream(SimpleNamespace(call_sid=str(start["callSid"]), account_sid=str(start.get(
                "accountSid", "")), stream_sid=str(message.get("streamSid") or start["streamSid"]), parameters=params)):
            self.closed = True      # refused: logged and counted by the runtime, nothing stored
            return self._close()
        self.info = CallInfo(call_sid=str(start["callSid"]), stream_sid=str(message.get("streamSid") or
                                                                             start["streamSid"]),
                             account_sid=str(start.get("accountSid", "")), caller=params.get("from", ""),
                             called=params.get("to", ""), flow=params.get("flow", ""), params=params)
        flow = self.rt.flow(self.info.flow)
        self.engine = self.rt.engines[flow.id]
        self.rt.metrics.active_calls.inc()
        self._start_speech(flow.language)
        stored = self.rt.store.get(self.info.call_sid) or {}
        if stored.get("state") and not stored["state"].get("ended"):
            # The stream of a call we already served (a reconnect): go on where it stopped.
            self.state = CallState.from_dict(stored["state"])
            log.info("call %s: resuming at step %s", self.info.call_sid, self.state.step)
            actions = self.engine.resume(self.state)
        else:
            self.state, actions = self.engine.start(CallStarted(
                call_id=self.info.call_sid, caller=self.info.caller, called=self.info.called,
                at=self.rt.local_time(flow)))
        if not self.speech_ok:
            actions = self._keypad_notice(actions)
        self._run(actions)

    def _start_speech(self, language: str) -> None:
        try:
            self.rt.models.get(language)
        except VoicebotError as exc:
            log.error("call %s: no speech recognition (%s); the caller can use the keypad", self.info.call_sid, exc)
            self.speech_ok = False
            return
        self.recognizer = StreamingRecognizer(self.rt.models, language, self._on_speech, name=self.info.call_sid[-8:])
        self.speech_ok = True

    def _keypad_notice(self, actions: list[Action]) -> list[Action]:
        """Without speech: say so after the opening, before the first question."""
        notice = Say(self.engine.flow.msg("speech_unavailable"), barge_in=True)
        at = next((i for i, a in enumerate(actions) if isinstance(a, Listen)), len(actions))
        index = max(0, at - 1) if at and isinstance(actions[at - 1], Say) else at
        return actions[:index] + [notice] + actions[index:]

    def _on_media(self, message: dict[str, Any]) -> None:
        media = message.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            raise _BadMessage("'media' without a payload")
        if len(payload) > MAX_FRAME_BYTES * 4 // 3 + 4:
            raise _BadMessage("oversized media payload")
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _BadMessage("media payload is not base64") from None
        self.clock += len(audio) / 8000
        if self.recognizer is not None and self.listening is not None and self.listening.turn not in (None, -1):
            self.recognizer.feed(audio)
        self._tick()

    def _on_dtmf(self, message: dict[str, Any]) -> None:
        dtmf = message.get("dtmf")
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if not isinstance(digit, str) or digit not in KEYS:
            raise _BadMessage("'dtmf' without a valid digit")
        listening = self.listening
        if listening is None or not listening.action.dtmf:
            if self.prompts and all(p.barge_in for p in self.prompts) and self.ending is None:
                self._clear()
            return
        self._barge_in()
        listening.no_input_deadline = None
        if digit == listening.action.finish_key:
            return self._submit_digits()
        listening.digits += digit
        limit = listening.action.max_digits
        if limit and len(listening.digits) >= limit:
            return self._submit_digits()
        listening.digit_deadline = self.clock + listening.action.inter_digit_timeout

    def _on_mark(self, message: dict[str, Any]) -> None:
        mark = message.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            raise _BadMessage("'mark' without a name")
        before = len(self.prompts)
        self.prompts = [p for p in self.prompts if p.mark != name]
        if before and not self.prompts:
            self._prompts_done()

    def _on_stop(self, message: dict[str, Any]) -> None:
        self._hung_up("stream stopped")

    # -- speech events (the recogniser's thread) ------------------------------------------------

    def _on_speech(self, event: Any) -> None:
        with self._lock:
            if self.closed or self.listening is None or event.turn != self.listening.turn:
                return
            try:
                self._speech_event(event)
            except Exception:
                log.exception("call %s: error after recognition; handing the call to a person", self.info.call_sid)
                self._fail_to_agent()

    def _speech_event(self, event: Any) -> None:
        listening = self.listening
        if isinstance(event, SpeechStarted):
            listening.heard_speech = True
            listening.no_input_deadline = None
            self._barge_in()
        elif isinstance(event, Final):
            if listening.digits:
                return                       # the caller is keying in; the keys answer this turn
            self.rt.metrics.recognition.observe(max(0.0, time.monotonic() - event.arrived))
            if not event.result.text:
                self._restart_listening()      # noise that looked like speech: keep listening
                return
            self._response_from = event.arrived
            self._dialog(event.result.utterance())
        elif isinstance(event, NoSpeech):
            self._dialog(NoInput())
        elif isinstance(event, RecognitionFailed):
            log.error("call %s: recognition failed (%s); switching to the keypad", self.info.call_sid, event.error)
            self.speech_ok = False
            if self.recognizer is not None:
                self.recognizer.close(timeout=0)
                self.recognizer = None
            action = listening.action
            self._run([Say(self.engine.flow.msg("speech_unavailable"), barge_in=True), action])

    # -- running the engine's actions -----------------------------------------------------------

    def _dialog(self, event: Event) -> None:
        self.listening = None
        if self.recognizer is not None:
            self.recognizer.cancel()
        self.rt.metrics.turns.inc()
        self._run(self.engine.handle(self.state, event))

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Say):
                if not self._play(action):
                    return self._fail_to_agent()
            elif isinstance(action, Listen):
                self._listen(action)
            elif isinstance(action, SendSms):
                self.rt.send_sms(self.info, action)
            elif isinstance(action, (Transfer, Hangup)):
                self.ending = action
        self._save()
        if self.ending is not None:
            self.listening = None
            if self.recognizer is not None:
                self.recognizer.cancel()
            self._store_ending()
            if not self.prompts:
                self._finish()

    def _play(self, say: Say) -> bool:
        """Send one prompt and its mark; False when no audio could be made for it."""
        try:
            audio = self.rt.prompts.audio_for(say.text, self.engine.flow.language, say.prompt_id)
        except Exception as exc:
            log.error("call %s: cannot make prompt audio (%s)", self.info.call_sid, exc)
            return False
        if not audio:
            return True
        if self._response_from is not None:
            self.rt.metrics.response.observe(time.monotonic() - self._response_from)
            self._response_from = None
        for i in range(0, len(audio), CHUNK_BYTES):
            self._send({"event": "media", "streamSid": self.info.stream_sid,
                        "media": {"payload": base64.b64encode(audio[i:i + CHUNK_BYTES]).decode()}})
        self._marks += 1
        mark = f"{self._marks}:{say.text[:120]}"
        self._send({"event": "mark", "streamSid": self.info.stream_sid, "mark": {"name": mark}})
        self.prompts.append(_Prompt(mark, say.barge_in, len(audio) / 8000, self.clock))
        return True

    def _listen(self, action: Listen) -> None:
        self.listening = _Listening(action)
        if all(p.barge_in for p in self.prompts):
            self._start_recognition()
        if not self.prompts:
            self._arm()

    def _start_recognition(self) -> None:
        listening = self.listening
        if listening is None or listening.turn is not None:
            return
        if self.speech_ok and listening.action.speech and self.recognizer is not None:
            listening.turn = self.recognizer.listen(listening.action.phrases)
        else:
            listening.turn = -1                # keypad only: the turn exists, nothing recognises

    def _restart_listening(self) -> None:
        action = self.listening.action
        self.listening = None
        self._listen(action)

    def _arm(self) -> None:
        """The prompt has been heard: the caller's time to answer starts now."""
        listening = self.listening
        if listening is None or listening.armed:
            return
        listening.armed = True
        if listening.heard_speech or listening.digits:
            return
        timeout = listening.action.no_input_timeout
        if listening.turn not in (None, -1) and self.recognizer is not None:
            self.recognizer.arm(timeout)
        else:
            listening.no_input_deadline = self.clock + timeout

    def _prompts_done(self) -> None:
        if self.ending is not None:
            return self._finish()
        if self.listening is not None:
            self._start_recognition()
            self._arm()

    def _barge_in(self) -> None:
        if self.prompts and all(p.barge_in for p in self.prompts) and self.ending is None:
            self.rt.metrics.barge_ins.inc()
            self._clear()

    def _clear(self) -> None:
        self._send({"event": "clear", "streamSid": self.info.stream_sid})

    def _submit_digits(self) -> None:
        listening = self.listening
        digits, listening.digits, listening.digit_deadline = listening.digits, "", None
        if not digits:
            listening.no_input_deadline = None if listening.heard_speech else self.clock + listening.action.no_input_timeout
            return
        self._response_from = time.monotonic()
        self._dialog(Digits(digits))

    def _tick(self) -> None:
        """Timers on the audio clock: inter-digit, keypad no-input, and marks that never came back."""
        listening = self.listening
        if listening is not None:
            if listening.digit_deadline is not None and self.clock >= listening.digit_deadline:
                self._submit_digits()
            elif listening.no_input_deadline is not None and self.clock >= listening.no_input_deadline:
                listening.no_input_deadline = None
                self._dialog(NoInput())
        if self.prompts:
            last = self.prompts[-1]
            if self.clock > last.sent_clock + sum(p.seconds for p in self.prompts) + MARK_MARGIN:
                log.warning("call %s: no mark back for '%s'; going on", self.info.call_sid, last.mark[:30])
                self.prompts = []
                self._prompts_done()

    # -- the end of the call ------------------------------------------------------------------

    def _store_ending(self) -> None:
        ending = self.ending
        if isinstance(ending, Transfer):
            self.rt.metrics.transfers.labels(reason=ending.reason).inc()
            record = {"queue": ending.queue, "reason": ending.reason, "context": ending.context}
            self.rt.store.update(self.info.call_sid, ending={"action": "transfer", **record},
                                 language=self.engine.flow.language)
            self.rt.enqueue_handoff(ending.context)
        else:
            self.rt.store.update(self.info.call_sid, ending={"action": "hangup", "reason": ending.reason})

    def _finish(self) -> None:
        """Everything has been said: close the socket so Twilio asks /twilio/after-stream what next."""
        if self.closed:
            return
        self.closed = True
        self._shutdown()
        try:
            self._close()
        except Exception as exc:  # the socket may already be gone
            log.debug("call %s: closing the socket: %s", self.info.call_sid, exc)

    def _fail_to_agent(self) -> None:
        """Something on our side broke: a person takes over, announced by Twilio's own voice."""
        if self.info is None or self.engine is None or self.state is None:
            self.closed = True
            self._close()
            return
        if self.ending is None:
            if not self.state.ended:
                self.state.ended, self.state.outcome, self.state.reason = True, "transfer", "error"
            queue = self.engine.spec.transfer.queue
            context = build_context(self.state, self.engine.flow, "error", queue)
            self.ending = Transfer(reason="error", queue=queue, context=context)
            self._store_ending()
        self.rt.store.update(self.info.call_sid, announce=True)
        self._save()
        self.prompts = []
        self._finish()

    def _hung_up(self, why: str) -> None:
        if self.info is None:
            self.closed = True
            return
        if self.state is not None and not self.state.ended and self.ending is None:
            self.engine.handle(self.state, CallEnded("hangup"))
        elif self.ending is not None:
            self._store_ending()
        self._save()
        self.closed = True
        self._shutdown()

    def on_socket_closed(self) -> None:
        """The socket is gone (Twilio closed it, or it broke): the call's side of things ends here."""
        with self._lock:
            if not self.closed:
                if self.info is not None and self.ending is None and self.state is not None and not self.state.ended:
                    # The socket died mid-call. Twilio will ask /twilio/after-stream if the caller is
                    # still there: a person takes over with everything said so far.
                    self._fail_to_agent()
                else:
                    self._hung_up("socket closed")
            self._shutdown()

    def _shutdown(self) -> None:
        if self.recognizer is not None:
            self.recognizer.close(timeout=1.0)
            self.recognizer = None
        if self.info is not None and not getattr(self, "_counted_out", False):
            self._counted_out = True
            self.rt.metrics.active_calls.dec()
            self.rt.release_stream(self.info.call_sid)

    def _save(self) -> None:
        if self.info is not None and self.state is not None:
            self.rt.store.update(self.info.call_sid, state=self.state.to_dict(), flow=self.engine.flow.id,
                                 stream_sid=self.info.stream_sid)

    def _send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            try:
                self._send_raw(json.dumps(message))
            except Exception as exc:
                log.warning("call %s: sending to Twilio failed: %s", self.info.call_sid if self.info else "-", exc)


class _BadMessage(Exception):
    """A stream message we cannot use; logged and skipped."""
