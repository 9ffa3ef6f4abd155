"""Prompt audio: every sentence a caller hears, as raw 8 kHz mono mu-law bytes for the phone.

``PromptAudio.audio_for(text, language, prompt_id)`` looks in three places, in order:

1. **A recording**, ``<recorded_dir>/<language>/<prompt_id>.wav`` (any WAV rate and width). A
   voice actor's file beats synthesis. Its converted audio is kept in memory under its path, mtime,
   size and inode, so a replaced recording is picked up without a restart; a broken one is
   remembered too, so it is not decoded (or logged) again until it changes.
2. **The synthesis cache** (``speech/cache.py``): files keyed by voice, rate and exact text, with
   a byte-bounded in-memory LRU in front. The engine composes its retry sentences the same way
   every time, so they are cached too. ``voicebot audio build`` fills the cache ahead of time with
   every sentence the engine can say without slot values (``dialog/sentences.py``).
3. **Synthesis** (``speech/synthesis.py``: pyttsx3 on one owner thread, the espeak-ng command as
   fallback), which is then stored in the cache. Threads asking for the same text at the same
   time wait for one synthesis.

A **personal** prompt (``Say.personal``: the text carries the caller's own values, a customer
number read back) skips the cache both ways: the cache's file names are hashes of the exact text,
so a listing of the folder could be matched back to customer numbers by hashing guesses, and the
files themselves are the numbers spoken. Such a prompt is rendered by the espeak-ng command
straight into memory (no temporary file either; pyttsx3 only when the command is missing), handed
to the call, and kept nowhere: it is said once or twice in one call, and rendering takes
milliseconds.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from voicebot.config import PromptSettings
from voicebot.dialog.sentences import static_sentences
from voicebot.speech.audio import wav_to_ulaw
from voicebot.speech.cache import MEMORY_BYTES, PromptCache, cache_key
from voicebot.speech.synthesis import DEFAULT_TIMEOUT, SYNTHESIZER, PromptError, espeak_ng_wav

__all__ = ["PromptAudio", "PromptError", "build", "espeak_ng_wav"]  # espeak_ng_wav: the emulator's voice

if TYPE_CHECKING:
    from voicebot.flow import Flow

log = logging.getLogger("voicebot.speech.prompts")

SHARE_MARGIN = 2.0
"""Extra seconds a thread sharing another's synthesis waits, beyond the owner's worst case (2 x timeout)."""


def _to_phone(wav: bytes) -> bytes:
    """Synthesised 22050 Hz WAV to 8 kHz mu-law, through soxr's anti-aliasing filter."""
    try:
        return wav_to_ulaw(wav)
    except Exception as exc:  # wave.Error, EOFError, pydub's decode errors: all mean a bad file
        raise PromptError(f"synthesised audio cannot be read: {exc}") from None


def _safe_name(prompt_id: str) -> bool:
    """A prompt id must name a file in the language folder, never a path out of it."""
    return bool(prompt_id) and Path(prompt_id).name == prompt_id and not prompt_id.startswith(".")


