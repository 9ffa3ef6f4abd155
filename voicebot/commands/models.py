"""`voicebot models list|install` and `voicebot doctor`."""

from __future__ import annotations

import click


@click.group("models")
def models() -> None:
    """Speech models: which are known, which are installed, installing one."""


@click.command("doctor")
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Report every missing part: speech models, Redis, espeak-ng, ffmpeg, credentials."""
