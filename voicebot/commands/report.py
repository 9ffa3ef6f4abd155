"""`voicebot report`: the operations page's figures in the terminal, or as one HTML file to mail around.

It only reads the call records (``records.url`` in config.yaml, or VOICEBOT_RECORDS_URL); the
worker writes them. Days and hours are on the flow's clock (its ``hours.timezone``; for every
flow at once, the default flow's), Europe/Amsterdam when the flow names none.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from voicebot.commands.context import default_flow_file, flow_header, settings_from
from voicebot.config import Settings
from voicebot.flow_files import flow_file


@click.command("report")
@click.option("--flow", "flow", default=None, metavar="FLOW",
              help="A flow id (or its file); default: every flow.")
@click.option("--since", default="7d", show_default=True,
              help="Start: 7d, 24h, 2w, a date (2026-11-01) or a time (2026-11-01T08:00), on the flow's clock.")
@click.option("--until", default="now", show_default=True,
              help="End, written the same way; a date includes that whole day.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the page with its charts as one self-contained HTML file (- for standard output).")
@click.pass_context
def report(ctx: click.Context, flow: str | None, since: str, until: str, html_file: str | None) -> None:
    """How the calls went: containment, transfers, the step funnel, feedback, latency, calls per hour."""
    import sqlalchemy as sa

    from voicebot.records import render
    from voicebot.records.db import RecordsUnavailable, described, open_reader, shown
    from voicebot.records.stats import compute, parse_period

    settings = settings_from(ctx)
    flow_id, timezone = _flow_and_clock(settings, flow)
    try:
        start = parse_period(since, timezone=timezone)
        end = parse_period(until, timezone=timezone, end=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    try:
        engine = open_reader(settings.records.url)
    except RecordsUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    try:
        figures = compute(engine, flow=flow_id, since=start, until=end, timezone=timezone)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    except sa.exc.SQLAlchemyError as exc:
        raise click.ClickException(f"cannot read the call records at {shown(engine)}: {described(exc)}") from None
    finally:
        engine.dispose()
    if html_file is None:
        click.echo(render.text_report(figures), nl=False)
        return
    page = render.standalone_page(figures, f"voicebot report: {flow_id or 'every flow'}")
    if html_file == "-":
        click.echo(page, nl=False)
        return
    _write_private(Path(html_file), page)
    click.echo(f"wrote {html_file} ({figures.calls} calls)", err=True)


def _flow_and_clock(settings: Settings, flow: str | None) -> tuple[str | None, str]:
    """The flow id the records carry and the time zone its days are on."""
    from voicebot.records.stats import DEFAULT_TIMEZONE, zone_of

    header: dict[str, Any] = {}
    flow_id = flow
    if flow is None:
        found = default_flow_file(settings)
        header = flow_header(found) if found else {}
    elif flow.endswith((".yaml", ".yml")) or os.sep in flow:
        header = flow_header(Path(flow))
        flow_id = header.get("flow") if isinstance(header.get("flow"), str) else None
        if not flow_id:
            raise click.BadParameter(f"{flow} is not a flow file with a 'flow:' id", param_hint="--flow")
    else:
        found = flow_file(settings.flows_dir, flow)
        header = flow_header(found) if found else {}
        # A flow no longer in the flows directory still has its records: they are shown on the default clock.
    hours = header.get("hours")
    timezone = hours.get("timezone") if isinstance(hours, dict) else None
    try:
        return flow_id, zone_of(str(timezone) if timezone else DEFAULT_TIMEZONE).key
    except ValueError as exc:
        raise click.ClickException(f"flow {flow_id}: {exc}") from None


def _write_private(path: Path, text: str) -> None:
    """Callers' comments are personal data: a new file is readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
