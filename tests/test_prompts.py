"""Prompt audio with real espeak-ng: synthesis, the cache, recordings, static prompts, `voicebot audio build`."""

from __future__ import annotations

import os
import re
import threading
import time
import wave
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from voicebot.cli import main
from voicebot.config import PromptSettings
from voicebot.dialog.actions import Say
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.events import CallStarted, NoInput, Utterance
from voicebot.flow import load_flow
from voicebot.speech.audio import PHONE_RATE, ulaw_to_pcm, wav_to_ulaw
from voicebot.dialog.sentences import static_sentences
from voicebot.speech import prompts as sp
from voicebot.speech import synthesis
from voicebot.speech.prompts import PromptAudio
from voicebot.speech.synthesis import PromptError, espeak_ng_wav, match_voice

REPO = Path(__file__).resolve().parent.parent
ENERGIE = REPO / "flows" / "energie.yaml"
GREETING = "Goedemiddag, waarmee kan ik u vandaag helpen?"


def _prompt_settings(root: Path, rate: int = 165) -> PromptSettings:
    return PromptSettings(cache_dir=root / "cache", recorded_dir=root / "recorded", rate=rate,
                          voices={"nl": "nl", "en": "en-gb", "ko": "ko"})


@pytest.fixture(scope="module")
def energie():
    return load_flow(ENERGIE)


@pytest.fixture
def prompts(tmp_path: Path):
    with PromptAudio(_prompt_settings(tmp_path)) as audio:
        yield audio


def _seconds(audio: bytes) -> float:
    return len(audio) / PHONE_RATE


def _rms(audio: bytes) -> float:
    pcm = np.frombuffer(ulaw_to_pcm(audio), dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(pcm ** 2)))


def _write_tone(path: Path, seconds: float, rate: int = 44100, freq: float = 440.0) -> None:
    """A 16-bit tone WAV, moved into place like a deployment would (new file, new inode)."""
    samples = np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate) * 12000
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    os.replace(tmp, path)


# -- synthesis and the cache --------------------------------------------------------------------


def test_synthesis_is_phone_audio_as_long_as_espeak_says_it(prompts: PromptAudio):
    audio = prompts.audio_for(GREETING, "nl")
    assert 1.5 < _seconds(audio) < 6.0
    assert _rms(audio) > 500  # speech, not silence
    command = wav_to_ulaw(espeak_ng_wav(GREETING, "nl", 165))
    assert abs(_seconds(audio) - _seconds(command)) < 0.1 * _seconds(command)


def test_second_request_is_a_cache_hit(prompts: PromptAudio, tmp_path: Path):
    assert not prompts.is_cached(GREETING, "nl")
    first = prompts.audio_for(GREETING, "nl")
    assert (prompts.misses, prompts.synthesized, prompts.hits) == (1, 1, 0)
    assert prompts.audio_for(GREETING, "nl") == first
    assert (prompts.misses, prompts.synthesized, prompts.hits) == (1, 1, 1)
    assert prompts.is_cached(GREETING, "nl")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [prompts.cache_path(GREETING, "nl").name]


def test_cache_is_keyed_by_voice_rate_and_text(prompts: PromptAudio, tmp_path: Path):
    normal = prompts.audio_for(GREETING, "nl")
    with PromptAudio(_prompt_settings(tmp_path, rate=220)) as faster:
        assert not faster.is_cached(GREETING, "nl")
        quick = faster.audio_for(GREETING, "nl")
        assert faster.synthesized == 1 and _seconds(quick) < 0.9 * _seconds(normal)
    assert not prompts.is_cached(GREETING, "en")  # another voice
    assert not prompts.is_cached(GREETING + " ", "nl")  # another text
    prompts.audio_for(GREETING, "en")
    assert prompts.synthesized == 2
    assert len(list((tmp_path / "cache").glob("*.ulaw"))) == 3


def test_cache_file_is_read_by_a_new_instance(tmp_path: Path):
    with PromptAudio(_prompt_settings(tmp_path)) as first:
        audio = first.audio_for(GREETING, "nl")
    with PromptAudio(_prompt_settings(tmp_path)) as second:
        assert second.audio_for(GREETING, "nl") == audio
        assert (second.hits, second.misses, second.synthesized) == (1, 0, 0)


