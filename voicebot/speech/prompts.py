"""Prompt audio: every sentence a caller hears, as raw 8 kHz mono mu-law bytes for the phone.

``PromptAudio.audio_for(text, language, prompt_id)`` looks in three places, in order:

1. **A recording**, ``<recorded_dir>/<language>/<prompt_id>.wav`` (any WAV rate and width). A
   voice actor's file beats synthesis. Its converted audio is kept in memory under its path, mtime,
   size and inode, so a replaced recording is picked up without a restart.
2. **The synthesis cache**, ``<cache_dir>/<sha256>.ulaw``. The hash covers the espeak-ng voice,
   the rate and the exact text (plus a format tag), because any of these changes the audio. The
   engine composes its retry sentences the same way every time, so they are cached too.
   ``voicebot audio build`` fills the cache ahead of time (``static_prompts``). Files are written
   to a temp file and moved into place with ``os.replace``, so two processes sharing the directory
   never read half a file. A byte-bounded in-memory LRU in front of the directory saves a disk
   read for a hot prompt.
3. **Synthesis**, which is then stored in the cache.

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
calls' threads wait only briefly in the queue. The owner is shared by every ``PromptAudio`` in the
process. Nothing else in the process may use pyttsx3.

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
import hashlib
import itertools
import logging
import os
import queue
import shutil
import string
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from voicebot.config import PromptSettings
from voicebot.errors import VoicebotError
from voicebot.speech.audio import wav_to_ulaw

if TYPE_CHECKING:
    from voicebot.flow import Flow

log = logging.getLogger("voicebot.speech.prompts")

DEFAULT_TIMEOUT = 10.0
"""Seconds a caller waits for one synthesis (queue wait included) before the fallback runs."""
MEMORY_BYTES = 32 * 1024 * 1024
"""In-memory LRU budget: about an hour of prompts at 8 kB per second."""
MAX_ENGINE_STARTS = 3
"""pyttsx3 owners started per process; a stuck one leaves a thread behind, so this is bounded."""
SYNTH_ATTEMPTS = 2
"""Tries per prompt when pyttsx3 reports an utterance as cancelled, before the fallback runs."""
CACHE_FORMAT = "ulaw8k-1"
"""Part of the cache key: change it when the conversion changes, so old files are not reused."""
SHARE_MARGIN = 2.0
"""Extra seconds a thread sharing another's synthesis waits, beyond the owner's worst case (2 x timeout)."""
RETIRE_JOIN = 1.0
"""Seconds a new pyttsx3 owner waits for a retired one's thread to end before the command is used instead."""


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
        with tempfile.TemporaryDirectory(prefix="voicebot-tts-") as tmp:
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


class _Synthesizer:
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


_SYNTHESIZER = _Synthesizer()


# -- the cache ----------------------------------------------------------------------------------


class _LRU:
    """Byte-bounded least-recently-used map; the caller holds the lock."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        self._size += len(value) - (len(old) if old is not None else 0)
        self._items[key] = value
        while self._size > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()
        self._size = 0


def cache_key(voice: str, rate: int, text: str) -> str:
    """The synthesis cache's key: everything that changes the audio."""
    return hashlib.sha256(f"{CACHE_FORMAT}\n{voice}\n{rate}\n{text}".encode("utf-8")).hexdigest()


