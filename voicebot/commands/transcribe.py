"""`voicebot transcribe`: try a model on a recording through the same phone path as a call.

Operators check a model on their own recordings before going live. By default the file takes the
caller's path: resampled to 8 kHz, through mu-law and back, then cut into utterances by the same
endpointer a call uses; ``--no-phone`` feeds the recording at 16 kHz instead, to tell what the
phone line costs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _language(ctx: click.Context) -> str:
    """The default flow's language, read without loading (and training) the whole flow."""
    from voicebot.commands.context import flow_header, flow_path

    path = Path(flow_path(ctx, None))
    language = flow_header(path).get("language")
    if not isinstance(language, str) or not language:
        raise click.UsageError(f"cannot tell the language from the default flow {path}; pass --language")
    return language


@click.command("transcribe")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--language", default=None, help="Model language (default: the default flow's language).")
@click.option("--model", "model_path", type=click.Path(exists=True, file_okay=False), default=None,
              help="A Vosk model folder to use instead of the installed one.")
@click.option("--grammar", default=None, help='Comma-separated phrases for constrained recognition, e.g. "ja,nee".')
@click.option("--json", "as_json", is_flag=True, help="Print JSON with a 'text' field instead of text.")
@click.option("--no-phone", is_flag=True, help="Skip the 8 kHz mu-law phone path; recognise at 16 kHz.")
@click.pass_context
def transcribe(ctx: click.Context, file: str, language: str | None, model_path: str | None, grammar: str | None,
               as_json: bool, no_phone: bool) -> None:
    """Print what the recogniser hears in a WAV file (any rate or width): text, word confidences, timing."""
    from voicebot.commands.context import settings_from
    from voicebot.errors import VoicebotError
    from voicebot.speech.audio import PHONE_RATE, read_wav, resample, ulaw_to_pcm, wav_to_ulaw
    from voicebot.speech.recognizer import LoadedModel, SpeechModels, recognize_pcm

    settings = settings_from(ctx)
    try:
        if model_path:
            model = LoadedModel(language or "custom", Path(model_path))
        else:
            model = SpeechModels(settings.speech).get(language or _language(ctx))
        if no_phone:
            pcm, rate = read_wav(file)
            pcm, rate = resample(pcm, rate, 16000), 16000
        else:
            pcm, rate = ulaw_to_pcm(wav_to_ulaw(file)), PHONE_RATE
    except VoicebotError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # an unreadable or non-audio file
        raise click.ClickException(f"{file}: cannot read audio ({exc})") from None
    phrases = [p.strip() for p in grammar.split(",") if p.strip()] if grammar else []
    results = recognize_pcm(model, pcm, phrases, config=settings.speech,
                            vad_mode=settings.speech.vad_aggressiveness, rate=rate)
    text = " ".join(r.text for r in results if r.text)
    if as_json:
        payload = {"text": text, "file": file, "seconds": round(len(pcm) / (2 * rate), 2),
                   "phone_path": not no_phone, "grammar": bool(phrases) and any(r.grammar for r in results),
                   "utterances": [r.to_dict() for r in results]}
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not results:
        click.echo("(no speech recognised)")
    for r in results:
        click.echo(f"[{r.speech_start or 0:6.2f}-{r.speech_end or 0:6.2f}s] {r.text or '(nothing)'}   "
                   f"confidence {r.confidence:.2f}{'  (grammar)' if r.grammar else ''}")
        for w in r.words:
            click.echo(f"      {w.start:6.2f}-{w.end:6.2f}s  {w.confidence:.2f}  {w.word}")
    sys.stdout.flush()
