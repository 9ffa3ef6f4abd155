"""Streaming offline recognition with Vosk: one model per language per process, one recogniser per turn.

What shaped this module (measured with vosk 0.3.45, see the README's speech section):

- A model takes ~1.5 s and ~0.5 GB to load, so ``SpeechModels`` loads each language once, on
  first use, under a lock, and every call shares it.
- A fresh free-form recogniser costs ~90 ms to create and decodes at about four times the CPU in
  its first seconds while it fills its lookahead cache. So free-form recognisers are pooled per
  model (``pool.py``: one per call the process takes, warmed ahead of demand) and reset between
  turns, and retired after some minutes of audio because their memory only grows. Grammar
  recognisers cost ~1 ms and ~3 MB and are made per turn.
- The listen action's phrases become a constrained grammar. Phrases with words the model does not
  know are dropped (Vosk would silently drop the word and so change the phrase), ``[unk]`` is added
  where the model has it, and a model without a dynamic graph (no ``graph/HCLr.fst``) falls back to
  free recognition with one warning.
- Vosk's own endpoint is slow and can be missed, so ``Endpointer`` decides when speech starts and
  ends from webrtcvad's per-frame decision; Vosk's segment results are kept and joined.
- Vosk decodes only speech: until the endpointer hears speech start, frames wait in a short ring
  (``LEAD_IN_MS``, so Vosk still gets the onset the detector heard late) and are never decoded.
  A caller spends most of a call listening to prompts; decoding that silence and echo was most
  of the CPU a call took, and a turn that heard nothing hands its recogniser back untouched.
- Once speech started, Vosk gets it in 100 ms chunks (``VOSK_CHUNK_FRAMES``); webrtcvad and the
  endpointer still look at every 20 ms frame, and whatever is held back is decoded before a
  result or a partial is read, so no decision waits for it.
- ``AcceptWaveform`` releases the GIL (cffi), so decoding runs on threads: ``StreamingRecognizer``
  gives each call one decode thread, fed through a queue by the socket's thread, so a slow decode
  never stalls the audio of any call. That queue holds at most about a second of audio: a call
  that cannot be decoded in time goes on by keypad instead of answering later and later.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import webrtcvad

from voicebot.config import SpeechSettings
from voicebot.errors import VoicebotError
from voicebot.speech.audio import PHONE_RATE, ulaw_to_pcm
from voicebot.speech.end_of_turn import OPEN_SHAPE, TurnShape
from voicebot.speech.endpoint import ENDED, NO_INPUT, STARTED, TOO_LONG, EndpointConfig, Endpointer
from voicebot.speech.models import ModelCorrupt, check_model_dir, has_dynamic_graph, model_dir
from voicebot.speech.pool import POOL_SIZE, RecognizerPool

log = logging.getLogger("voicebot.speech")

FRAME_PCM_BYTES = 320              # 20 ms of 16-bit PCM at 8 kHz
PARTIAL_EVERY_FRAMES = 5           # Vosk's partial changes about every 0.24 s; asking each 100 ms is enough
LEAD_IN_MS = 300                   # audio before the endpointer's speech start that Vosk still decodes
VOSK_CHUNK_FRAMES = 5              # speech goes to Vosk 100 ms at a time: a third fewer calls' overhead, same result
MAX_BACKLOG_SECONDS = 1.0          # audio waiting undecoded before a call stops taking more (goes to the keypad)
UNKNOWN_TOKENS = ("[unk]", "<UNK>")


# -- results and events ------------------------------------------------------------------------------

@dataclass(frozen=True)
class WordTiming:
    word: str
    confidence: float
    start: float
    end: float


@dataclass(frozen=True)
class Recognized:
    """One utterance. ``reason``: ended (our endpointer), too_long, or flush (audio ran out).

    Every time (word start and end, speech_start, speech_end) is in seconds from the start of the
    recording or call. This is the recogniser's own result type: ``speech/`` knows nothing of the
    dialog, and the telephony adapter turns it into the dialog's event.
    """

    text: str
    words: tuple[WordTiming, ...]
    grammar: bool
    reason: str
    speech_start: float | None = None
    speech_end: float | None = None

    @property
    def confidence(self) -> float:
        return sum(w.confidence for w in self.words) / len(self.words) if self.words else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": round(self.confidence, 3), "grammar": self.grammar,
                "reason": self.reason, "speech_start": self.speech_start, "speech_end": self.speech_end,
                "words": [{"word": w.word, "confidence": round(w.confidence, 3), "start": w.start, "end": w.end}
                          for w in self.words]}


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started talking (long enough not to be noise): time for barge-in."""

    at: float
    turn: int = 0


