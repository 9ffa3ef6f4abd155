"""Phone audio as bytes: G.711 mu-law to 16-bit PCM and back, resampling, and WAV files in and out.

Twilio sends and expects 8 kHz mono mu-law in 20 ms frames (160 bytes). Vosk takes 16-bit PCM and
accepts 8 kHz directly (measured: upsampling buys nothing), so inbound audio is only decoded. Prompts
come out of espeak-ng at 22050 Hz and are resampled with soxr: ``audioop.ratecv`` has no anti-alias
filter and folds 5 kHz into the band the caller hears. A ``Resampler`` keeps its filter state, so a
stream cut into frames sounds the same as one piece.
"""

from __future__ import annotations

import io
import warnings
import wave
from pathlib import Path

import numpy as np
import soxr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # Python <= 3.12
    except ImportError:  # pragma: no cover - 3.13+ with audioop-lts
        import audioop_lts as audioop  # type: ignore[no-redef]

PHONE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = PHONE_RATE * FRAME_MS // 1000  # 160 bytes of mu-law, 320 of PCM
ULAW_SILENCE = b"\xff"


def ulaw_to_pcm(data: bytes) -> bytes:
    """G.711 mu-law to 16-bit little-endian PCM (twice the length)."""
    return audioop.ulaw2lin(data, 2)


def pcm_to_ulaw(data: bytes) -> bytes:
    """16-bit PCM to mu-law; an odd trailing byte is dropped rather than raising."""
    if len(data) % 2:
        data = data[:-1]
    return audioop.lin2ulaw(data, 2)


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """One-shot 16-bit mono resampling with soxr's anti-aliasing filter."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype=np.int16)
    out = soxr.resample(samples, from_rate, to_rate)
    return np.clip(out, -32768, 32767).astype(np.int16).tobytes()


class Resampler:
    """Streaming 16-bit mono resampler; keeps filter state between chunks, so keep one per call and direction."""

    def __init__(self, from_rate: int, to_rate: int):
        self.from_rate, self.to_rate = from_rate, to_rate
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16")

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype=np.int16)
        return self._stream.resample_chunk(samples, last=last).tobytes()


def frames(data: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Cut audio into frames of ``size`` bytes; the last one is padded with mu-law silence."""
    out = [data[i:i + size] for i in range(0, len(data), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + ULAW_SILENCE * (size - len(out[-1]))
    return out


def read_wav(source: str | Path | bytes) -> tuple[bytes, int]:
    """Any WAV (8/16/24/32-bit PCM, mu-law, A-law, any rate, mono or stereo) as 16-bit mono PCM and its rate.

    The standard ``wave`` module handles plain PCM; anything else goes through pydub (ffmpeg).
    What ffmpeg cannot decode raises ``ValueError`` with ffmpeg's one-line reason.
    """
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        with wave.open(io.BytesIO(raw)) as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            pcm = w.readframes(w.getnframes())
        if width == 1:  # 8-bit WAV is unsigned; audioop's samples are signed
            pcm = audioop.bias(pcm, 1, -128)
        if width != 2:
            pcm = audioop.lin2lin(pcm, width, 2)
        if channels == 2:
            pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
        elif channels > 2:
            raise wave.Error(f"{channels} channels")
        return pcm, rate
    except (wave.Error, EOFError):
        from pydub import AudioSegment
        from pydub.exceptions import CouldntDecodeError

        try:
            segment = AudioSegment.from_file(io.BytesIO(raw))
        except CouldntDecodeError as exc:
            raise ValueError(f"ffmpeg: {_ffmpeg_verdict(str(exc))}") from None
        segment = segment.set_channels(1).set_sample_width(2)
        return segment.raw_data, segment.frame_rate


def _ffmpeg_verdict(message: str) -> str:
    """ffmpeg's last line (its reason), without the 25-line banner above it or the stream's name."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1].rsplit(": ", 1)[-1] if lines else "unknown format"


def wav_to_ulaw(source: str | Path | bytes) -> bytes:
    """A WAV file as 8 kHz mu-law: the phone path a caller's audio takes."""
    pcm, rate = read_wav(source)
    return pcm_to_ulaw(resample(pcm, rate, PHONE_RATE))


def write_wav(path: str | Path, pcm: bytes, rate: int = PHONE_RATE) -> None:
    """16-bit mono PCM to a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def ulaw_to_wav(path: str | Path, ulaw: bytes) -> None:
    """Phone audio to a WAV file anyone can play (16-bit PCM at 8 kHz)."""
    write_wav(path, ulaw_to_pcm(ulaw), PHONE_RATE)
