"""Answers with natural pauses inside them: how many turns does the end-of-turn rule cut in two?

    python benchmarks/turn_pauses.py [--pauses 300,400,500,600] [--rounds 3]

Each case is an answer spoken in parts (espeak-ng Korean, the only model on the test machines)
joined by a pause of 300-600 ms, as callers pause inside a sentence, sent through the phone path
(8 kHz mu-law) into the real recogniser with the real Korean model, turn after turn as on a call.
A case counts as cut off when the recogniser returns more than one utterance for it. Two rules
run on the same audio in the same process:

- before: one silence for every answer (``--before-ms``, 240 ms: ``end_silence_ms`` before the
  adaptive end of turn), which an open ``TurnShape`` keeps exactly;
- after: the turn's shape, as the turn-taker makes it from the step (its grammar, the expected
  digit count, the language's words that announce more).

Prints one table row per case: cut-offs before and after over every pause length and round, and
how long after the last speech the turn ended (median), before and after.
"""

from __future__ import annotations

import argparse
import audioop
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from voicebot.config import SpeechSettings  # noqa: E402
from voicebot.dialog.actions import Listen  # noqa: E402
from voicebot.emulator.scenario import SPEECH_PEAK  # noqa: E402
from voicebot.nlu.lexicon import NO, YES  # noqa: E402
from voicebot.speech.audio import ulaw_to_pcm, wav_to_ulaw  # noqa: E402
from voicebot.speech.end_of_turn import OPEN_SHAPE  # noqa: E402
from voicebot.speech.recognizer import Final, Recognition, SpeechModels  # noqa: E402
from voicebot.telephony.turns import shape_of  # noqa: E402

TRANSFER = "상담원 연결해 주세요"
YES_NO = (*YES["ko"], *NO["ko"], TRANSFER)
DIGITS = ("영", "공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구", TRANSFER)

CASES = [
    # (what the step is, its Listen, the answer's parts)
    ("transfer words, pause inside the phrase", Listen("choice", phrases=("예약", "취소", TRANSFER), max_digits=1),
     ["상담원", "연결해 주세요"]),
    ("six digits read out, pause after three", Listen("number", phrases=DIGITS, max_digits=6),
     ["일 이 삼", "사 오 육"]),
    ("yes/no, a yes and then more", Listen("check", phrases=YES_NO, max_digits=1), ["네", TRANSFER]),
    ("open, pause after 그리고 (and)", Listen("note", max_digits=1), ["내일 오후에 그리고", "저녁에 방문하고 싶어요"]),
    ("open, pause inside a sentence", Listen("note", max_digits=1), ["내일 오후에", "방문하고 싶어요"]),
]


def korean(text: str) -> bytes:
    """espeak-ng's clip with its own leading and trailing silence cut, so the pause is the pause."""
    wav = subprocess.run(["espeak-ng", "-v", "ko", "-s", "175", "--stdout", text],
                         capture_output=True, check=True).stdout
    ulaw = wav_to_ulaw(wav)
    loud = [i for i in range(0, len(ulaw) - 159, 160) if audioop.max(ulaw_to_pcm(ulaw[i:i + 160]), 2) >= SPEECH_PEAK]
    return ulaw[loud[0]:loud[-1] + 160] if loud else ulaw


def run_turns(model, listen: Listen, shape, ulaw: bytes, speech: SpeechSettings) -> tuple[int, list[float]]:
    """Utterances the audio made, turn after turn as on a call; and each turn's silence before its end."""
    pcm = ulaw_to_pcm(ulaw)
    count, waits, turn = 0, [], None
    for i in range(0, len(pcm) - 319, 320):
        if turn is None:
            turn = Recognition(model, listen.phrases, config=speech, shape=shape, offset=i / 16000)
        for event in turn.accept(pcm[i:i + 320]):
            if isinstance(event, Final) and event.result.text:
                count += 1
                waits.append((i + 320) / 16000 - event.result.speech_end)
        if turn.done:
            turn.close()
            turn = None
    if turn is not None:
        turn.close()
    return count, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pauses", default="300,400,500,600", help="pause lengths inside the answer, ms")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case and pause (Vosk's dither varies)")
    parser.add_argument("--before-ms", type=int, default=240, help="the flat rule's silence (end_silence_ms before)")
    args = parser.parse_args()
    speech = SpeechSettings(models_dir=Path(tempfile.mkdtemp()))
    flat = SpeechSettings(models_dir=speech.models_dir, end_silence_ms=args.before_ms)
    model = SpeechModels(speech).get("ko")
    model.warm(2)
    pauses = [int(p) for p in args.pauses.split(",")]
    print(f"\nbefore: a flat {flat.end_silence_ms} ms; after: end_silence_ms {speech.end_silence_ms}, "
          f"end_silence_closed_ms {speech.end_silence_closed_ms}, end_silence_extended_ms {speech.end_silence_extended_ms}; pauses {args.pauses} ms; "
          f"{args.rounds} round(s)\n")
    print("| answer | cut off before | cut off after | end after last speech, before / after (median) |")
    print("|---|---|---|---|")
    totals = [0, 0, 0]
    for name, listen, parts in CASES:
        clips = [korean(p) for p in parts]
        cut = {"before": 0, "after": 0}
        waits: dict[str, list[float]] = {"before": [], "after": []}
        runs = 0
        for pause in pauses:
            gap = b"\xff" * (8 * pause)
            audio = b"\xff" * 4000 + gap.join(clips) + b"\xff" * 12000
            for _ in range(args.rounds):
                runs += 1
                for label, shape, rule in (("before", OPEN_SHAPE, flat), ("after", shape_of(listen, "ko"), speech)):
                    count, turn_waits = run_turns(model, listen, shape, audio, rule)
                    cut[label] += count > 1
                    waits[label] += turn_waits[-1:]
        totals = [totals[0] + runs, totals[1] + cut["before"], totals[2] + cut["after"]]
        wait = " / ".join(f"{statistics.median(waits[k]) * 1000:.0f}" if waits[k] else "-" for k in waits)
        print(f"| {name} | {cut['before']} of {runs} | {cut['after']} of {runs} | {wait} ms |", flush=True)
    print(f"| all | {totals[1]} of {totals[0]} | {totals[2]} of {totals[0]} | |")


if __name__ == "__main__":
    main()