def test_a_personal_prompt_never_touches_the_cache(prompts: PromptAudio, tmp_path: Path):
    """A prompt with the caller's values is rendered for the call only: no cache file (its name is a
    hash of the text, its content the values spoken), no temporary file, nothing kept in memory."""
    text = "Ik noteer klantnummer 7 6 5 4 3 2 1, klopt dat?"
    audio = prompts.audio_for(text, "nl", personal=True)
    assert _seconds(audio) > 1.0 and _rms(audio) > 100
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
    assert not prompts.is_cached(text, "nl") and prompts.personal == 1
    assert (prompts.hits, prompts.misses, prompts.synthesized) == (0, 0, 0)
    again = prompts.audio_for(text, "nl", personal=True)                 # rendered again, not remembered
    assert again == audio and prompts.personal == 2
    prompts.audio_for(GREETING, "nl")                                     # the flow's own prompts are cached
    assert prompts.cache_path(GREETING, "nl").exists() and len(list((tmp_path / "cache").iterdir())) == 1


def test_empty_text_is_silence_without_synthesis(prompts: PromptAudio):
    assert prompts.audio_for("", "nl") == b"" and prompts.audio_for("  \n", "nl") == b""
    assert prompts.synthesized == 0 and prompts.misses == 0


def test_korean_voice(prompts: PromptAudio):
    audio = prompts.audio_for("안녕하세요. 무엇을 도와드릴까요?", "ko")
    assert 1.5 < _seconds(audio) < 6.0 and _rms(audio) > 500


def test_eight_threads_at_once_all_get_audio(prompts: PromptAudio):
    texts = [f"Dit is prompt nummer {n}, een moment alstublieft." for n in range(8)]
    shared = "Deze zin vragen vier gesprekken tegelijk."
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(prompts.audio_for, text, "nl") for text in texts + [shared] * 4]
        results = [f.result(timeout=30) for f in futures]
    assert all(_seconds(audio) > 1.0 for audio in results)
    assert len(set(results[8:])) == 1
    assert prompts.synthesized == 9


def test_espeak_ng_command_fallback_gives_the_same_prompt(tmp_path: Path, prompts: PromptAudio):
    with PromptAudio(_prompt_settings(tmp_path / "other"), use_pyttsx3=False) as command_only:
        by_command = command_only.audio_for(GREETING, "nl")
    by_pyttsx3 = prompts.audio_for(GREETING, "nl")
    assert abs(_seconds(by_command) - _seconds(by_pyttsx3)) < 0.1 * _seconds(by_pyttsx3)


def test_without_espeak_ng_the_error_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with PromptAudio(_prompt_settings(tmp_path), use_pyttsx3=False) as audio:
        with pytest.raises(PromptError, match="espeak-ng is not installed"):
            audio.audio_for(GREETING, "nl")


def test_unknown_voice_is_a_prompt_error(tmp_path: Path):
    settings = PromptSettings(cache_dir=tmp_path / "cache", recorded_dir=tmp_path, voices={"nl": "xx-nope"})
    with PromptAudio(settings) as audio, pytest.raises(PromptError, match="xx-nope"):
        audio.audio_for(GREETING, "nl")


def test_a_thread_sharing_a_synthesis_waits_as_long_as_the_fallback_may_take(tmp_path: Path, monkeypatch):
    wav = espeak_ng_wav("ja", "nl", 165)

    def slow(text, voice, rate, timeout, use_pyttsx3=True):
        time.sleep(1.5 * timeout)  # pyttsx3 timed out, the espeak-ng command then took a while
        return wav

    monkeypatch.setattr(synthesis.SYNTHESIZER, "wav", slow)
    with PromptAudio(_prompt_settings(tmp_path)) as audio, ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(audio.audio_for, "ja", "nl", None, 0.2)
        time.sleep(0.05)
        second = pool.submit(audio.audio_for, "ja", "nl", None, 0.2)
        assert first.result(5) == second.result(5)
        assert (audio.synthesized, audio.hits) == (1, 1)


class _StuckOwner:
    """An owner whose thread is stuck inside runAndWait until ``release`` is set."""

    started: list[_StuckOwner] = []

    def __init__(self) -> None:
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.release.wait, daemon=True)
        self.thread.start()
        _StuckOwner.started.append(self)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def submit(self, *args) -> Future:
        return Future()  # never answered

    def retire(self, reason: str) -> None:
        pass


