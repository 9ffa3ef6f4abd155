"""`voicebot records`: the call records database by hand (docs/records.md).

``purge`` deletes what is past its flow's retention now (the worker does it daily), ``forget``
deletes one caller's calls on request (records are personal data: a caller may ask), ``count``
says how many calls are kept, and ``migrate`` creates the database or brings its schema up to
date (the worker does that at start). Other modules add commands to this group
(``records.add_command``).
"""

from __future__ import annotations

import click

from voicebot.commands.context import settings_from


@click.group()
def records() -> None:
    """Call records: purge, forget a caller, count, migrate."""


def _engine(ctx: click.Context, *, migrate: bool):
    """The records database of config.yaml (records.url / VOICEBOT_RECORDS_URL); one error line when
    it cannot be opened."""
    import sqlalchemy as sa

    from voicebot.records.db import described, is_migrated, open_engine, shown

    url = settings_from(ctx).records.url
    try:
        engine = open_engine(url, migrate=migrate)
        if not migrate and not is_migrated(engine):
            raise click.ClickException(f"the call records database {shown(url)} does not exist or has no tables "
                                       "yet: the worker creates it at start, or run `voicebot records migrate`")
    except (sa.exc.SQLAlchemyError, ValueError, OSError) as exc:
        raise click.ClickException(f"the call records database {shown(url)} cannot be opened: "
                                   f"{described(exc)}") from None
    return engine


@records.command("migrate")
@click.pass_context
def records_migrate(ctx: click.Context) -> None:
    """Create the call records database, or bring its tables up to date."""
    from voicebot.records.db import revision, shown

    engine = _engine(ctx, migrate=True)
    click.echo(f"call records in {shown(engine)}: schema at revision {revision(engine)}")
    engine.dispose()


@records.command("count")
@click.option("--flow", default=None, help="Only this flow's calls (its id).")
@click.pass_context
def records_count(ctx: click.Context, flow: str | None) -> None:
    """How many calls are kept."""
    from voicebot.records.store import RecordStore

    engine = _engine(ctx, migrate=False)
    click.echo(RecordStore(engine).count(flow))
    engine.dispose()


@records.command("purge")
@click.option("--dry-run", is_flag=True, help="Only say how many calls would be deleted.")
@click.pass_context
def records_purge(ctx: click.Context, dry_run: bool) -> None:
    """Delete the calls older than their flow's retention (records.retention_days, records.flow_retention_days)."""
    from voicebot.records.store import RecordStore

    section = settings_from(ctx).records
    engine = _engine(ctx, migrate=not dry_run)
    expired = RecordStore(engine).purge(section, dry_run=dry_run)
    engine.dispose()
    verb = "would be deleted" if dry_run else "deleted"
    for flow, count in expired.items():
        click.echo(f"{flow}: {count} call(s) older than {section.retention_for(flow)} days {verb}")
    if not expired:
        click.echo("nothing is older than its retention")


@records.command("forget")
@click.argument("number")
@click.pass_context
def records_forget(ctx: click.Context, number: str) -> None:
    """Delete every call from NUMBER (as the caller's number, in any written form: +31612345678, 06-12345678).

    Calls are found by the number's hash, keyed with VOICEBOT_HASH_SALT as the worker keyed it
    (without it: the local development salt in .run/hash-salt)."""
    from voicebot.identity.fields import phone
    from voicebot.records.build import caller_hash
    from voicebot.records.jobs import hash_salt
    from voicebot.records.store import RecordStore

    settings = settings_from(ctx)
    try:
        phone(number)
    except ValueError as exc:      # a caller ID no number plan knows was hashed as it came: look that up
        click.echo(f"{exc}: looking it up as written", err=True)
    if not settings.hash_salt:
        click.echo("VOICEBOT_HASH_SALT is not set: using the local development salt in .run/hash-salt", err=True)
    digest = caller_hash(number, hash_salt(settings))
    if digest is None:
        raise click.BadParameter("no number to look up (empty, or an anonymous caller)", param_hint="NUMBER")
    engine = _engine(ctx, migrate=False)
    deleted = RecordStore(engine).forget(digest)
    engine.dispose()
    click.echo(f"{deleted} call(s) of that number deleted")
