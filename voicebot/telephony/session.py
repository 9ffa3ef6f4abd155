"""One live call on a Twilio Media Stream: the wiring between the socket, the recogniser and the engine.

Each concern lives elsewhere and is tested on its own: ``stream_codec`` turns Twilio's JSON into
typed messages and back, ``turns`` decides who may speak when (marks, barge-in, keys, timers on
the audio clock), the dialog engine decides what is said. This class only carries messages between
them, makes prompt audio, and keeps the call's record in the store. Identity checks the engine
asks for are answered before its actions are carried out (``identity.service.settle``).

Failure policy: a message we cannot use is logged and counted and the call goes on; a recogniser
that fails or falls behind becomes ``SpeechUnavailable`` and the engine moves the call to the
keypad; anything else that breaks on our side becomes ``SystemFailure`` and the engine hands the
call to a person, whom Twilio's own voice announces (our audio may be what broke).

A call the caller left before it was done (hung up, cut off, or its stream broke) is kept for the
flow's resume window (``telephony/resume.py``); a new call first looks for such a call from its number.

The call's record also gets the flow's version and ``timings``: per caller turn (``turn`` counts the
caller entries of the transcript, from 1, as the call records number turns) how long recognition
took (end of speech to the final result) and how long the caller waited for the reply (end of
the turn to its first audio), in milliseconds; the same figures /metrics gets as histograms.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from voicebot.dialog.actions import Action, Hangup, Listen, Say, SendSms, Transfer
from voicebot.dialog.events import CallEnded, CallStarted, Digits, Event, SystemFailure, Utterance, Word
from voicebot.dialog.state import CallState
from voicebot.errors import VoicebotError
from voicebot.handoff.contract import handoff_record, seconds_since
from voicebot.identity.service import settle
from voicebot.speech.recognizer import (
    Final, NoSpeech, RecognitionFailed, Recognized, SpeechStarted, StreamingRecognizer,
)
from voicebot.telephony import stream_codec as codec
from voicebot.telephony import turns as tt
from voicebot.telephony.failover import handover
from voicebot.telephony.resume import remember_unfinished, take_unfinished

log = logging.getLogger("voicebot.call")
EXTRA_TIMINGS = 10
"""Timings kept beyond the engine's ``max_turns`` (the turn that trips the loop guard, and slack)."""


def utterance_of(result: Recognized) -> Utterance:
    """The one conversion of a recognition result into the dialog's event."""
    return Utterance(text=result.text, confidence=result.confidence,
                     words=tuple(Word(w.word, w.confidence) for w in result.words), grammar=result.grammar)


