"""A phone call's script: the scenario file of `voicebot call --script`, and its turns as audio.

The schema extends the one `voicebot chat --script` uses (``voicebot.scenario``) with what only a
phone call has: recordings (``wav``), the espeak-ng ``voice`` and ``rate``, the caller's timing
(``pause``, ``barge_in``, ``wait``), a time limit, and expectations about the line (``clears``,
``target``, ``whisper_contains``). Every turn is checked before the call is placed, and turned into
audio before the stream starts: synthesis must not stall the 20 ms clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, ValidationError, field_validator

from voicebot.errors import ScenarioError
from voicebot.scenario import Expectations, Scenario, Seconds, Turn, first_problem, problem, read_yaml, text_value
from voicebot.speech.audio import FRAME_BYTES, frames, ulaw_to_pcm, wav_to_ulaw
from voicebot.speech.prompts import espeak_ng_wav

SPEECH_PEAK = 1000
"""A caller frame whose loudest sample is below this counts as silence when timing the end of speech."""
DEFAULT_PAUSE = 0.4
DEFAULT_WAIT = 30.0
DEFAULT_CALLER = "+31612345678"
DEFAULT_CALLED = "+31850000000"
DEFAULT_VOICE = "nl"
DEFAULT_RATE = 165
DEFAULT_MAX_SECONDS = 120.0

VOICE = "'voice' is an espeak-ng voice name, e.g. voice: nl"
RATE = "'rate' is espeak-ng words per minute, a whole number such as rate: 165"
SECONDS = "'{}' is a number of seconds"


class CallExpect(Expectations):
    """A call's ``expect`` block, each value of the type ``check_expectations`` compares it as."""

    UNKNOWN: ClassVar[str] = "'expect' takes {known}"
    NOT_A_MAPPING: ClassVar[str] = "'expect' takes {known}"

    transfer: bool | str | None = Field(None, description="true, false or a kind such as number")
    target: str | None = Field(None, description='text (quote a number: target: "+31201234567")')
    hangup: bool | None = Field(None, description="true or false")
    clears: int | None = Field(None, ge=0, description="a whole number")
    prompt_contains: str | list[str] | None = Field(None, description="text or a list of texts")
    whisper_contains: str | None = Field(None, description="text")


class CallTurn(Turn):
    """One turn of the caller on the phone: exactly one action, with voice and timing."""

    INPUTS: ClassVar[tuple[str, ...]] = ("say", "wav", "dtmf", "silence", "hangup")

    hangup: bool | None = Field(None, description="write 'hangup: true'")
    silence: Seconds | None = Field(None, description=SECONDS.format("silence"))
    pause: Seconds | None = Field(None, description=SECONDS.format("pause"))
    barge_in: Seconds | None = Field(None, description=SECONDS.format("barge_in"))
    wait: Seconds | None = Field(None, description=SECONDS.format("wait"))
    dtmf: str | None = None
    say: str | None = None
    wav: str | None = None
    voice: str | None = Field(None, min_length=1, description=VOICE)
    rate: int | None = Field(None, gt=0, description=RATE)

    _wav_text = text_value("wav", "hello.wav")

    @classmethod
    def after_keys(cls, data: dict[str, Any]) -> None:
        if len(cls.inputs(data)) != 1:
            raise problem(f"needs exactly one of {', '.join(cls.INPUTS)}")


