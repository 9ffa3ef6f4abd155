"""`voicebot audio build`: render the flows' prompts ahead of time.

The first caller should not wait for synthesis, and a machine without espeak-ng should fail at
deployment, not during a call. This command renders every prompt the flows can say without slot
values into the cache that the phone side reads (``prompts.cache_dir``).
"""

from __future__ import annotations

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
    """Render every static prompt of the flows into the prompt cache, then print a summary.

    Exit status 1 when a flow is invalid, nothing can be synthesised, or a prompt cannot be
    written to the cache.
    """
    from voicebot.commands.context import settings_from
    from voicebot.errors import FlowError, VoicebotError
    from voicebot.flow import check_files, load_flows
    from voicebot.speech.prompts import PromptAudio, build

    settings = settings_from(ctx)
    try:
        if flow_files:
            flows, problems = check_files(flow_files, settings.transfer_words)
            if problems:
                raise FlowError(problems)
        else:
            flows = load_flows(settings.flows_dir, settings.transfer_words)
    except FlowError as exc:
        raise click.ClickException(f"{exc}\n{len(exc.problems)} problem(s) in the flows; no audio built") from None
    if not flows:
        raise click.ClickException(f"no flow files found in {settings.flows_dir}")
    cache_dir = settings.prompts.cache_dir
    with PromptAudio(settings.prompts) as prompts:
        try:
            counts = build(flows.values(), prompts, progress=not quiet)
        except VoicebotError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{counts['total']} prompts: {counts['synthesized']} synthesised, "
               f"{counts['cached']} already cached, {counts['recorded']} recorded (cache: {cache_dir})")
    if counts["uncached"]:
        raise click.ClickException(f"{counts['uncached']} prompt(s) could not be written to the prompt cache "
                                   f"{cache_dir}: make sure the folder can be created and written to")
