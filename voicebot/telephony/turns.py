"""Turn-taking on a phone line, without I/O: who may speak when, and when the caller's turn is over.

The call loop feeds this object what happened (audio time passing, the caller starting to speak,
a recognised utterance, a key, a mark echoed by Twilio) and what the dialog engine wants said;
it answers with commands (clear the playing audio, start or stop recognising, arm the recogniser's
no-input clock, hand an event to the engine, close the stream). It owns no thread, socket or
timer, and reads no clock but the one it is fed, so its tests run in milliseconds.

The rules it keeps:

- A prompt counts as heard when Twilio echoes its mark, not when its bytes were sent. Twilio plays
  queued audio in order, so each prompt is expected to end when the one before it ends plus its
  own length; a mark that has not come back ``MARK_MARGIN`` seconds after its own expected end is
  taken as lost and the call goes on (a lost mark must not stall the call, and a long first prompt
  must not make the marks after it look late).
- The caller's time to answer (the no-input clock) starts when the last prompt has been heard.
- Barge-in: speech (already at least ``min_speech_ms`` long, decided by the recogniser) or a key
  while every queued prompt allows it clears the audio at once. A prompt that does not allow
  barge-in is not listened over: recognition starts when its mark comes back.
- End of turn: the turn's shape (``end_of_turn.TurnShape``) goes to the recogniser with the
  turn: the grammar's phrases and the expected digit count make a complete answer end after a
  short silence, and the language's words that announce more make a pause to think last longer.
  A free question with no digit count is open: the ordinary silence, with only the words that
  announce more.
- Keys: collected up to the finish key, ``max_digits`` or the inter-digit timeout, whichever
  comes first; keys being typed take the turn even if the recogniser also heard something.
- The end of the call (transfer or hang-up) waits for the last prompt to be heard, then closes.

Time is the call's own audio clock: Twilio sends a frame every 20 ms for as long as the call
lives, so timers need no thread, and a dead stream has no timers left to fire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from voicebot.dialog.actions import Hangup, Listen, Transfer
from voicebot.dialog.events import Digits, Event, NoInput, SpeechUnavailable, Utterance
from voicebot.nlu.lexicon import DIGIT_WORDS, MORE_WORDS
from voicebot.speech.end_of_turn import TurnShape, normalize

log = logging.getLogger("voicebot.turns")

MARK_MARGIN = 3.0
"""Seconds past a prompt's expected end before its mark is taken as lost.

Twilio echoes a mark once the audio before it has played; network jitter and Twilio's own
buffering add well under a second. Three seconds leaves room for a slow link without letting a
lost mark hold a caller in silence for long."""


# -- commands -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clear:
    """Drop the audio Twilio still has queued (the caller barged in)."""


@dataclass(frozen=True)
class StartRecognition:
    """Start a recognition turn with these phrases (empty: free-form); ``shape`` says when the answer is whole."""

    phrases: tuple[str, ...] = ()
    shape: TurnShape = TurnShape()


@dataclass(frozen=True)
class StopRecognition:
    """The turn is over: stop recognising (audio arriving now belongs to no turn)."""


@dataclass(frozen=True)
class ArmRecognizer:
    """The prompt has been heard: the recogniser's no-input clock starts now."""

    timeout: float


@dataclass(frozen=True)
class ToDialog:
    """An event for the dialog engine; its actions come back through ``say``/``listen``/``end``."""

    event: Event


@dataclass(frozen=True)
class CloseStream:
    """Everything has been said: close the socket so Twilio asks what comes next."""


Command = Clear | StartRecognition | StopRecognition | ArmRecognizer | ToDialog | CloseStream


