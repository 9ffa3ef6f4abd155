"""`voicebot audio build`: render the flows' prompts ahead of time.

The first caller should not wait for synthesis, and a machine without espeak-ng should fail at
deployment, not during a call. This command renders every prompt the flows can say without slot
values into the cache that the phone side reads (``prompts.cache_dir``).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click


@click.group("audio")
def audio() -> None:
    """Prompt audio: synthesis cache and recorded overrides."""


@audio.command("build")
@click.option("--flow", "flow_files", multiple=True, type=click.Path(),
              help="Flow file to render (repeatable; default: every flow in the flows directory).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def build_command(ctx: click.Context, flow_files: tuple[str, ...], quiet: bool) -> None:
    """Render every static prompt of the flows into the prompt cache, then print a summary."""
    from voicebot.cli import _settings
    from voicebot.errors import VoicebotError
    from voicebot.flow import check_files
    from voicebot.speech.prompts import PromptAudio, build

    try:
        settings = _settings(ctx)
    except VoicebotError as exc:
        _fail(str(exc))
    paths = list(flow_files) or sorted(str(p) for p in settings.flows_dir.glob("*.yaml"))
    if not paths:
        _fail(f"no flow files found in {settings.flows_dir}")
    flows, problems = check_files(paths, settings.transfer_words)
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        _fail(f"{len(problems)} problem(s) in the flows; no audio built")
    with PromptAudio(settings.prompts) as prompts:
        try:
            counts = build(flows.values(), prompts, progress=not quiet)
        except VoicebotError as exc:
            _fail(str(exc))
    click.echo(f"{counts['total']} prompts: {counts['synthesized']} synthesised, "
               f"{counts['cached']} already cached, {counts['recorded']} recorded "
               f"(cache: {settings.prompts.cache_dir})")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