def test_no_new_engine_while_a_retired_one_is_still_running(monkeypatch):
    _StuckOwner.started = []
    monkeypatch.setattr(synthesis, "_Owner", _StuckOwner)
    monkeypatch.setattr(synthesis, "RETIRE_JOIN", 0.1)
    monkeypatch.setattr(synthesis, "espeak_ng_wav", lambda text, voice, rate, timeout: b"by the command")
    synth = synthesis.Synthesizer()
    assert synth.wav("a", "nl", 165, 0.1) == b"by the command"  # the owner timed out and was retired
    assert synth.wav("b", "nl", 165, 0.1) == b"by the command"  # its thread still runs: the command only
    assert synth.wav("c", "nl", 165, 0.1) == b"by the command"
    assert len(_StuckOwner.started) == 1
    _StuckOwner.started[0].release.set()
    _StuckOwner.started[0].thread.join(1)
    synth.wav("d", "nl", 165, 0.1)  # the old thread has ended: a new owner may start
    assert len(_StuckOwner.started) == 2
    _StuckOwner.started[1].release.set()


def test_pyttsx3_voice_ids_are_matched_by_espeak_name():
    voices = [SimpleNamespace(id="gmw/en", languages=["en-gb"]), SimpleNamespace(id="gmw/en-gb-scotland",
              languages=["en-gb-scotland"]), SimpleNamespace(id="gmw/nl", languages=["nl"]),
              SimpleNamespace(id="ko", languages=["ko"])]
    assert match_voice(voices, "nl") == "gmw/nl"
    assert match_voice(voices, "en-gb") == "gmw/en"
    assert match_voice(voices, "ko") == "ko"
    assert match_voice(voices, "xx") is None


# -- recordings -----------------------------------------------------------------------------------


def test_recording_replaces_synthesis_and_a_new_one_is_picked_up(prompts: PromptAudio, tmp_path: Path):
    recording = tmp_path / "recorded" / "nl" / "welkom.wav"
    _write_tone(recording, 1.5)
    audio = prompts.audio_for("Welkom bij Stroomlijn Energie.", "nl", prompt_id="welkom")
    assert abs(len(audio) - int(1.5 * PHONE_RATE)) <= 8 and _rms(audio) > 5000
    assert (prompts.recorded, prompts.synthesized) == (1, 0)
    assert prompts.audio_for("Welkom bij Stroomlijn Energie.", "nl", prompt_id="welkom") == audio
    _write_tone(recording, 0.5, rate=16000)
    replaced = prompts.audio_for("Welkom bij Stroomlijn Energie.", "nl", prompt_id="welkom")
    assert abs(len(replaced) - int(0.5 * PHONE_RATE)) <= 8
    assert (prompts.recorded, prompts.synthesized) == (3, 0)
    prompts.audio_for("Welkom bij Stroomlijn Energie.", "nl")  # no prompt id: synthesis
    prompts.audio_for("Welkom bij Stroomlijn Energie.", "en", prompt_id="welkom")  # no English recording
    assert prompts.synthesized == 2


def test_a_broken_recording_falls_back_to_synthesis(prompts: PromptAudio, tmp_path: Path):
    broken = tmp_path / "recorded" / "nl" / "menu.wav"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"RIFF not really a wave file")
    assert _seconds(prompts.audio_for("Waarmee kan ik u helpen?", "nl", prompt_id="menu")) > 0.5
    assert (prompts.recorded, prompts.synthesized) == (0, 1)


def test_a_broken_recording_is_not_decoded_again_until_it_changes(prompts: PromptAudio, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    broken = tmp_path / "recorded" / "nl" / "menu.wav"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"RIFF not really a wave file")
    decoded: list[object] = []
    monkeypatch.setattr(sp, "wav_to_ulaw", lambda source: decoded.append(source) or wav_to_ulaw(source))
    for _ in range(3):
        prompts.audio_for("Waarmee kan ik u helpen?", "nl", prompt_id="menu")
    assert decoded.count(broken) == 1
    _write_tone(broken, 0.5)
    assert abs(len(prompts.audio_for("Waarmee kan ik u helpen?", "nl", prompt_id="menu")) - 4000) <= 8
    assert decoded.count(broken) == 2 and prompts.recorded == 1


# -- static prompts -------------------------------------------------------------------------------