def shape_of(action: Listen, language: str = "") -> TurnShape:
    """What a complete spoken answer to ``action`` looks like.

    A grammar's phrases are whole answers. More than one key expected (a customer number, a date
    of birth in eight) means a number read out digit by digit: complete at that many digits, and
    a lone digit word of the grammar is not yet the answer. A single key (a menu, a yes/no) says
    nothing about the spoken answer.
    """
    digits = action.max_digits if action.max_digits and action.max_digits > 1 else None
    return TurnShape(phrases=frozenset(normalize(p) for p in action.phrases if p.strip()),
                     digits=digits,
                     digit_words=frozenset(DIGIT_WORDS.get(language, {})) if digits else frozenset(),
                     more_words=MORE_WORDS.get(language, frozenset()))


# -- state ----------------------------------------------------------------------------------------

@dataclass
class _Prompt:
    mark: str
    barge_in: bool
    ends_at: float          # expected end of playback on the audio clock
    cleared: bool = False   # a clear went out for it; only its mark echo is awaited


@dataclass
class _Turn:
    action: Listen
    recognizing: bool = False     # a recognition turn is running
    started: bool = False         # recognition (or keypad-only listening) has begun
    digits: str = ""
    digit_deadline: float | None = None
    no_input_deadline: float | None = None
    armed: bool = False
    heard_speech: bool = False