class CallScenario(Scenario):
    """A scenario file for `voicebot call --script`."""

    voice: str | None = Field(None, min_length=1, description=VOICE)
    rate: int | None = Field(None, gt=0, description=RATE)
    max_seconds: float | None = Field(None, gt=0, description=SECONDS.format("max_seconds")
                                      + ", e.g. max_seconds: 60")
    expect: CallExpect | None = None
    turns: list[CallTurn]

    @classmethod
    def before_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
            raise problem("expected a mapping with 'turns' (a list)")
        if not data.get("expect"):
            data = {k: v for k, v in data.items() if k != "expect"}
        return data

    @field_validator("max_seconds", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def check_turns(turns: list[dict[str, Any]] | list[CallTurn], where: str = "turn") -> list[CallTurn]:
    """Refuse unknown keys, turns with no or several actions and bad values, before any call is placed."""
    if not isinstance(turns, list):
        raise ScenarioError("'turns' must be a list")
    checked: list[CallTurn] = []
    for n, turn in enumerate(turns, start=1):
        try:
            checked.append(turn if isinstance(turn, CallTurn) else CallTurn.model_validate(turn))
        except ValidationError as exc:
            _, message = first_problem(exc, CallTurn)
            raise ScenarioError(f"{where} {n}: {message}") from None
    return checked


def load_scenario(path: str | Path) -> dict[str, Any]:
    """A YAML scenario file as keyword arguments for ``place_call`` (plus ``expect``).

    ``voicebot.flow.yamlsrc`` keeps ``say: yes`` as text. Phone numbers must be quoted, because YAML
    reads ``+31612345678`` as a number and the ``+`` would be lost.
    """
    path = Path(path)
    data = read_yaml(path, "the scenario")
    try:
        scenario = CallScenario.model_validate(data)
    except ValidationError as exc:
        where, message = first_problem(exc, CallScenario)
        turn = f": turn {where[1] + 1}" if where[:1] == ("turns",) and len(where) > 1 else ""
        raise ScenarioError(f"{path}{turn}: {message}") from None
    out: dict[str, Any] = scenario.given()
    out.pop("name", None)
    turns = out["turns"]
    for turn in turns:
        if "wav" in turn and not Path(turn["wav"]).is_absolute():
            turn["wav"] = str(path.parent / turn["wav"])
    out["expect"] = out.get("expect") or {}
    return out


# -- the script as audio and timings -----------------------------------------------------------------


@dataclass
class ScriptedTurn:
    """A turn ready to play: its audio, where the speech in it ends, and how the caller times it."""

    kind: str
    label: str
    audio: bytes = b""
    speech_frames: int = 0
    keys: str = ""
    seconds: float = 0.0
    pause: float = DEFAULT_PAUSE
    barge_in: float | None = None
    wait: float = DEFAULT_WAIT


def _speech_frames(audio: bytes) -> int:
    """Frames up to and including the last one with speech in it (trailing silence is not speech)."""
    pcm = np.frombuffer(ulaw_to_pcm(b"".join(frames(audio))), dtype=np.int16).reshape(-1, FRAME_BYTES)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)).max(axis=1) >= SPEECH_PEAK)
    return int(loud[-1]) + 1 if loud.size else len(pcm)


def prepare_turns(turns: list[dict[str, Any]] | list[CallTurn], *, voice: str, rate: int) -> list[ScriptedTurn]:
    """Turn the script into audio and timings up front: synthesis must not stall the 20 ms clock."""
    out: list[ScriptedTurn] = []
    for turn in check_turns(turns):
        common = {"pause": DEFAULT_PAUSE if turn.pause is None else float(turn.pause),
                  "wait": DEFAULT_WAIT if turn.wait is None else float(turn.wait),
                  "barge_in": None if turn.barge_in is None else float(turn.barge_in)}
        if turn.say is not None:
            wav = espeak_ng_wav(turn.say, turn.voice or voice, turn.rate or rate)
            audio = wav_to_ulaw(wav)
            out.append(ScriptedTurn("say", f'"{turn.say}"', audio, _speech_frames(audio), **common))
        elif turn.wav is not None:
            path = Path(turn.wav)
            try:
                audio = wav_to_ulaw(path)
            except Exception as exc:  # noqa: BLE001 - wave, pydub and ffmpeg each raise their own
                raise ScenarioError(f"cannot read {path}: {exc}") from None
            out.append(ScriptedTurn("wav", f"[{path.name}]", audio, _speech_frames(audio), **common))
        elif turn.dtmf is not None:
            out.append(ScriptedTurn("dtmf", f"#{turn.dtmf}", keys=turn.dtmf, **common))
        elif turn.silence is not None:
            seconds = float(turn.silence)
            out.append(ScriptedTurn("silence", f"(silence {seconds:g} s)", seconds=seconds, **common))
        else:
            out.append(ScriptedTurn("hangup", "(hangs up)", **common))
    return out
