"""Speech synthesis for prompts: pyttsx3 on one owner thread, the espeak-ng command as fallback.

``SYNTHESIZER.wav(text, voice, rate, timeout)`` returns a 22050 Hz WAV. It knows nothing of
caching or of phone audio; ``speech/prompts.py`` does that.

Why one owner thread for pyttsx3. pyttsx3 with its espeak driver cannot be shared between threads.
espeak is initialised once per process with one global callback. When two threads call
``runAndWait`` at once, one of them hangs for good. ``runAndWait`` with nothing queued hangs the
second time. ``setProperty`` is queued. The first ``runAndWait`` returns before the WAV file has
been written, because the file is written later on espeak's own thread. So one daemon thread per
process owns the engine. It takes one job at a time from a queue: it sets the voice and rate, calls
``save_to_file`` and ``runAndWait``, and waits for the engine's ``finished-utterance`` event.
Before each utterance it also waits until espeak has applied the voice and rate change. Without
that wait the driver cancelled about one utterance in ten (19 of 180 here), and the cancelled ones
came back cut short or silent. Calling threads submit a job and wait on a ``Future`` with a
timeout. A prompt with slot values can then be synthesised during a call (about 10 ms) while other
calls' threads wait only briefly in the queue. The owner is shared by the whole process. Nothing
else in the process may use pyttsx3.

Why the fallback. If pyttsx3 cannot be imported or started, or a job times out, the prompt is
rendered by running ``espeak-ng --stdout`` in a subprocess (about 18 ms, and safe to run in
parallel). A warning is logged once. The owner is retired: its engine is kept alive, because a
collected engine clears espeak's global callback. A new owner starts for a later job, but only once
the retired owner's thread has ended: it may still be inside ``runAndWait``, and two engines there at
once hang espeak, so until then the subprocess is used. After ``MAX_ENGINE_STARTS`` owners, or in a
forked child where espeak's internal thread no longer exists, only the subprocess is used. Without
espeak-ng, ``PromptError`` is raised, and the telephony side hands the call to a person.

pyttsx3's espeak driver ``print()``s "Audio saved to ..." after each file, on espeak's thread.
``contextlib.redirect_stdout`` would swap ``sys.stdout`` for the whole process and swallow other
threads' output. Instead, the driver module's own ``print`` name is shadowed with a debug log.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from voicebot.errors import VoicebotError

log = logging.getLogger("voicebot.speech.synthesis")

DEFAULT_TIMEOUT = 10.0
"""Seconds a caller waits for one synthesis (queue wait included) before the fallback runs."""
MAX_ENGINE_STARTS = 3
"""pyttsx3 owners started per process; a stuck one leaves a thread behind, so this is bounded."""
SYNTH_ATTEMPTS = 2
"""Tries per prompt when pyttsx3 reports an utterance as cancelled, before the fallback runs."""
RETIRE_JOIN = 1.0
"""Seconds a new pyttsx3 owner waits for a retired one's thread to end before the command is used instead."""



TMP_PREFIX = "voicebot-tts-"
"""pyttsx3 writes each prompt to a file in a private folder ``voicebot-tts-<pid>-*`` of the system
temporary directory; the folder goes when its owner thread ends."""