@dataclass
class TurnTaker:
    """One call's turn-taking. Every method returns the commands to carry out, in order."""

    speech: bool = True
    language: str = ""
    clock: float = 0.0
    prompts: list[_Prompt] = field(default_factory=list)
    turn: _Turn | None = None
    ending: Transfer | Hangup | None = None
    closed: bool = False

    # -- what the engine wants ----------------------------------------------------------------

    def say(self, mark: str, seconds: float, barge_in: bool) -> list[Command]:
        """A prompt of ``seconds`` was queued with Twilio, followed by ``mark``."""
        start = max(self.clock, self.prompts[-1].ends_at) if self.prompts else self.clock
        self.prompts.append(_Prompt(mark, barge_in, start + seconds))
        return []

    def listen(self, action: Listen) -> list[Command]:
        self.turn = _Turn(action)
        commands: list[Command] = []
        if self._interruptible():
            commands += self._start_turn()
        if not self.prompts:
            commands += self._arm()
        return commands

    def end(self, action: Transfer | Hangup) -> list[Command]:
        """The call ends once what is queued has been heard."""
        self.ending = action
        commands = self._stop_turn()
        if not self.prompts:
            commands += self._close()
        return commands

    # -- what the caller and Twilio do ----------------------------------------------------------

    def tick(self, seconds: float) -> list[Command]:
        """``seconds`` of the caller's audio arrived: the audio clock moves, timers may fire."""
        self.clock += seconds
        commands: list[Command] = []
        turn = self.turn
        if turn is not None:
            if turn.digit_deadline is not None and self.clock >= turn.digit_deadline:
                commands += self._submit_digits()
            elif turn.no_input_deadline is not None and self.clock >= turn.no_input_deadline:
                commands += self._to_dialog(NoInput())
        lost = False
        while self.prompts and self.clock > self.prompts[0].ends_at + MARK_MARGIN:
            log.warning("no mark back for prompt %s; going on", self.prompts.pop(0).mark)
            lost = True
        if lost and not self.prompts:
            commands += self._prompts_heard()
        return commands

    def mark(self, name: str) -> list[Command]:
        """Twilio echoed a mark: that prompt, and any before it, has been played (or cleared)."""
        index = next((i for i, p in enumerate(self.prompts) if p.mark == name), None)
        if index is None:
            return []
        del self.prompts[:index + 1]
        return self._prompts_heard() if not self.prompts else []

    def speech_started(self) -> list[Command]:
        turn = self.turn
        if turn is None or not turn.recognizing:
            return []
        turn.heard_speech = True
        turn.no_input_deadline = None
        return self._barge_in()

    def utterance(self, utterance: Utterance) -> list[Command]:
        turn = self.turn
        if turn is None or not turn.recognizing or turn.digits:
            return []          # no turn, or the caller is keying in: the keys answer this turn
        if not utterance.text:
            # Noise that looked like speech: the same turn goes on with a fresh recognition.
            return [StopRecognition(), *self._restart_turn()]
        return self._to_dialog(utterance)

    def no_speech(self) -> list[Command]:
        """The recogniser's no-input clock ran out."""
        if self.turn is None or not self.turn.recognizing:
            return []
        return self._to_dialog(NoInput())

    def speech_failed(self, reason: str) -> list[Command]:
        """Recognition cannot go on (it failed, or fell behind): the engine moves the call to keys."""
        if not self.speech:
            return []
        self.speech = False
        commands = self._stop_turn()
        if self.ending is not None:
            return commands
        return commands + [ToDialog(SpeechUnavailable(reason))]

    def key(self, digit: str) -> list[Command]:
        turn = self.turn
        if turn is None or not turn.action.dtmf:
            return [Clear()] if self._can_interrupt() else []
        commands = self._barge_in()
        turn.no_input_deadline = None
        if digit == turn.action.finish_key:
            return commands + self._submit_digits()
        turn.digits += digit
        limit = turn.action.max_digits
        if limit and len(turn.digits) >= limit:
            return commands + self._submit_digits()
        turn.digit_deadline = self.clock + turn.action.inter_digit_timeout
        return commands

    def hung_up(self) -> list[Command]:
        """The stream stopped: nothing more will be heard or said."""
        self.closed = True
        self.prompts = []
        return self._stop_turn()

    # -- inside ---------------------------------------------------------------------------------

    @property
    def recognizing(self) -> bool:
        """Whether the caller's audio should go to the recogniser now."""
        return self.turn is not None and self.turn.recognizing

    def _interruptible(self) -> bool:
        return all(p.barge_in for p in self.prompts)

    def _can_interrupt(self) -> bool:
        return (any(not p.cleared for p in self.prompts) and self._interruptible()
                and self.ending is None)

    def _barge_in(self) -> list[Command]:
        if not self._can_interrupt():
            return []
        # Twilio echoes the cleared marks at once; should it not, their deadlines start from now.
        for prompt in self.prompts:
            prompt.ends_at, prompt.cleared = min(prompt.ends_at, self.clock), True
        return [Clear()]

    def _start_turn(self) -> list[Command]:
        turn = self.turn
        if turn is None or turn.started:
            return []
        turn.started = True
        if self.speech and turn.action.speech:
            turn.recognizing = True
            return [StartRecognition(turn.action.phrases, shape_of(turn.action, self.language))]
        return []              # keys only: the turn exists, nothing recognises

    def _restart_turn(self) -> list[Command]:
        action = self.turn.action
        self.turn = None
        return self.listen(action)

    def _stop_turn(self) -> list[Command]:
        turn, self.turn = self.turn, None
        return [StopRecognition()] if turn is not None and turn.recognizing else []

    def _arm(self) -> list[Command]:
        """The prompt has been heard: the caller's time to answer starts now."""
        turn = self.turn
        if turn is None or turn.armed:
            return []
        turn.armed = True
        if turn.heard_speech or turn.digits:
            return []
        timeout = turn.action.no_input_timeout
        if turn.recognizing:
            return [ArmRecognizer(timeout)]
        turn.no_input_deadline = self.clock + timeout
        return []

    def _prompts_heard(self) -> list[Command]:
        if self.ending is not None:
            return self._close()
        return self._start_turn() + self._arm()

    def _submit_digits(self) -> list[Command]:
        turn = self.turn
        digits, turn.digits, turn.digit_deadline = turn.digits, "", None
        if not digits:
            # A lone finish key: the caller's time to answer starts again.
            if not turn.heard_speech:
                turn.no_input_deadline = self.clock + turn.action.no_input_timeout
            return []
        return self._to_dialog(Digits(digits))

    def _to_dialog(self, event: Event) -> list[Command]:
        return [*self._stop_turn(), ToDialog(event)]

    def _close(self) -> list[Command]:
        if self.closed:
            return []
        self.closed = True
        return [CloseStream()]
