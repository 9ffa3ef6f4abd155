"""Free-form recognisers of one model, warm and ready before a turn asks for one.

A free-form Vosk recogniser builds its lookahead cache as it decodes: a fresh one decodes at
about four times the CPU of a used one in its first seconds (RTF 0.21 against 0.05 on the same
speech, measured), and making one costs ~90 ms. With a pool of 8 and 12 calls speaking, four
calls got a fresh recogniser on every turn and threw it away after (with a ``malloc_trim`` of the
whole heap on the decode thread): the cliff where real-time calls fell behind, at 11-12 calls on
two cores while the CPU was half idle. So:

- the pool keeps as many recognisers as the process takes calls (``size``, the runtime passes
  ``telephony.max_calls``): a call holds at most one free-form turn at a time, so no live call
  ever makes one on its turn once the pool has grown to the calls it serves;
- a keeper thread, at a low OS priority, makes and warms new recognisers ahead of demand: as
  long as fewer than ``SPARE`` wait idle and fewer than ``size`` exist, it warms one more on the
  audio ``warm`` was given (the flows' own prompts). A turn still never waits for it: with none
  idle it gets a fresh one at once, as before;
- memory: each recogniser keeps what it grew (~90 MB of lookahead cache), so one idle for
  ``IDLE_SECONDS`` beyond the ``floor`` warmed at start is freed by the keeper, and recognisers
  that decoded ``RETIRE_AFTER_SECONDS`` of audio are retired. The heap is trimmed on the keeper's
  thread after either, not on a call's: a recogniser given back is still referenced by the turn
  that gave it, so a trim there would find nothing to return. Without a keeper (nothing was
  warmed: a command-line tool) the heap is not trimmed; glibc reuses the memory.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("voicebot.speech")

RETIRE_AFTER_SECONDS = 600.0       # a free recogniser's memory grows with audio decoded and never shrinks
POOL_SIZE = 24                     # telephony.max_calls' default; the runtime passes its own
SPARE = 2                          # idle warm recognisers the keeper keeps ready while the pool may grow
IDLE_SECONDS = 600.0               # beyond the floor, a recogniser idle this long is freed
WARM_PCM_BYTES = 16000 * 10        # audio kept to warm new recognisers on (10 s of 8 kHz PCM)
KEEPER_NICE = 10                   # the keeper's warming yields to the calls' decode threads


@dataclass
class _Idle:
    rec: Any
    seconds: float                 # audio it decoded since it was made (Vosk's clock for its next words)
    since: float                   # monotonic time it was given back


class RecognizerPool:
    """Thread-safe; ``make()`` returns a fresh free-form recogniser of the model at the phone rate."""

    def __init__(self, make: Callable[[], Any], size: int = POOL_SIZE, *, spare: int = SPARE,
                 idle_seconds: float = IDLE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._make = make
        self.size = max(1, size)
        self._spare = min(spare, self.size)
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._idle: list[_Idle] = []
        self._live = 0                 # made and not freed: idle and lent
        self._floor = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None
        self._stopped = False
        self._trim_due = False         # a recogniser was dropped since the keeper last trimmed
        self._warm_pcm = b""

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def live(self) -> int:
        return self._live

    def take(self) -> tuple[Any, float]:
        """A recogniser for a turn and the seconds of audio it decoded so far; never waits."""
        with self._lock:
            if self._idle:
                entry = self._idle.pop()
                rec, seconds = entry.rec, entry.seconds
            else:
                rec, seconds = None, 0.0
                self._live += 1
            short = len(self._idle) < self._spare and self._live < self.size
        if short and self._keeper is not None:
            self._wake.set()
        if rec is None:
            rec = self._counted(self._make)
        return rec, seconds

    def give_back(self, rec: Any, seconds: float, used: bool = True) -> None:
        """Reset and keep it, unless it is retired or the pool is full (see ``LoadedModel.release``)."""
        if seconds < RETIRE_AFTER_SECONDS:
            if used:
                rec.FinalResult()
                rec.Reset()
            with self._lock:
                if len(self._idle) < self.size:
                    self._idle.append(_Idle(rec, seconds, self._clock()))
                    return
        with self._lock:
            self._live -= 1
            self._trim_due = True
        if self._keeper is not None:
            self._wake.set()           # the keeper trims the heap and may warm a replacement

    def warm(self, count: int, pcm: bytes) -> None:
        """Make ``count`` recognisers now, warmed on ``pcm`` (8 kHz speech), and start the keeper."""
        self._warm_pcm = pcm[:WARM_PCM_BYTES]
        count = min(count, self.size)
        self._floor = max(self._floor, count)
        for _ in range(count):
            with self._lock:
                self._live += 1
            rec, seconds = self._counted(self._warmed)
            with self._lock:
                self._idle.append(_Idle(rec, seconds, self._clock()))
        self._start_keeper()

    def tend(self) -> bool:
        """One round of the keeper's work: warm one more if short, free long-idle ones. True if it did something."""
        with self._lock:
            grow = len(self._idle) < self._spare and self._live < self.size
            if grow:
                self._live += 1
            now = self._clock()
            keep = max(self._floor, self._spare)     # never free what the next round would warm again
            cut = max(0, len(self._idle) - keep)     # the oldest first; the newest ``keep`` stay
            old = [e for e in self._idle[:cut] if now - e.since >= self._idle_seconds]
            self._idle = [e for e in self._idle[:cut] if now - e.since < self._idle_seconds] + self._idle[cut:]
            freed = len(old)
            self._live -= freed
            trim, self._trim_due = self._trim_due or freed > 0, False
        old.clear()                                  # the last references: trimming can return them
        if trim:
            trim_heap()
        if grow:
            try:
                rec, seconds = self._counted(self._warmed)
            except Exception as exc:
                log.error("a spare recogniser could not be made: %s", exc)
                return False
            with self._lock:
                self._idle.insert(0, _Idle(rec, seconds, self._clock()))    # taken last: the warmest go first
        return grow or bool(freed)

    def close(self) -> None:
        self._stopped = True
        self._wake.set()

    def _counted(self, make: Callable[[], Any]) -> Any:
        """``make()`` for a recogniser already counted in ``live``; counted out again if it fails."""
        try:
            return make()
        except BaseException:
            with self._lock:
                self._live -= 1
            raise

    def _warmed(self) -> tuple[Any, float]:
        rec = self._make()
        pcm = self._warm_pcm or b"\x00" * 32000          # no speech given: 2 s of silence, as before
        rec.AcceptWaveform(pcm)
        rec.FinalResult()
        rec.Reset()
        return rec, len(pcm) / 16000

    def _start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="voicebot-recognizer-pool", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), KEEPER_NICE)
        except (OSError, AttributeError):
            pass
        while not self._stopped:
            self._wake.wait(timeout=min(60.0, self._idle_seconds))
            self._wake.clear()
            while not self._stopped and self.tend():
                pass


def trim_heap() -> None:
    """glibc keeps a freed recogniser's memory until asked to give it back."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
