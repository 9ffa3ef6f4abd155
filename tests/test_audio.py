"""Phone audio helpers: codec, resampling quality, streaming state, WAV files of any format."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from voicebot.speech.audio import (FRAME_BYTES, Resampler, frames, pcm_to_ulaw, read_wav, resample, ulaw_to_pcm,
                                   wav_to_ulaw, write_wav)


def tone(freq: float, rate: int, seconds: float = 1.0, amp: int = 12000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16).tobytes()


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, np.int16).astype(float)
    return float(np.sqrt(np.mean(x ** 2)))


def test_mulaw_round_trip_is_close_and_half_the_size():
    pcm = tone(440, 8000)
    ulaw = pcm_to_ulaw(pcm)
    assert len(ulaw) == len(pcm) // 2
    back = np.frombuffer(ulaw_to_pcm(ulaw), np.int16).astype(float)
    assert np.max(np.abs(back - np.frombuffer(pcm, np.int16))) < 12000 * 0.04
    assert pcm_to_ulaw(pcm + b"\x01") == ulaw          # an odd trailing byte is dropped, not an error


def test_resampling_filters_what_the_phone_cannot_carry():
    # 5 kHz is above the 4 kHz a phone line carries: it must be removed, not folded to 3 kHz.
    assert rms(resample(tone(5000, 22050), 22050, 8000)) < 200
    assert rms(resample(tone(1000, 22050), 22050, 8000)) > 8000


def test_streaming_resampler_matches_one_piece():
    pcm = tone(700, 8000, 2.0)
    stream = Resampler(8000, 16000)
    pieces = b"".join(stream.process(pcm[i:i + 320]) for i in range(0, len(pcm), 320)) + stream.process(b"", last=True)
    whole = resample(pcm, 8000, 16000)
    assert abs(len(pieces) - len(whole)) <= 8
    n = min(len(pieces), len(whole)) // 2
    a, b = np.frombuffer(pieces[: n * 2], np.int16)[400:-400], np.frombuffer(whole[: n * 2], np.int16)[400:-400]
    assert np.corrcoef(a, b)[0, 1] > 0.99


@pytest.mark.parametrize("width, channels, rate", [(1, 1, 11025), (2, 2, 44100), (3, 1, 16000), (4, 1, 8000)])
def test_any_wav_width_rate_and_channels(width, channels, rate):
    x = np.frombuffer(tone(440, rate, 0.5), np.int16).astype(np.int32)
    if width == 1:
        data = ((x >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = x.astype(np.int16).tobytes()
    elif width == 3:
        data = b"".join(int(v << 8).to_bytes(3, "little", signed=True) for v in x)
    else:
        data = (x << 16).astype(np.int32).tobytes()
    if channels == 2:
        step = width
        data = b"".join(data[i:i + step] * 2 for i in range(0, len(data), step))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    pcm, got_rate = read_wav(buf.getvalue())
    assert got_rate == rate and abs(len(pcm) / 2 - rate * 0.5) < 2
    assert 6000 < rms(pcm) < 10000
    assert abs(len(wav_to_ulaw(buf.getvalue())) - 4000) < 4          # 0.5 s at 8 kHz


def test_frames_are_padded_with_silence(tmp_path):
    parts = frames(b"\x00" * 400)
    assert [len(p) for p in parts] == [FRAME_BYTES] * 3 and parts[-1].endswith(b"\xff" * 80)
    write_wav(tmp_path / "x.wav", tone(300, 8000, 0.1))
    assert read_wav(tmp_path / "x.wav")[1] == 8000


def test_a_file_that_is_not_audio_is_one_line_from_ffmpeg_not_its_banner():
    with pytest.raises(ValueError) as error:
        read_wav(b"hello, not a recording\n")
    assert str(error.value) == "ffmpeg: Invalid data found when processing input"
