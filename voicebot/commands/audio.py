"""`voicebot audio build`: render the flows' prompts ahead of time."""

from __future__ import annotations

import click


@click.group("audio")
def audio() -> None:
    """Prompt audio: synthesis cache and recorded overrides."""