def test_static_prompts_of_energie(energie):
    flow = energie
    found = static_sentences(flow)
    texts = [text for text, _ in found]
    assert (flow.prompt_text("welkom"), "welkom") in found
    assert not any("{" in text for text in texts)
    assert len(found) == len(set(found))
    assert f"{flow.msg('no_input')} {flow.step('menu').reprompt}" in texts
    assert flow.msg("confirm_intent", label=flow.spec.intents["storing_melden"].label) in texts
    assert flow.msg("source", source="stroomlijn.nl/factuur") in texts
    assert flow.spec.transfer.closed_say in texts
    assert not any("Uw meterstand" in text for text in texts)  # needs {meterstand}


def test_static_prompts_are_the_engines_exact_words(energie):
    flow = energie
    static = set(static_sentences(flow))
    engine = DialogEngine(flow)
    state, actions = engine.start(CallStarted(call_id="c1", caller="+31612345678", at="2026-11-23T10:00:00"))
    for event in (NoInput(), Utterance("wat is het weer morgen"), Utterance("ik wil een pizza bestellen")):
        actions += engine.handle(state, event)
    said = [(a.text, a.prompt_id) for a in actions if isinstance(a, Say)]
    assert len(said) == 5 and all(pair in static for pair in said), said


# -- voicebot audio build ---------------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "prompts": {"cache_dir": str(tmp_path / "cache"), "recorded_dir": str(tmp_path / "recorded")},
        "flows": {"dir": str(REPO / "flows")},
    }))
    return config


def test_audio_build_renders_then_finds_everything_cached(tmp_path: Path, energie):
    config = _config(tmp_path)
    _write_tone(tmp_path / "recorded" / "nl" / "welkom.wav", 1.0)
    total = len(static_sentences(energie))
    args = ["--config", str(config), "audio", "build", "--flow", str(ENERGIE)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    summary = re.search(rf"{total} prompts: (\d+) synthesised, (\d+) already cached, 1 recorded \(cache: (.+)\)",
                        first.output)
    assert summary, first.output
    synthesised, cached = int(summary[1]), int(summary[2])
    assert synthesised > 0 and synthesised + cached == total - 1  # texts said by two steps are rendered once
    assert summary[3] == str(tmp_path / "cache")
    second = CliRunner().invoke(main, args + ["--quiet"])
    assert second.exit_code == 0, second.output
    assert second.output.startswith(f"{total} prompts: 0 synthesised, {total - 1} already cached, 1 recorded")


def test_audio_build_fails_when_the_cache_cannot_be_written(tmp_path: Path):
    flow = tmp_path / "tiny.yaml"
    flow.write_text("flow: tiny\nlanguage: nl\nstart: dag\nsteps:\n  dag:\n    type: hangup\n"
                    "    say: U spreekt met de digitale assistent. Tot ziens.\n")
    (tmp_path / "not-a-folder").write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"prompts": {"cache_dir": str(tmp_path / "not-a-folder" / "cache"),
                                                  "recorded_dir": str(tmp_path / "recorded")}}))
    result = CliRunner().invoke(main, ["--config", str(config), "audio", "build", "--flow", str(flow), "--quiet"])
    assert result.exit_code == 1, result.output
    # its goodbye and the transfer a failure would bring; no keypad notice: the flow asks no question
    assert "2 prompt(s) could not be written to the prompt cache" in result.output
    assert str(tmp_path / "not-a-folder" / "cache") in result.output and "Traceback" not in result.output


def test_audio_build_reports_an_invalid_flow_and_exits_1(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: bad\nlanguage: nl\nstart: nowhere\nsteps: {}\n")
    result = CliRunner().invoke(main, ["--config", str(_config(tmp_path)), "audio", "build", "--flow", str(bad)])
    assert result.exit_code == 1
    assert "no audio built" in result.output
    assert not (tmp_path / "cache").exists()


def test_folders_of_dead_synthesis_processes_are_swept_and_live_ones_kept(tmp_path):
    import subprocess as sp
    import sys

    from voicebot.speech.synthesis import TMP_PREFIX, sweep_stale_folders

    dead = sp.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{TMP_PREFIX}{dead.pid}-abc"
    stale.mkdir()
    (stale / "1.wav").write_bytes(b"RIFF")
    mine = tmp_path / f"{TMP_PREFIX}{os.getpid()}-def"
    mine.mkdir()
    old_style = tmp_path / f"{TMP_PREFIX}xyz"          # not named after a process: never touched
    old_style.mkdir()
    assert sweep_stale_folders(tmp_path) == 1
    assert not stale.exists() and mine.exists() and old_style.exists()
