"""Our own end-of-speech decision, frame by frame, because Vosk's is too slow and sometimes never comes.

vosk 0.3.45 has no endpointer API: its endpoint rules come from the model's conf and took a median
1.4 s after the caller stopped, and on digital silence some utterances only ended through the 20 s
rule. A caller waiting that long thinks the line is dead. So a voice activity detector (webrtcvad,
made for 8 kHz 20 ms frames) labels each frame, and this small state machine decides:

- speech started: ``min_speech_ms`` of speech, so a cough or a click does not cut a prompt off
  (barge-in) and is not taken as an answer;
- speech ended: ``end_silence_ms`` of non-speech after it started. webrtcvad already keeps
  calling frames speech for ~100-120 ms after the voice stops (measured), so 180 ms here ends an
  open answer ~290 ms after the last sound. A longer pause inside an answer splits it unless the
  last word announces more (below); the flat 240 ms used before that made every answer wait
  ~350 ms. When the turn has a shape (``end_of_turn.TurnShape``), the silence depends on the
  text so far: a complete answer ends after ``end_silence_closed_ms``, one whose last word
  announces more waits ``end_silence_extended_ms``. The endpointer asks for the text
  (``wants_text``; the caller answers with ``hear``) only inside a pause and only when it can
  change the decision: on each frame from the short silence to the ordinary one for a turn with
  complete answers, and at the ordinary one for an open turn. Not at the onset: Vosk's partial lags the audio (a short "네"
  showed up ~160 ms after webrtcvad's onset of silence, measured), and a partial costs ~10-20 µs,
  so at most ``(end_silence_ms - end_silence_closed_ms) / 20 + 1`` asks per pause, none in speech;
- no input: nothing started within the listen timeout, counted from when it is armed (the end
  of the prompt), not from when listening began;
- too long: an utterance still going after ``max_utterance_seconds`` is cut off.

Time is counted in frames, not wall-clock, so the decision is the same in a test as on a call.
"""

from __future__ import annotations

from voicebot.config import SpeechSettings
from voicebot.speech.end_of_turn import COMPLETE, MORE, OPEN, OPEN_SHAPE, TurnShape

FRAME_MS = 20

STARTED, ENDED, NO_INPUT, TOO_LONG = "started", "ended", "no_input", "too_long"

EndpointConfig = SpeechSettings
"""The endpointer's timings are config.yaml's ``speech`` section (``end_silence_ms``, ``min_speech_ms``,
``max_utterance_seconds``), defaults included: ``EndpointConfig(end_silence_ms=2000)`` is a
``SpeechSettings`` with one timing changed."""


class Endpointer:
    """Feed one speech/no-speech flag per 20 ms frame; get back at most one event per frame."""

    def __init__(self, config: EndpointConfig, no_input_timeout: float | None = None,
                 shape: TurnShape = OPEN_SHAPE):
        self.config = config
        self.shape = shape
        self._min_speech = max(1, config.min_speech_ms // FRAME_MS)
        self._end_silence = max(1, config.end_silence_ms // FRAME_MS)
        self._silence_for = {
            OPEN: self._end_silence,
            COMPLETE: max(1, config.end_silence_closed_ms // FRAME_MS),
            MORE: max(1, config.end_silence_extended_ms // FRAME_MS),
        }
        # silence frames at which the text can change the decision (see the module's docstring)
        if shape.phrases or shape.digits:
            self._ask_at = set(range(self._silence_for[COMPLETE], self._end_silence + 1))
        else:
            self._ask_at = {self._end_silence} if shape.more_words else set()
        self.ending = OPEN
        self.wants_text = False
        self._max_frames = int(config.max_utterance_seconds * 1000 // FRAME_MS)
        self._no_input_frames: int | None = None
        self._armed_at = 0
        self.frames = 0
        self.speaking = False
        self.done = False
        self._run = 0            # consecutive speech frames (a one-frame dip is forgiven)
        self._gap = 0
        self._silence = 0
        self.speech_start_frame: int | None = None
        self.last_speech_frame: int | None = None
        if no_input_timeout is not None:
            self.arm(no_input_timeout)

    def arm(self, timeout: float) -> None:
        """Start the no-input clock now (the prompt has finished playing)."""
        self._no_input_frames = max(1, int(timeout * 1000 // FRAME_MS))
        self._armed_at = self.frames

    def push(self, is_speech: bool) -> str | None:
        self.wants_text = False
        if self.done:
            return None
        self.frames += 1
        if is_speech:
            self.last_speech_frame = self.frames
        if not self.speaking:
            return self._before_speech(is_speech)
        return self._during_speech(is_speech)

    def _before_speech(self, is_speech: bool) -> str | None:
        if is_speech:
            self._run += 1
            self._gap = 0
        elif self._run:
            self._gap += 1
            if self._gap > 1:
                self._run, self._gap = 0, 0
        if self._run >= self._min_speech:
            self.speaking = True
            self.speech_start_frame = self.frames - self._run - self._gap + 1
            self._silence = 0
            return STARTED
        if self._no_input_frames is not None and self.frames - self._armed_at >= self._no_input_frames:
            self.done = True
            return NO_INPUT
        return None

    def _during_speech(self, is_speech: bool) -> str | None:
        if is_speech:
            self._silence, self.ending = 0, OPEN      # the answer is growing: judged again at its next pause
        else:
            self._silence += 1
        if self._silence in self._ask_at and self.ending != MORE:
            self.wants_text = True     # decided in ``hear``; unheard, the next frame decides on what is known
            return None
        return self._decide()

    def hear(self, text: str) -> str | None:
        """The text recognised so far, asked for by ``wants_text``: ENDED if it ends the turn now."""
        self.wants_text = False
        if self.done or not self.speaking:
            return None
        self.ending = self.shape.ending(text)
        return self._decide()

    def _decide(self) -> str | None:
        if self._silence >= self._silence_for[self.ending]:
            self.done = True
            return ENDED
        if self.frames - (self.speech_start_frame or 0) >= self._max_frames:
            self.done = True
            return TOO_LONG
        return None

    @property
    def trailing_silence_ms(self) -> int:
        return self._silence * FRAME_MS