class CallSession:
    """One media stream. ``on_message`` runs on the socket's thread, recogniser events on the decode thread."""

    def __init__(self, runtime: Any, send: Callable[[str], None], close: Callable[[], None]):
        self.rt = runtime
        self._send_raw = send
        self._close = close
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._decoder = codec.StreamDecoder()
        self.start: codec.Start | None = None
        self.engine: Any = None
        self.state: CallState | None = None
        self.turns = tt.TurnTaker()
        self.recognizer: StreamingRecognizer | None = None
        self.ending: Transfer | Hangup | None = None
        self.closed = False
        self._asr_turn: int | None = None
        self._marks = 0
        self._response_from: float | None = None
        self._recognition_ms: int | None = None
        self._timing: dict[str, Any] | None = None
        self.timings: list[dict[str, Any]] = []
        self._released = False

    @property
    def started(self) -> bool:
        """A ``start`` was accepted: the socket belongs to a call."""
        return self.state is not None

    @property
    def call_sid(self) -> str:
        return self.start.call_sid if self.start else "-"

    # -- messages from Twilio -------------------------------------------------------------------

    def on_message(self, raw: Any) -> None:
        if self.closed:
            return
        with self._lock:
            try:
                message = self._decoder.decode(raw)
            except codec.ProtocolError as exc:
                log.warning("call %s: bad stream message: %s", self.call_sid, exc.kind)
                self.rt.metrics.bad_messages.labels(kind=exc.kind).inc()
                return
            try:
                self._on(message)
            except Exception:
                log.exception("call %s: error handling a stream message; handing the call to a person",
                              self.call_sid)
                self._fail("error in the call loop")

    def _on(self, message: codec.Message) -> None:
        if isinstance(message, codec.Media):
            if self.turns.recognizing and self.recognizer is not None and not self.recognizer.feed(message.audio):
                log.error("call %s: recognition fell behind; switching to the keypad", self.call_sid)
                self._stop_recognizer()
                self._exec(self.turns.speech_failed("recognition fell behind"))
            self._exec(self.turns.tick(len(message.audio) / 8000))
        elif isinstance(message, codec.Dtmf):
            self._exec(self.turns.key(message.digit))
        elif isinstance(message, codec.Mark):
            self._exec(self.turns.mark(message.name))
        elif isinstance(message, codec.Start):
            self._on_start(message)
        elif isinstance(message, codec.Stop):
            self._hung_up()

    def _on_start(self, start: codec.Start) -> None:
        refused = self.rt.admit_stream(start)
        if refused is not None:
            self.closed = True                           # nothing more is read; nothing was stored
            self._close_socket()
            return
        self.start = start
        record = self.rt.store.get(start.call_sid) or {}
        # The flow version the call was answered with (or, for a stream that reconnects, started on):
        # a flow reloaded since then does not change a call in progress.
        self.engine = self.rt.engine_for(start.parameters.get("flow"), record.get("flow_version"))
        flow = self.engine.flow
        self.rt.metrics.active_calls.inc()
        speech = self._start_recognizer(flow.language)
        self.turns = tt.TurnTaker(speech=speech, language=flow.language)
        stored = record.get("state")
        if stored and not stored.get("ended"):
            # The stream of a call we already served reconnected (its token proved the call): go on.
            self.state = CallState.from_dict(stored)
            self.timings = [t for t in record.get("timings") or [] if isinstance(t, dict)][-self._max_timings():]
            log.info("call %s: resuming at step %s", self.call_sid, self.state.step)
            actions = self._settled(self.engine.resume(self.state, speech=speech))
        else:
            params = start.parameters
            caller = params.get("from", "")
            earlier = take_unfinished(self.rt.store.redis, flow, caller, self.rt.settings.hash_salt)
            self.state, actions = self.engine.start(CallStarted(
                call_id=start.call_sid, caller=caller, called=params.get("to", ""),
                at=self.rt.local_time(flow), speech=speech, earlier=earlier))
            actions = self._settled(actions)
        self._run(actions)

    def _start_recognizer(self, language: str) -> bool:
        try:
            self.rt.models.get(language)
        except VoicebotError:
            # Said in full at start-up (and by /healthz, `voicebot doctor`); one line per call is enough.
            log.info("call %s: keypad only: no speech model for '%s'", self.call_sid, language)
            return False
        self.recognizer = StreamingRecognizer(self.rt.models, language, self._on_speech, name=self.call_sid[-8:])
        return True

    # -- recogniser events (the decode thread) --------------------------------------------------

    def _on_speech(self, event: Any) -> None:
        with self._lock:
            if self.closed or event.turn != self._asr_turn:
                return
            try:
                if isinstance(event, SpeechStarted):
                    self._exec(self.turns.speech_started())
                elif isinstance(event, Final):
                    took = max(0.0, time.monotonic() - event.arrived)
                    self.rt.metrics.recognition.observe(took)
                    self._recognition_ms = round(took * 1000)
                    self._response_from = event.arrived
                    self._exec(self.turns.utterance(utterance_of(event.result)))
                elif isinstance(event, NoSpeech):
                    self._exec(self.turns.no_speech())
                elif isinstance(event, RecognitionFailed):
                    log.error("call %s: recognition failed (%s); switching to the keypad", self.call_sid, event.error)
                    self._stop_recognizer()
                    self._exec(self.turns.speech_failed("recognition failed"))
            except Exception:
                log.exception("call %s: error after recognition; handing the call to a person", self.call_sid)
                self._fail("error after recognition")

    # -- commands and actions -------------------------------------------------------------------

    def _exec(self, commands: list[tt.Command]) -> None:
        for command in commands:
            if isinstance(command, tt.Clear):
                self.rt.metrics.barge_ins.inc()
                self._send(codec.encode_clear(self.start.stream_sid))
            elif isinstance(command, tt.StartRecognition):
                if self.recognizer is not None:
                    self._asr_turn = self.recognizer.listen(command.phrases, shape=command.shape)
            elif isinstance(command, tt.StopRecognition):
                self._asr_turn = None
                if self.recognizer is not None:
                    self.recognizer.cancel()
            elif isinstance(command, tt.ArmRecognizer):
                if self.recognizer is not None:
                    self.recognizer.arm(command.timeout)
            elif isinstance(command, tt.ToDialog):
                if isinstance(command.event, Digits):
                    self._response_from = time.monotonic()      # the keys are complete: the reply is due
                self._dialog(command.event)
            elif isinstance(command, tt.CloseStream):
                self._finish()

    def _dialog(self, event: Event) -> None:
        self.rt.metrics.turns.inc()
        before = self._caller_turns()
        actions = self._settled(self.engine.handle(self.state, event))
        turn = self._caller_turns()
        if turn > before:
            self._time_turn(turn, event)
        self._run(actions)

    def _caller_turns(self) -> int:
        return sum(1 for entry in self.state.transcript if entry.get("who") == "caller")

    def _time_turn(self, turn: int, event: Event) -> None:
        """Open the timing of caller turn ``turn``: its recognition now, its response at the first audio."""
        recognized = self._recognition_ms if isinstance(event, Utterance) else None
        self._recognition_ms = None
        self._timing = {"turn": turn, "recognition_ms": recognized, "response_ms": None}
        self.timings.append(self._timing)
        del self.timings[:-self._max_timings()]

    def _max_timings(self) -> int:
        return self.engine.max_turns + EXTRA_TIMINGS

    def _settled(self, actions: list[Action]) -> list[Action]:
        """The engine's actions with its identity check, if any, answered."""
        return settle(self.engine, self.state, actions, self.rt.identity)

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Say):
                if not self._play(action):
                    return self._fail("prompt audio cannot be made")
            elif isinstance(action, Listen):
                self._exec(self.turns.listen(action))
            elif isinstance(action, SendSms):
                self.rt.send_sms(self.call_sid, self.state.called, action)
            elif isinstance(action, (Transfer, Hangup)):
                self._save()
                self._store_ending(action)
                return self._exec(self.turns.end(action))
        self._save()

    def _play(self, say: Say) -> bool:
        """Send one prompt and its mark; False when no audio could be made for it."""
        try:
            audio = self.rt.prompts.audio_for(say.text, self.engine.flow.language, say.prompt_id,
                                              personal=say.personal)
        except Exception as exc:
            log.error("call %s: cannot make prompt audio (%s)", self.call_sid, exc)
            return False
        if not audio:
            return True
        if self._response_from is not None:
            waited = max(0.0, time.monotonic() - self._response_from)
            self.rt.metrics.response.observe(waited)
            self._response_from = None
            if self._timing is not None:
                self._timing["response_ms"] = round(waited * 1000)
        self._timing = None
        for message in codec.encode_media(self.start.stream_sid, audio):
            self._send(message)
        self._marks += 1
        # Only a number: mark names travel to Twilio and appear in its logs, and a prompt may read
        # back the caller's own values.
        mark = str(self._marks)
        self._send(codec.encode_mark(self.start.stream_sid, mark))
        self._exec(self.turns.say(mark, len(audio) / 8000, say.barge_in))
        return True

    # -- the end of the call --------------------------------------------------------------------

    def _store_ending(self, ending: Transfer | Hangup, announce: str | bool = False) -> None:
        """What /twilio/after-stream must answer; stored once, whatever order hang-up and transfer come in.

        Once per session, and once per call: ``/twilio/after-stream`` (another thread or node)
        stores an ending of its own when it finds none, which a caller who hangs up during the
        transfer announcement can make it do before this one is stored. Only the first ending
        stored counts: the transfer is counted and its context enqueued only by the one who stored it.
        """
        if self.ending is not None:
            return
        self.ending = ending
        if isinstance(ending, Transfer):
            record = handoff_record(ending.context, waited_seconds=self._waited())
            stored = self.rt.store.update_first(
                self.call_sid, "ending", {"action": "transfer", "queue": ending.queue, "reason": ending.reason,
                                          "context": record},
                announce=announce, language=self.engine.flow.language)
            if stored:
                self.rt.metrics.transfers.labels(reason=ending.reason).inc()
                self.rt.enqueue_handoff(record)
        else:
            stored = self.rt.store.update_first(self.call_sid, "ending", {"action": "hangup", "reason": ending.reason})
        if not stored:
            log.info("call %s: its ending was already stored elsewhere; keeping that one", self.call_sid)

    def _waited(self) -> float | None:
        """The caller's time on the line so far (the call's start to now, in the flow's time zone)."""
        return seconds_since(self.state.started_at, self.rt.local_time(self.engine.flow))

    def _fail(self, what: str) -> None:
        """Something on our side broke: the engine hands the call to a person, Twilio's voice announces it."""
        if self.state is None:
            self.closed = True
            self._close_socket()
            return
        try:
            actions = self._settled(self.engine.handle(self.state, SystemFailure(what)))
        except Exception:
            log.exception("call %s: the engine failed too; after-stream hands the caller over", self.call_sid)
            actions = []
        transfer, said = handover(actions)
        if transfer is not None:
            self._store_ending(transfer, announce=said or True)
        self._save()
        self._finish()

    def _hung_up(self) -> None:
        if self.state is not None and not self.state.ended:
            self.engine.handle(self.state, CallEnded("hangup"))
            self._remember_unfinished()
        self._exec(self.turns.hung_up())
        self._save()
        self.closed = True
        self._shutdown()

    def on_socket_closed(self) -> None:
        """The socket is gone (Twilio closed it, or it broke): the call's side of things ends here."""
        with self._lock:
            if not self.closed and self.state is not None and not self.state.ended:
                # The socket died mid-call. Twilio asks /twilio/after-stream if the caller is still
                # there: a person takes over with everything said so far (and after-stream forgets
                # the call kept here); a caller who is gone may call back and go on.
                if not (self.rt.store.get(self.call_sid) or {}).get("ending"):
                    self._remember_unfinished()
                self._fail("the media stream broke")
            self.closed = True
            self._shutdown()

    def _remember_unfinished(self) -> None:
        remember_unfinished(self.rt.store.redis, self.state, self.engine.flow, self.rt.settings.hash_salt)

    def _finish(self) -> None:
        """Everything has been said: close the socket so Twilio asks /twilio/after-stream what next."""
        if self.closed:
            return
        self.closed = True
        self._shutdown()
        self._close_socket()

    def _close_socket(self) -> None:
        try:
            self._close()
        except Exception as exc:  # the socket may already be gone
            log.debug("call %s: closing the socket: %s", self.call_sid, exc)

    def _stop_recognizer(self) -> None:
        recognizer, self.recognizer, self._asr_turn = self.recognizer, None, None
        if recognizer is not None:
            recognizer.close(timeout=0)

    def _shutdown(self) -> None:
        self._stop_recognizer()
        if self.start is not None and not self._released:
            self._released = True
            self.rt.metrics.active_calls.dec()
            self.rt.release_stream(self.start.call_sid)

    def _save(self) -> None:
        if self.state is not None:
            self.rt.store.update(self.call_sid, state=self.state.to_dict(), flow=self.engine.flow.id,
                                 flow_version=self.engine.flow.version, timings=self.timings,
                                 stream_sid=self.start.stream_sid)

    def _send(self, message: str) -> None:
        with self._send_lock:
            try:
                self._send_raw(message)
            except Exception as exc:
                log.warning("call %s: sending to Twilio failed: %s", self.call_sid, exc)
