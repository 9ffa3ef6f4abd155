"""`voicebot records simulate`: simulated calls of a flow written to the call records.

For trying the figures (`voicebot report`, /ops) and the review queue without a phone: the calls
come from ``records.simulated`` (the real dialog engine, simulated callers and timings) and are
written as the worker writes a finished call (``records.build.build_record``,
``records.store.RecordStore.write``) to ``records.url``. The callers' numbers are hashed with the
salt the rest of the system uses (VOICEBOT_HASH_SALT, else the development salt in .run/hash-salt).

The command belongs to the `voicebot records` group (``commands.records``); the command line adds it there.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path

import click

from voicebot.commands.context import flow_path, load_flow_file, settings_from
from voicebot.flow_files import flow_file


@click.command("simulate")
@click.option("--flow", "flow_name", default=None,
              help="Flow id (a file in the flows directory) or flow file (default: the default flow).")
@click.option("--calls", type=click.IntRange(1, 100_000), default=300, show_default=True, help="Calls to write.")
@click.option("--days", type=click.IntRange(1, 3650), default=7, show_default=True,
              help="Spread the calls over this many days before now.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help="Random seed: the same seed, flow and day give the same calls (default: a new one, printed).")
@click.pass_context
def simulate(ctx: click.Context, flow_name: str | None, calls: int, days: int, seed: int | None) -> None:
    """Write simulated calls of a flow to the call records (records.url), for trying reports and /ops."""
    from sqlalchemy.engine import make_url

    from voicebot.records.build import build_record
    from voicebot.records.db import open_engine
    from voicebot.records.jobs import hash_salt
    from voicebot.records.simulated import simulate_calls
    from voicebot.records.store import RecordStore

    settings = settings_from(ctx)
    flow = load_flow_file(ctx, _flow_file(ctx, flow_name))
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    salt = hash_salt(settings)
    timezone = flow.spec.hours.timezone if flow.spec.hours else None
    store = RecordStore(open_engine(settings.records.url))
    outcomes: collections.Counter[str] = collections.Counter()
    written = 0
    for call in simulate_calls(flow, calls=calls, days=days, seed=seed):
        record = build_record(call.call_id, call.stored, salt, timezone=timezone)
        if store.write(record):
            written += 1
            outcomes[record["call"]["outcome"]] += 1
    shown = make_url(settings.records.url).render_as_string(hide_password=True)
    summary = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
    click.echo(f"wrote {written} simulated calls of flow {flow.id} (version {flow.version}, seed {seed}) "
               f"to {shown}" + (f": {summary}" if summary else ""))
    if written < calls:
        click.echo(f"{calls - written} were there already (the same seed writes the same call ids)")


def _flow_file(ctx: click.Context, name: str | None) -> str:
    """``--flow`` as a file when it is one, else the file in the flows directory with that flow id."""
    if name is None or Path(name).is_file():
        return flow_path(ctx, name)
    folder = settings_from(ctx).flows_dir
    found = flow_file(folder, name)
    if found is None:
        raise click.UsageError(f"no flow '{name}' in {folder} and no such file")
    return str(found)