def sweep_stale_folders(tmp_root: str | os.PathLike[str] | None = None) -> int:
    """Remove the folders of processes that died without cleaning up (SIGKILL, OOM): their files
    are a flow's prompts, and left alone they pile up with every crash. Only folders whose process
    is gone are touched. Returns how many went."""
    root = Path(tmp_root or tempfile.gettempdir())
    removed = 0
    for folder in root.glob(f"{TMP_PREFIX}*-*"):
        pid_text = folder.name[len(TMP_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not folder.is_dir() or _alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # someone else's process: alive, and not ours to clean
    return True

class PromptError(VoicebotError):
    """A prompt cannot be turned into audio (no espeak-ng, unknown voice, synthesis failed)."""


class _EngineDown(PromptError):
    """The pyttsx3 owner cannot take this job: it failed to start, got stuck or was retired."""


class _UnknownVoice(PromptError):
    """pyttsx3 lists no voice matching the configured espeak-ng voice name."""


# -- the espeak-ng command: the fallback --------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _espeak_ng(search_path: str | None) -> str | None:
    """Where espeak-ng is, looked up once per PATH value rather than on every prompt."""
    return shutil.which("espeak-ng", path=search_path)


def espeak_ng_wav(text: str, voice: str, rate: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """``text`` as a 22050 Hz WAV from the espeak-ng command (text on stdin, so a leading '-' is text)."""
    exe = _espeak_ng(os.environ.get("PATH"))
    if exe is None:
        raise PromptError("espeak-ng is not installed (apt-get install espeak-ng); prompts cannot be synthesised")
    try:
        done = subprocess.run([exe, "-v", voice, "-s", str(rate), "--stdout"], input=text.encode("utf-8"),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PromptError(f"espeak-ng did not finish within {timeout:g} s") from None
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
        raise PromptError(f"espeak-ng -v {voice}: {reason}")
    return done.stdout


# -- pyttsx3 behind one owner thread --------------------------------------------------------------


@dataclass
class _Job:
    text: str
    voice: str
    rate: int
    timeout: float
    future: Future[bytes] = field(default_factory=Future)


_ENGINES: list[Any] = []  # never collected: Engine.__del__ would clear espeak's global callback


def _driver_print(*args: Any, **_: Any) -> None:
    log.debug("pyttsx3: %s", " ".join(str(a) for a in args))


def _new_engine() -> Any:
    import pyttsx3
    import pyttsx3.drivers.espeak as driver

    driver.print = _driver_print  # type: ignore[attr-defined]  # mutes "Audio saved to ..." only
    # A fresh Engine, not pyttsx3.init()'s cached one, so a restart never reuses a stuck engine.
    engine = pyttsx3.Engine("espeak")
    _ENGINES.append(engine)
    return engine


def _wait_until_idle(timeout: float) -> None:
    """Wait until espeak has applied queued voice and rate changes.

    The driver's ``runAndWait`` calls ``stop()``. If espeak is still busy with a queued
    ``SetVoiceByName`` or ``SetParameter`` at that moment, ``stop()`` cancels the utterance that
    follows, and about one job in ten comes back cut short or silent. ``IsPlaying`` is only
    exposed by pyttsx3's ctypes binding.
    """
    from pyttsx3.drivers import _espeak

    deadline = time.monotonic() + timeout
    while _espeak.IsPlaying():
        if time.monotonic() > deadline:
            raise _EngineDown(f"espeak stayed busy for {timeout:g} s")
        time.sleep(0.0005)


def match_voice(voices: Iterable[Any], name: str) -> str | None:
    """The pyttsx3 voice id for an espeak-ng voice name: 'nl' -> 'gmw/nl', 'en-gb' -> 'gmw/en', 'ko' -> 'ko'."""
    voices = list(voices)
    wanted = name.lower()
    rules = (
        lambda v: v.id.lower() == wanted,
        lambda v: v.id.lower().rsplit("/", 1)[-1] == wanted,
        lambda v: wanted in (lang.lower() for lang in (v.languages or [])),
    )
    for rule in rules:
        for voice in voices:
            if rule(voice):
                return voice.id
    return None


class _Owner:
    """One daemon thread that creates a pyttsx3 engine and runs every job on it, one at a time."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._finished = threading.Event()
        self._completed = False
        self._voice_ids: dict[str, str | None] = {}
        self._files = itertools.count()
        self._thread = threading.Thread(target=self._run, name="prompt-tts", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """True while the owner thread runs, possibly stuck inside ``runAndWait``."""
        return self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def submit(self, text: str, voice: str, rate: int, timeout: float) -> Future[bytes]:
        """Queue one prompt; the future's result is the WAV file's bytes."""
        job = _Job(text, voice, rate, timeout)
        with self._lock:
            if self._closed:
                raise _EngineDown("the pyttsx3 owner has stopped")
            self._jobs.put(job)
        return job.future

    def retire(self, reason: str) -> None:
        """Take no more jobs; queued ones fail at once so their callers fall back without waiting."""
        with self._lock:
            self._closed = True
        self._fail_queued(_EngineDown(reason))
        self._jobs.put(None)  # after draining, so an idle owner thread wakes up and ends

    def _fail_queued(self, error: Exception) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(error)

    def _run(self) -> None:
        sweep_stale_folders()
        with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
            try:
                engine = _new_engine()
                engine.connect("finished-utterance", self._on_finished)
                self._warm_up(engine, Path(tmp))
            except Exception as exc:  # ImportError, no libespeak-ng, driver errors: all mean "use the fallback"
                self.retire(f"pyttsx3 could not start: {exc}")
                return
            while (job := self._jobs.get()) is not None:
                if not job.future.set_running_or_notify_cancel():
                    continue  # its caller gave up while it was queued
                try:
                    job.future.set_result(self._synthesise(engine, job, Path(tmp)))
                except PromptError as exc:
                    job.future.set_exception(exc)
                    if isinstance(exc, _EngineDown):
                        self.retire(str(exc))
                        return
                except Exception as exc:  # pyttsx3 itself failed: its state is unknown, so stop using it
                    down = _EngineDown(f"pyttsx3 failed: {exc!r}")
                    job.future.set_exception(down)
                    self.retire(str(down))
                    return

    def _on_finished(self, completed: bool = False, **_: Any) -> None:
        """pyttsx3's 'finished-utterance', on espeak's thread (or ours when the driver cancels)."""
        self._completed = bool(completed)
        self._finished.set()

    def _warm_up(self, engine: Any, tmp: Path) -> None:
        """One utterance with no property change, so the first real job finds the engine idle.

        A new engine queues everything until its first loop, and a voice change that is still
        pending when ``runAndWait`` ends its loop makes the driver cancel the next utterance.
        """
        path = tmp / "warm-up.wav"
        self._say_to_file(engine, "a", path, DEFAULT_TIMEOUT)
        path.unlink(missing_ok=True)

    def _synthesise(self, engine: Any, job: _Job, tmp: Path) -> bytes:
        voice_id = self._voice_id(engine, job.voice)
        for _ in range(SYNTH_ATTEMPTS):
            engine.setProperty("voice", voice_id)
            engine.setProperty("rate", job.rate)
            path = tmp / f"{next(self._files)}.wav"
            try:
                if self._say_to_file(engine, job.text, path, job.timeout) and path.exists():
                    return path.read_bytes()
            finally:
                path.unlink(missing_ok=True)
        raise PromptError(f"pyttsx3 was interrupted {SYNTH_ATTEMPTS} times")

    def _say_to_file(self, engine: Any, text: str, path: Path, timeout: float) -> bool:
        """One ``save_to_file`` + ``runAndWait``; True when the utterance completed."""
        _wait_until_idle(timeout)
        self._finished.clear()
        self._completed = False
        engine.save_to_file(text, str(path))  # always one file queued: never runAndWait on nothing
        engine.runAndWait()
        # The file is written on espeak's thread, and runAndWait may return before that.
        if not self._finished.wait(timeout):
            raise _EngineDown(f"pyttsx3 did not finish within {timeout:g} s")
        return self._completed

    def _voice_id(self, engine: Any, name: str) -> str:
        if name not in self._voice_ids:
            self._voice_ids[name] = match_voice(engine.getProperty("voices"), name)
        found = self._voice_ids[name]
        if found is None:
            raise _UnknownVoice(f"pyttsx3 has no voice matching '{name}'")
        return found


class Synthesizer:
    """Process-wide: pyttsx3 through one owner thread, the espeak-ng command when that fails."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: _Owner | None = None
        self._retired: _Owner | None = None  # the last retired owner, until its thread has ended
        self._joined = False  # whether a caller already waited RETIRE_JOIN for it
        self._starts = 0
        self._pid: int | None = None
        self._warned = False

    def wav(self, text: str, voice: str, rate: int, timeout: float, use_pyttsx3: bool = True) -> bytes:
        owner = self._current_owner() if use_pyttsx3 else None
        if owner is not None:
            try:
                return self._by_owner(owner, text, voice, rate, timeout)
            except _EngineDown as exc:
                self._retire(owner, str(exc))
            except PromptError as exc:  # an unknown voice or a missing file: the engine itself is fine
                self._warn(str(exc))
        return espeak_ng_wav(text, voice, rate, timeout)

    def _by_owner(self, owner: _Owner, text: str, voice: str, rate: int, timeout: float) -> bytes:
        future = owner.submit(text, voice, rate, timeout)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()  # still queued: the owner skips it
            raise _EngineDown(f"pyttsx3 did not answer within {timeout:g} s") from None

    def _current_owner(self) -> _Owner | None:
        """The running owner, or a new one; None means "use the espeak-ng command".

        A retired owner's thread may still be inside ``runAndWait``, and a second engine running
        next to it hangs espeak. So a new owner starts only once the old thread has ended: the first
        caller to find it running waits up to ``RETIRE_JOIN`` for it, and until it ends every prompt
        goes to the command.
        """
        with self._lock:
            if self._pid is not None and self._pid != os.getpid():
                self._warn_locked("forked after espeak was initialised; using the espeak-ng command")
                return None
            if self._owner is not None:
                return self._owner
            if self._starts >= MAX_ENGINE_STARTS:
                return None
            retired, wait = self._retired, not self._joined
            self._joined = True
        if retired is not None and retired.alive():
            if not wait or not retired.join(RETIRE_JOIN):
                self._warn("the retired pyttsx3 engine is still busy; using the espeak-ng command meanwhile")
                return None
        with self._lock:
            if self._retired is retired:
                self._retired = None
            if self._owner is None and self._retired is None and self._starts < MAX_ENGINE_STARTS:
                self._starts += 1
                self._pid = os.getpid()
                self._owner = _Owner()
            return self._owner

    def _retire(self, owner: _Owner, reason: str) -> None:
        with self._lock:
            if self._owner is not owner:
                return  # another caller already retired it
            self._owner = None
            self._retired, self._joined = owner, False
            self._warn_locked(reason)
        owner.retire(reason)

    def _warn(self, reason: str) -> None:
        with self._lock:
            self._warn_locked(reason)

    def _warn_locked(self, reason: str) -> None:
        if self._warned:
            log.debug("prompt synthesis through the espeak-ng command: %s", reason)
            return
        self._warned = True
        log.warning("prompt synthesis falls back to the espeak-ng command (%s)", reason)


SYNTHESIZER = Synthesizer()
"""The process's one synthesiser: every prompt goes through it, so pyttsx3 has one owner."""