@dataclass(frozen=True)
class Partial:
    text: str
    turn: int = 0


@dataclass(frozen=True)
class Final:
    """``arrived``: when the frame that ended the utterance reached ``feed`` (time.monotonic)."""

    result: Recognized
    turn: int = 0
    arrived: float = 0.0


@dataclass(frozen=True)
class NoSpeech:
    """Nothing was said before the no-input timeout."""

    turn: int = 0


@dataclass(frozen=True)
class RecognitionFailed:
    """The recogniser broke during a turn; the call must go on without it."""

    error: str
    turn: int = 0


SpeechEvent = SpeechStarted | Partial | Final | NoSpeech | RecognitionFailed


# -- models --------------------------------------------------------------------------------------------

def _vosk():
    import vosk

    vosk.SetLogLevel(-1)
    return vosk


class LoadedModel:
    """A Vosk model in memory plus the pool of free-form recognisers made from it (``pool.py``)."""

    def __init__(self, language: str, path: Path, pool_size: int = POOL_SIZE):
        vosk = _vosk()
        check_model_dir(path)
        self.language = language
        self.path = path
        try:
            self.model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelCorrupt(f"speech model for '{language}' at {path} cannot be loaded ({exc}); "
                               f"reinstall it with `voicebot models install {language}`") from None
        self.dynamic_graph = has_dynamic_graph(path)
        self._has_unk = self.model.vosk_model_find_word("[unk]") != -1
        self.pool = RecognizerPool(lambda: vosk.KaldiRecognizer(self.model, PHONE_RATE), pool_size)
        self._warned = False

    def grammar(self, phrases: tuple[str, ...] | list[str]) -> list[str] | None:
        """The phrases as a Vosk grammar, or None for free recognition."""
        if not phrases:
            return None
        if not self.dynamic_graph:
            if not self._warned:
                log.warning("speech model %s has no dynamic graph (graph/HCLr.fst): constrained grammars fall "
                            "back to free recognition", self.path)
                self._warned = True
            return None
        known = [p for p in dict.fromkeys(p.strip().lower() for p in phrases) if p and self._knows(p)]
        if not known:
            return None
        return known + (["[unk]"] if self._has_unk else [])

    def _knows(self, phrase: str) -> bool:
        return all(self.model.vosk_model_find_word(w) != -1 for w in phrase.split())

    def recognizer(self, grammar: list[str] | None, rate: int = PHONE_RATE) -> tuple[Any, float]:
        """A recogniser and the seconds of audio it has decoded so far (0 for a new one)."""
        vosk = _vosk()
        if grammar is not None:
            rec, used = vosk.KaldiRecognizer(self.model, rate, json.dumps(grammar, ensure_ascii=False)), 0.0
        elif rate != PHONE_RATE:
            rec, used = vosk.KaldiRecognizer(self.model, rate), 0.0
        else:
            rec, used = self.pool.take()
        rec.SetWords(True)
        return rec, used

    def release(self, rec: Any, grammar: bool, seconds: float, rate: int = PHONE_RATE, *, used: bool = True) -> None:
        """Return a free-form recogniser to the pool, reset; retire it once it has decoded a lot.

        ``seconds``: all the audio it has decoded since it was made, which is where Vosk's clock for
        its next words starts (see ``Recognition``). ``FinalResult()`` comes first because vosk
        0.3.45's ``Reset()`` alone keeps its feature pipeline: the last frames of a cancelled turn
        were then decoded into the next caller's first words. A second ``FinalResult()`` is a no-op.
        ``used=False``: the turn gave it no audio, so it goes back as it came, without either call.
        """
        if grammar or rate != PHONE_RATE:
            return
        self.pool.give_back(rec, seconds, used)

    def warm(self, count: int = 1, pcm: bytes = b"") -> None:
        """Fill the pool with ``count`` recognisers that have decoded some speech (8 kHz PCM), so first
        calls are not slow, and let the pool warm more on the same speech as calls come in.

        A fresh recogniser decodes at about four times the CPU until its lookahead cache fills;
        warmed on any speech in the language (the flows' own synthesised prompts will do) it does not.
        """
        self.pool.warm(count, pcm)


