"""`voicebot transcribe`: try a model on a recording through the same phone path as a call."""

from __future__ import annotations

import click


@click.command("transcribe")
def transcribe() -> None:
    """Print what the recogniser hears in a WAV file."""