def _to_phone(wav: bytes) -> bytes:
    """Synthesised 22050 Hz WAV to 8 kHz mu-law, through soxr's anti-aliasing filter."""
    try:
        return wav_to_ulaw(wav)
    except Exception as exc:  # wave.Error, EOFError, pydub's decode errors: all mean a bad file
        raise PromptError(f"synthesised audio cannot be read: {exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe_name(prompt_id: str) -> bool:
    """A prompt id must name a file in the language folder, never a path out of it."""
    return bool(prompt_id) and Path(prompt_id).name == prompt_id and not prompt_id.startswith(".")


class PromptAudio:
    """Prompt audio for every call of the process: recordings, cache, synthesis. Thread-safe.

    Counters (for tests and metrics): ``hits`` (memory or disk cache), ``misses`` (not cached),
    ``synthesized`` (rendered), ``recorded`` (a recording was played) and ``cache_failures``
    (rendered audio that could not be written to the cache directory).
    """

    def __init__(self, settings: PromptSettings, *, use_pyttsx3: bool = True, memory_bytes: int = MEMORY_BYTES):
        self.settings = settings
        self._use_pyttsx3 = use_pyttsx3
        self._lock = threading.Lock()
        self._memory = _LRU(memory_bytes)
        self._recordings: dict[Path, tuple[tuple[int, int, int], bytes | None]] = {}  # None: unreadable
        self._pending: dict[str, Future[bytes]] = {}
        self._closed = False
        self.hits = self.misses = self.synthesized = self.recorded = self.cache_failures = 0

    def __enter__(self) -> PromptAudio:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def voice(self, language: str) -> str:
        """The espeak-ng voice for a flow language ('nl-BE' falls back to 'nl', then to the code itself)."""
        voices = self.settings.voices
        return voices.get(language) or voices.get(language.split("-")[0]) or language

    def cache_path(self, text: str, language: str) -> Path:
        return self._cache_file(cache_key(self.voice(language), self.settings.rate, text))

    def _cache_file(self, key: str) -> Path:
        return Path(self.settings.cache_dir) / f"{key}.ulaw"

    def audio_for(self, text: str, language: str, prompt_id: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The prompt as raw 8 kHz mono mu-law; b"" for empty text. Raises PromptError if nothing can render it."""
        return self._fetch(text, language, prompt_id, timeout)[0]

    def is_cached(self, text: str, language: str) -> bool:
        """True when ``audio_for`` would not synthesise (recordings aside); empty text needs nothing."""
        if not text.strip():
            return True
        path = self.cache_path(text, language)
        with self._lock:
            if path.stem in self._memory:
                return True
        return path.exists()

    def close(self) -> None:
        """Drop the in-memory audio; later calls raise PromptError. The shared pyttsx3 owner stays."""
        with self._lock:
            self._closed = True
            self._memory.clear()
            self._recordings.clear()

    # -- where the audio comes from ------------------------------------------------------------

    def _fetch(self, text: str, language: str, prompt_id: str | None, timeout: float) -> tuple[bytes, str]:
        """The audio and its source: 'empty', 'recorded', 'memory', 'disk', 'shared' or 'synthesized'."""
        if self._closed:
            raise PromptError("prompt audio is closed")
        if not text or not text.strip():
            return b"", "empty"
        if prompt_id:
            audio = self._recording(language, prompt_id)
            if audio is not None:
                return audio, "recorded"
        return self._cached_or_synthesised(text, self.voice(language), timeout)

    def _recording(self, language: str, prompt_id: str) -> bytes | None:
        if not _safe_name(prompt_id):
            return None
        path = Path(self.settings.recorded_dir) / language / f"{prompt_id}.wav"
        try:
            st = path.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            known = self._recordings.get(path)
            if known is not None and known[0] == stamp:
                if known[1] is not None:
                    self.recorded += 1
                return known[1]  # None: this very file failed before; it is not decoded (or logged) again
        try:
            audio = wav_to_ulaw(path)
        except Exception as exc:  # a broken recording must not drop the call: synthesis still works
            log.warning("recorded prompt %s cannot be read (%s); synthesising it instead", path, exc)
            with self._lock:
                self._recordings[path] = (stamp, None)
            return None
        with self._lock:
            self._recordings[path] = (stamp, audio)
            self.recorded += 1
        return audio

    def _cached_or_synthesised(self, text: str, voice: str, timeout: float) -> tuple[bytes, str]:
        key = cache_key(voice, self.settings.rate, text)
        with self._lock:
            audio = self._memory.get(key)
            if audio is not None:
                self.hits += 1
                return audio, "memory"
            pending = self._pending.get(key)
            if pending is None:
                mine: Future[bytes] = Future()
                self._pending[key] = mine
        if pending is not None:  # another thread is rendering the same text right now
            # The owner may spend ``timeout`` on pyttsx3 and as long again on the espeak-ng command.
            wait = 2 * timeout + SHARE_MARGIN
            try:
                audio = pending.result(wait)
            except FutureTimeout:
                raise PromptError(f"prompt not ready within {wait:g} s") from None
            with self._lock:
                self.hits += 1
            return audio, "shared"
        try:
            audio, source = self._load_or_render(key, text, voice, timeout)
            mine.set_result(audio)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._pending.pop(key, None)
        return audio, source

    def _load_or_render(self, key: str, text: str, voice: str, timeout: float) -> tuple[bytes, str]:
        path = self._cache_file(key)
        audio = self._read_cache(path)
        source = "disk"
        if audio is None:
            with self._lock:
                self.misses += 1
            wav = _SYNTHESIZER.wav(text, voice, self.settings.rate, timeout, self._use_pyttsx3)
            audio = _to_phone(wav)
            if not self._write_cache(path, audio):
                with self._lock:
                    self.cache_failures += 1
            source = "synthesized"
        with self._lock:
            self._memory.put(key, audio)
            if source == "disk":
                self.hits += 1
            else:
                self.synthesized += 1
        return audio, source

    @staticmethod
    def _read_cache(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("prompt cache file %s cannot be read (%s); synthesising again", path, exc)
            return None

    @staticmethod
    def _write_cache(path: Path, audio: bytes) -> bool:
        """Store rendered audio; False (and a warning) when the cache directory cannot be written."""
        try:
            _write_atomically(path, audio)
        except OSError as exc:  # the caller still gets the audio; only the next call pays again
            log.warning("prompt cache %s cannot be written: %s", path.parent, exc)
            return False
        return True


# -- what a flow can say without slot values --------------------------------------------------


def _static(text: str | None) -> str | None:
    """``text`` as the engine renders it when it needs no slot value, else None."""
    if not text:
        return ""
    try:
        if any(field is not None for _, field, _, _ in string.Formatter().parse(text)):
            return None
        rendered = text.format_map({})
    except (ValueError, KeyError, IndexError):
        return None
    return None if "{" in rendered else rendered


def _msg(flow: Flow, key: str, **values: Any) -> str | None:
    try:
        return flow.msg(key, **values)
    except (KeyError, ValueError, IndexError):
        return None


def _join(prefix: str | None, rest: str | None) -> str | None:
    """The engine's f"{prefix} {rest}", or None when either part needs slot values."""
    return None if prefix is None or rest is None else f"{prefix} {rest}"


def _reprompt(flow: Flow, step_id: str, step: Any) -> str | None:
    """Mirror of ``DialogEngine._reprompt``: the reprompt, else the question plus a hint."""
    from voicebot.flow.schema import AskStep, FeedbackStep

    if getattr(step, "reprompt", None):
        return _static(step.reprompt)
    question = _static(flow.prompt_text(step_id))
    if isinstance(step, AskStep):
        choices = ", ".join(v.replace("_", " ") for v in (step.choices or {}))
        return _join(question, _msg(flow, "hint_" + step.slot_type, choices=choices))
    if isinstance(step, FeedbackStep):
        return _join(question, _msg(flow, "hint_score"))
    return question


def _retry_texts(flow: Flow, step_id: str, step: Any) -> list[str | None]:
    """What a listening step says after a miss, a silence, a denied or a pending confirmation."""
    again = _reprompt(flow, step_id, step)
    no_input = _msg(flow, "no_input")
    if step.type == "feedback":
        thanks = _static(step.thanks) if step.thanks else _msg(flow, "feedback_thanks")
        return [_join(_msg(flow, "not_understood"), _msg(flow, "hint_score")), _join(no_input, again),
                _msg(flow, "goodbye"), thanks]
    texts = [_join(_msg(flow, "not_understood"), again), _join(no_input, again)]
    questions: list[str | None] = []
    if step.type == "route" and flow.classifier is not None:
        texts.append(_join(_msg(flow, "out_of_scope"), again))
        intents = flow.spec.intents
        questions = [_msg(flow, "confirm_intent", label=intents[name].label) for name in step.routes
                     if name in intents]
    elif step.type == "ask" and not step.secret:
        questions = [_static(step.confirm or flow.messages.get("confirm_value"))]
    if questions:
        texts.append(_join(_msg(flow, "confirm_no"), again))
        texts += [q for question in questions for q in (question, _join(no_input, question))]
    return texts


def _step_texts(flow: Flow, step_id: str, step: Any) -> list[tuple[str | None, str | None]]:
    """Mirror of ``DialogEngine._enter`` and friends for one step: (text, prompt_id) pairs."""
    own = _static(flow.prompt_text(step_id))
    prompt_id = flow.prompt_id(step_id)
    kind = step.type
    if kind == "hours":
        return []
    if kind == "answer":
        return [(own, prompt_id), (_msg(flow, "source", source=step.source), None)]
    if kind == "sms":
        said = own if flow.prompt_text(step_id) else _msg(flow, "sms_sent")
        return [(said, None), (_msg(flow, "sms_unavailable"), None)]
    if kind == "transfer":
        if own is None:
            return []
        return [(own or flow.spec.transfer.say or _msg(flow, "transfer"), None)]
    if kind == "hangup":
        return [(own, prompt_id)] if flow.prompt_text(step_id) else [(_msg(flow, "goodbye"), None)]
    texts: list[tuple[str | None, str | None]] = [(own, prompt_id)]
    if kind in ("route", "ask", "feedback"):
        texts += [(text, None) for text in _retry_texts(flow, step_id, step)]
    return texts


def _transfer_texts(flow: Flow) -> list[str | None]:
    """What any step says when the call goes to a person (asked for, misses, silence, loop guard)."""
    settings = flow.spec.transfer
    texts = [settings.say or _msg(flow, "transfer")]
    if flow.spec.hours and settings.closed_queue:
        texts.append(settings.closed_say or _msg(flow, "closed"))
    return texts


def static_prompts(flow: Flow) -> list[tuple[str, str | None]]:
    """Every (text, prompt_id) the engine can say in this flow that needs no slot value, in flow order.

    Texts are built with the engine's own helpers and f-strings, because the cache key is the
    exact text; texts that still hold a ``{placeholder}`` are left out.
    """
    found: list[tuple[str | None, str | None]] = []
    for step_id, step in flow.spec.steps.items():
        found += _step_texts(flow, step_id, step)
    found += [(text, None) for text in _transfer_texts(flow)]
    from voicebot.dialog.keypad import static_texts   # what a call by keypad hears

    found += static_texts(flow)
    out: dict[tuple[str, str | None], None] = {}
    for text, prompt_id in found:
        if text and text.strip() and "{" not in text:
            out.setdefault((text, prompt_id), None)
    return list(out)


def build(flows: Iterable[Flow], prompt_audio: PromptAudio, progress: bool = True) -> dict[str, int]:
    """Render every static prompt of ``flows`` into the cache; counts by where the audio came from.

    ``uncached`` counts prompts that were rendered but could not be written to the cache directory.
    """
    from tqdm import tqdm

    items = [(flow.language, text, prompt_id) for flow in flows for text, prompt_id in static_prompts(flow)]
    counts = {"total": len(items), "synthesized": 0, "cached": 0, "recorded": 0, "uncached": 0}
    for language, text, prompt_id in tqdm(items, desc="prompts", unit="prompt", disable=not progress):
        failures = prompt_audio.cache_failures
        _, source = prompt_audio._fetch(text, language, prompt_id, DEFAULT_TIMEOUT)
        if prompt_audio.cache_failures != failures:
            counts["uncached"] += 1
        if source in ("synthesized", "recorded"):
            counts[source] += 1
        else:
            counts["cached"] += 1
    return counts