class SpeechModels:
    """One loaded model per language for the whole process; thread-safe, loads lazily.

    ``pool_size``: free-form recognisers each model keeps, one per call the process takes."""

    def __init__(self, speech: SpeechSettings, pool_size: int = POOL_SIZE):
        self.speech = speech
        self.pool_size = pool_size
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, language: str) -> LoadedModel:
        """The model for ``language``; raises ModelMissing or ModelCorrupt with the fix in the message."""
        with self._lock:
            loaded = self._models.get(language)
            if loaded is None:
                loaded = LoadedModel(language, model_dir(language, self.speech), self.pool_size)
                self._models[language] = loaded
            return loaded

    def endpoint_config(self) -> EndpointConfig:
        return self.speech


# -- one turn ------------------------------------------------------------------------------------------

class Recognition:
    """One listening turn, fed 16-bit 8 kHz PCM; single-threaded (``StreamingRecognizer`` adds the thread).

    ``offset``: where this turn's first sample lies on the recording's or call's clock; every time
    in the result and in ``SpeechStarted`` is on that clock.

    Vosk's word times are not: vosk 0.3.45 stamps a word ``samples_round_start / rate + frame *
    0.03``, and ``samples_round_start`` is every sample the recogniser has taken since it was made.
    Neither ``Reset()`` nor a segment result (``AcceptWaveform`` True) nor ``FinalResult()`` sets it
    back (measured: the same 5.4 s recording, fed again after ``FinalResult()`` and ``Reset()``, had
    its words 5.4 s later, and 10.8 s later the third time). So a pooled recogniser's times are
    shifted by all the audio it decoded before this turn (``used``, which the pool keeps for
    retiring it anyway); that is taken off here. Within a turn Vosk's clock runs on across its
    segments, so nothing else is needed. A fresh or grammar recogniser starts at 0.

    Vosk hears only the turn's speech (from ``LEAD_IN_MS`` before the endpointer's start): the
    frames before it are not on Vosk's clock either, so they are added back when decoding starts.
    ``partials``: send ``Partial`` events while the caller speaks (nothing in a call reads them;
    ``text_so_far`` gives the same text to whoever asks).
    """

    def __init__(self, model: LoadedModel, phrases: tuple[str, ...] | list[str] = (), *,
                 config: EndpointConfig | None = None, no_input_timeout: float | None = None,
                 vad_mode: int = 2, offset: float = 0.0, rate: int = PHONE_RATE, partials: bool = False,
                 shape: TurnShape = OPEN_SHAPE):
        self.model = model
        self._offset = offset
        self.rate = rate
        self._frame_bytes = rate * 2 * 20 // 1000
        grammar = model.grammar(tuple(phrases))
        self.grammar = grammar is not None
        self._rec, self._used = model.recognizer(grammar, rate)
        self._shift = offset - self._used          # Vosk's clock to ours
        self._vad = webrtcvad.Vad(vad_mode)
        config = config or EndpointConfig()
        self.endpointer = Endpointer(config, no_input_timeout, shape)
        self._buffer = b""
        self._segments: list[dict[str, Any]] = []
        self._partials = partials
        self._partial = ""
        self._frames = 0
        self._decoded = 0                          # frames given to Vosk
        self._held: list[bytes] = []               # speech frames waiting for a whole chunk
        # frames heard before speech started, the endpointer's start and the lead-in before it
        self._lead: collections.deque[bytes] | None = collections.deque(
            maxlen=LEAD_IN_MS // 20 + max(1, config.min_speech_ms // 20) + 1)
        self.done = False
        self.result: Recognized | None = None

    @property
    def seconds(self) -> float:
        return self._frames * 0.02

    def arm(self, timeout: float) -> None:
        self.endpointer.arm(timeout)

    def accept(self, pcm: bytes) -> list[SpeechEvent]:
        """Feed audio; returns what happened (speech started, a new partial, the final result, no input)."""
        size = self._frame_bytes
        if len(pcm) == size and not self._buffer:            # a call's frame: no copying
            return [] if self.done else self._frame(pcm)
        events: list[SpeechEvent] = []
        self._buffer += pcm
        while len(self._buffer) >= size and not self.done:
            frame, self._buffer = self._buffer[:size], self._buffer[size:]
            events.extend(self._frame(frame))
        return events

    def _frame(self, frame: bytes) -> list[SpeechEvent]:
        self._frames += 1
        events: list[SpeechEvent] = []
        decision = self.endpointer.push(self._vad.is_speech(frame, self.rate))
        self._decode(frame, decision == STARTED)
        if self._partials and self.endpointer.speaking and self._frames % PARTIAL_EVERY_FRAMES == 0:
            text = self.text_so_far()
            if text and text != self._partial:
                self._partial = text
                events.append(Partial(text))
        if self.endpointer.wants_text:     # end of turn: a pause began or a short one is up; is the answer whole?
            decision = self.endpointer.hear(self.text_so_far()) or decision
        if decision == STARTED:
            events.append(SpeechStarted(at=round((self.endpointer.speech_start_frame or 1) * 0.02 - 0.02
                                                 + self._offset, 2)))
        elif decision in (ENDED, TOO_LONG):
            events.append(Final(self.finish("ended" if decision == ENDED else "too_long")))
        elif decision == NO_INPUT:
            self.done = True
            self.close()
            events.append(NoSpeech())
        return events

    def _decode(self, frame: bytes, started: bool) -> None:
        """Give Vosk this frame once speech has started, with the lead-in before it; keep it back until then."""
        lead = self._lead
        if lead is not None:
            lead.append(frame)
            if not started:
                return
            self._lead = None
            self._shift += (self._frames - len(lead)) * 0.02     # frames Vosk never heard
            self._held.extend(lead)
        else:
            self._held.append(frame)
        if len(self._held) >= VOSK_CHUNK_FRAMES:
            self._flush()

    def _flush(self) -> None:
        """Decode the frames held back for a whole chunk."""
        if not self._held:
            return
        self._decoded += len(self._held)
        chunk = b"".join(self._held)
        self._held.clear()
        if self._rec.AcceptWaveform(chunk):
            segment = json.loads(self._rec.Result())
            if segment.get("text"):
                self._segments.append(segment)

    def text_so_far(self) -> str:
        """What Vosk has recognised in this turn until now (its segments and current partial)."""
        if self._rec is None or self._lead is not None:
            return " ".join(s["text"] for s in self._segments)
        self._flush()
        return " ".join([*(s["text"] for s in self._segments),
                         json.loads(self._rec.PartialResult()).get("partial", "")]).strip()

    def finish(self, reason: str = "flush") -> Recognized:
        """Stop now and return what was heard (Vosk's FinalResult plus earlier segments)."""
        if self.result is not None:
            return self.result
        self.done = True
        self._flush()
        last = json.loads(self._rec.FinalResult()) if self._decoded else {}
        segments = [*self._segments, last]
        off, shift = self._offset, self._shift
        end = off + self.seconds                   # Vosk rounds to 30 ms frames: never past the audio
        words = tuple(WordTiming(w["word"], float(w.get("conf", 1.0)),
                                 round(min(max(float(w["start"]) + shift, off), end), 2),
                                 round(min(max(float(w["end"]) + shift, off), end), 2))
                      for s in segments for w in s.get("result", []))
        text = " ".join(s.get("text", "") for s in segments if s.get("text")).strip()
        ep = self.endpointer
        self.result = Recognized(
            text=text, words=words, grammar=self.grammar, reason=reason,
            speech_start=round((ep.speech_start_frame - 1) * 0.02 + off, 2) if ep.speech_start_frame else None,
            speech_end=round(ep.last_speech_frame * 0.02 + off, 2) if ep.last_speech_frame else None,
        )
        self.close()
        return self.result

    def close(self) -> None:
        """Give the recogniser back (idempotent)."""
        if self._rec is not None:
            self.model.release(self._rec, self.grammar, self._used + self._decoded * 0.02, self.rate,
                               used=self._decoded > 0)
            self._rec = None


def recognize_pcm(model: LoadedModel, pcm: bytes, phrases: tuple[str, ...] | list[str] = (), *,
                  config: EndpointConfig | None = None, vad_mode: int = 2, rate: int = PHONE_RATE
                  ) -> list[Recognized]:
    """Every utterance in a recording, cut by the same endpointer as a call; times are from the file's start."""
    results: list[Recognized] = []
    turn: Recognition | None = None
    step = rate * 2 * 20 // 1000
    for position in range(0, len(pcm), step):
        if turn is None:
            turn = Recognition(model, phrases, config=config, vad_mode=vad_mode, rate=rate,
                               offset=position / (2 * rate))
        results.extend(e.result for e in turn.accept(pcm[position:position + step]) if isinstance(e, Final))
        if turn.done:
            turn.close()
            turn = None
    if turn is not None:
        last = turn.finish("flush")
        if last.text:
            results.append(last)
    return results


# -- one call: the decode thread ------------------------------------------------------------------------

@dataclass
class _Turn:
    id: int
    phrases: tuple[str, ...]
    no_input_timeout: float | None
    recognition: Recognition | None = None
    shape: TurnShape = OPEN_SHAPE


class StreamingRecognizer:
    """A call's recognition on a thread of its own. Methods are safe to call from the socket thread.

    Commands and audio go through one queue, so they happen in the order they were given. Events
    (``SpeechEvent`` with the turn number) go to ``on_event`` on the decode thread; a turn that
    ends or is cancelled sends nothing more. After a final result the recogniser keeps listening
    in a new turn with the same phrases (no no-input clock), so audio that arrived while the
    dialog decides is not lost and a caller who talks over the next prompt is heard at once.

    Times in events are seconds of audio fed since the recogniser was made (the call's clock),
    whether a turn was listening or not; frames ``feed`` dropped are not on that clock.

    The queue is bounded in audio, not in items: once ``max_backlog_seconds`` of audio waits
    undecoded (the machine cannot keep up), ``feed`` drops the frame and returns False, and
    the caller goes on without speech (the keypad) rather than answering later and later. Commands
    are never dropped. The bound is two counters, each written by one thread only (``feed``'s
    thread and the decode thread), so the per-frame path takes no lock. ``close`` (a hang-up)
    stops decoding at once: audio still queued is discarded, not decoded.
    """

    _ids = itertools.count(1)

    def __init__(self, models: SpeechModels, language: str, on_event: Callable[[SpeechEvent], None], *,
                 vad_mode: int | None = None, name: str = "call",
                 max_backlog_seconds: float | None = MAX_BACKLOG_SECONDS, partials: bool = False):
        self._models = models
        self._partials = partials
        self._language = language
        self._on_event = on_event
        self._vad_mode = models.speech.vad_aggressiveness if vad_mode is None else vad_mode
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._turn: _Turn | None = None
        # mu-law bytes (one a sample): queued by feed / taken by the decode thread; one writer each
        self._fed = 0
        self._taken = 0
        self._max_backlog = (int(max_backlog_seconds * PHONE_RATE) if max_backlog_seconds is not None
                             else None)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"asr-{name}", daemon=True)
        self._thread.start()

    def listen(self, phrases: tuple[str, ...] = (), no_input_timeout: float | None = None,
               shape: TurnShape = OPEN_SHAPE) -> int:
        """Start a turn; returns its number. The no-input clock waits for ``arm`` unless a timeout is given.
        ``shape``: what a complete answer looks like, so that one ends after a shorter silence."""
        turn = _Turn(next(self._ids), tuple(phrases), no_input_timeout, shape=shape)
        self._queue.put(("listen", turn))
        return turn.id

    def arm(self, timeout: float) -> None:
        self._queue.put(("arm", timeout))

    def feed(self, ulaw: bytes) -> bool:
        """Queue a frame of the caller's mu-law audio (call from one thread).

        False: the frame was dropped, because ``max_backlog_seconds`` of audio is already waiting to
        be decoded or the recogniser is closed; the call should go on by keypad.
        """
        if self._closed or (self._max_backlog is not None and self._fed - self._taken >= self._max_backlog):
            return False
        self._fed += len(ulaw)
        self._queue.put(("audio", (ulaw, time.monotonic())))
        return True

    def cancel(self) -> None:
        self._queue.put(("cancel", None))

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call has been decoded and its events delivered.
        False on timeout or when the recogniser is closed."""
        done = threading.Event()
        self._queue.put(("drained", done))
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop at once: queued audio is discarded, no event follows. Safe from ``on_event`` (no wait then)."""
        self._closed = True
        self._queue.put(("close", None))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def backlog_seconds(self) -> float:
        """Audio fed but not yet taken by the decode thread."""
        return max(0, self._fed - self._taken) / PHONE_RATE

    def _run(self) -> None:
        get = self._queue.get
        while True:
            command, arg = get()
            if self._closed:
                self._end_turn()
                return
            try:
                self._handle(command, arg)
            except Exception as exc:  # a broken recogniser or a missing model must not kill the call's thread
                log.error("recognition failed: %s", exc, exc_info=not isinstance(exc, VoicebotError))
                turn = arg if command == "listen" else self._turn
                self._end_turn()
                if turn is not None:
                    self._emit(RecognitionFailed(str(exc) or type(exc).__name__), turn)

    def _handle(self, command: str, arg: Any) -> None:
        if command == "audio":
            ulaw, arrived = arg
            self._taken += len(ulaw)
            turn = self._turn
            if turn is None or turn.recognition is None:
                return
            events = turn.recognition.accept(ulaw_to_pcm(ulaw))
            for event in events:
                if isinstance(event, Final):
                    event = Final(event.result, arrived=arrived)
                self._emit(event, turn)
            if turn.recognition.done and self._turn is turn:
                self._end_turn()
                if not self._closed and any(isinstance(e, Final) for e in events):
                    self._handle("listen", _Turn(next(self._ids), turn.phrases, None, shape=turn.shape))
        elif command == "listen":
            self._end_turn()
            model = self._models.get(self._language)
            arg.recognition = Recognition(model, arg.phrases, config=self._models.endpoint_config(),
                                          no_input_timeout=arg.no_input_timeout, vad_mode=self._vad_mode,
                                          offset=self._taken / PHONE_RATE, partials=self._partials,
                                          shape=arg.shape)
            self._turn = arg
        elif command == "arm" and self._turn and self._turn.recognition:
            self._turn.recognition.arm(arg)
        elif command == "cancel":
            self._end_turn()
        elif command == "drained":
            arg.set()

    def _emit(self, event: SpeechEvent, turn: _Turn) -> None:
        if not self._closed:
            self._on_event(type(event)(**{**event.__dict__, "turn": turn.id}))

    def _end_turn(self) -> None:
        if self._turn is not None and self._turn.recognition is not None:
            self._turn.recognition.close()
        self._turn = None