class PromptAudio:
    """Prompt audio for every call of the process: recordings, cache, synthesis. Thread-safe.

    Counters (for tests and metrics): ``hits`` (memory or disk cache), ``misses`` (not cached),
    ``synthesized`` (rendered), ``recorded`` (a recording was played), ``cache_failures``
    (rendered audio that could not be written to the cache directory) and ``personal`` (personal
    prompts rendered for one use, outside the cache).
    """

    def __init__(self, settings: PromptSettings, *, use_pyttsx3: bool = True, memory_bytes: int = MEMORY_BYTES):
        self.settings = settings
        self._use_pyttsx3 = use_pyttsx3
        self._lock = threading.Lock()
        self._cache = PromptCache(settings.cache_dir, memory_bytes)
        self._recordings: dict[Path, tuple[tuple[int, int, int], bytes | None]] = {}  # None: unreadable
        self._pending: dict[str, Future[bytes]] = {}
        self._closed = False
        self.hits = self.misses = self.synthesized = self.recorded = self.cache_failures = self.personal = 0

    def __enter__(self) -> PromptAudio:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def voice(self, language: str) -> str:
        """The espeak-ng voice for a flow language ('nl-BE' falls back to 'nl', then to the code itself)."""
        voices = self.settings.voices
        return voices.get(language) or voices.get(language.split("-")[0]) or language

    def cache_path(self, text: str, language: str) -> Path:
        return self._cache.path(cache_key(self.voice(language), self.settings.rate, text))

    def audio_for(self, text: str, language: str, prompt_id: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT, *, personal: bool = False) -> bytes:
        """The prompt as raw 8 kHz mono mu-law; b"" for empty text. Raises PromptError if nothing can render it.

        ``personal``: the text carries the caller's values; it is rendered for this use only and
        never read from or written to the cache (a recording under ``prompt_id`` still wins).
        """
        return self._fetch(text, language, prompt_id, timeout, personal=personal)[0]

    def is_cached(self, text: str, language: str) -> bool:
        """True when ``audio_for`` would not synthesise (recordings aside); empty text needs nothing."""
        if not text.strip():
            return True
        path = self.cache_path(text, language)
        with self._lock:
            if self._cache.in_memory(path.stem):
                return True
        return path.exists()

    def close(self) -> None:
        """Drop the in-memory audio; later calls raise PromptError. The shared pyttsx3 owner stays."""
        with self._lock:
            self._closed = True
            self._cache.clear()
            self._recordings.clear()

    # -- where the audio comes from ------------------------------------------------------------

    def _fetch(self, text: str, language: str, prompt_id: str | None, timeout: float,
               personal: bool = False) -> tuple[bytes, str]:
        """The audio and its source: 'empty', 'recorded', 'memory', 'disk', 'shared', 'synthesized'
        or 'personal'."""
        if self._closed:
            raise PromptError("prompt audio is closed")
        if not text or not text.strip():
            return b"", "empty"
        if prompt_id:
            audio = self._recording(language, prompt_id)
            if audio is not None:
                return audio, "recorded"
        if personal:
            return self._personal(text, self.voice(language), timeout), "personal"
        return self._cached_or_synthesised(text, self.voice(language), timeout)

    def _personal(self, text: str, voice: str, timeout: float) -> bytes:
        """Rendered into memory for one use: no cache file, no temporary file, no entry in the LRU."""
        try:
            wav = espeak_ng_wav(text, voice, self.settings.rate, timeout)
        except PromptError:
            # No espeak-ng command (or it failed): pyttsx3 writes a temporary file in a private
            # folder and removes it at once; better than no prompt at all.
            wav = SYNTHESIZER.wav(text, voice, self.settings.rate, timeout, self._use_pyttsx3)
        audio = _to_phone(wav)
        with self._lock:
            self.personal += 1
        return audio

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
            audio = self._cache.get(key)
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
        audio = self._cache.read(key)
        source = "disk"
        if audio is None:
            with self._lock:
                self.misses += 1
            wav = SYNTHESIZER.wav(text, voice, self.settings.rate, timeout, self._use_pyttsx3)
            audio = _to_phone(wav)
            if not self._cache.write(key, audio):
                with self._lock:
                    self.cache_failures += 1
            source = "synthesized"
        with self._lock:
            self._cache.put(key, audio)
            if source == "disk":
                self.hits += 1
            else:
                self.synthesized += 1
        return audio, source


def build(flows: Iterable[Flow], prompt_audio: PromptAudio, progress: bool = True) -> dict[str, int]:
    """Render every static prompt of ``flows`` into the cache; counts by where the audio came from.

    ``uncached`` counts prompts that were rendered but could not be written to the cache directory.
    """
    from tqdm import tqdm

    items = [(flow.language, text, prompt_id) for flow in flows for text, prompt_id in static_sentences(flow)]
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
