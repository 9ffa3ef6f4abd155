"""`voicebot customers`: fill and inspect the embedded customer directory.

The directory is the operator's customer register; these commands are how it gets there
(``import`` from a CSV export, ``set-pin`` for one customer) and how an operator checks an entry
(``show``) without the screen showing what a caller proves their identity with: the postcode,
the date of birth and the PIN are masked, and a PIN is never echoed while typed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from voicebot.commands.context import settings_from

if TYPE_CHECKING:
    from voicebot.identity.directory import SqliteDirectory

PIN_PROMPT = "PIN (4 to 8 digits)"
MAX_PIN_LINE = 64           # --pin-stdin reads at most this much of the first line


@click.group("customers")
def customers() -> None:
    """The customer directory that callers are verified against."""


def _embedded(ctx: click.Context) -> SqliteDirectory:
    """The SQLite directory of config.yaml, with a note when calls use a CRM instead."""
    from voicebot.identity.directory import SqliteDirectory

    identity = settings_from(ctx).identity
    if identity.directory != "sqlite":
        click.echo(f"note: identity.directory is {identity.directory}: calls look customers up there, "
                   f"not in {identity.database}", err=True)
    return SqliteDirectory(identity.database)


def mask_postcode(postcode: str) -> str:
    """``1234AB`` -> ``1234 **``: the area, not the street."""
    return f"{postcode[:4]} **" if postcode else "-"


def mask_birth_date(birth_date: object) -> str:
    """Only the year: enough to tell two customers apart, not enough to pass as them."""
    year = getattr(birth_date, "year", None)
    return f"**-**-{year}" if year else "not known"


@customers.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--update", is_flag=True, help="Change customers that are already in the directory.")
@click.option("--quiet", is_flag=True, help="Print only problems (for `make run`, which loads the demo set each time).")
@click.pass_context
def import_command(ctx: click.Context, file: str, update: bool, quiet: bool) -> None:
    """Import customers from FILE (CSV with the header
    customer_number,name,phones,postcode,house_number,birth_date,pin).

    Every wrong row is listed as FILE:LINE: what is wrong, and then nothing is imported.
    """
    from voicebot.identity import DirectoryUnavailable
    from voicebot.identity.csvimport import import_customers

    with _embedded(ctx) as directory:
        try:
            result = import_customers(file, directory, update=update)
            total = None if result.problems else directory.count()
        except DirectoryUnavailable as exc:
            raise click.ClickException(f"{exc}; nothing imported") from None
    if result.problems:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        raise click.ClickException(f"{len(result.problems)} problem(s) in {file}; nothing imported")
    if quiet:
        return
    click.echo(f"{file}: {result.added} added, {result.updated} updated; "
               f"{total} customers in {directory.path}")
    if result.pins:
        click.echo(f"warning: {file} holds {result.pins} PIN(s) in plain text. The directory keeps only "
                   "their hashes: delete the file, or keep it where no one else can read it.", err=True)


@customers.command("show")
@click.argument("number")
@click.pass_context
def show_command(ctx: click.Context, number: str) -> None:
    """Show one customer, with postcode, birth date and PIN masked."""
    from voicebot.errors import ConfigError
    from voicebot.identity import DirectoryUnavailable
    from voicebot.identity.directory import open_directory

    try:
        directory = open_directory(settings_from(ctx).identity)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        customer = directory.by_number(number)
    except DirectoryUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        directory.close()
    if customer is None:
        raise click.ClickException(f"no customer {number.strip()}")
    click.echo(f"customer      {customer.number}\n"
               f"name          {customer.name}\n"
               f"phones        {', '.join(customer.phones) or '-'}\n"
               f"address       {mask_postcode(customer.postcode)}  {customer.house_number or '-'}\n"
               f"birth date    {mask_birth_date(customer.birth_date)}\n"
               f"PIN           {'set' if customer.has_pin else 'not set'}")


@customers.command("set-pin")
@click.argument("number")
@click.option("--pin-stdin", is_flag=True,
              help="Read the PIN from the first line of standard input (for scripts) instead of asking.")
@click.pass_context
def set_pin_command(ctx: click.Context, number: str, pin_stdin: bool) -> None:
    """Set the PIN a customer keys in on the phone; typed twice, never shown."""
    from voicebot.identity import DirectoryUnavailable, fields

    def valid(text: str) -> str:
        try:
            return fields.pin(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    with _embedded(ctx) as directory:
        try:
            if directory.by_number(number) is None:
                raise click.ClickException(f"no customer {number.strip()}")
            if pin_stdin:
                line = sys.stdin.readline(MAX_PIN_LINE)
                try:
                    pin = fields.pin(line)
                except ValueError as exc:
                    raise click.ClickException(f"{exc} (read from standard input)") from None
            else:
                pin = click.prompt(PIN_PROMPT, hide_input=True, confirmation_prompt="Repeat the PIN",
                                   value_proc=valid, err=True)
            if not directory.set_pin(number, pin):
                raise click.ClickException(f"no customer {number.strip()}")
        except DirectoryUnavailable as exc:
            raise click.ClickException(f"{exc}; PIN not set") from None
    click.echo(f"PIN set for customer {number.strip()}.")


@customers.command("count")
@click.pass_context
def count_command(ctx: click.Context) -> None:
    """Print how many customers the directory holds."""
    from voicebot.identity import DirectoryUnavailable

    with _embedded(ctx) as directory:
        try:
            click.echo(directory.count())
        except DirectoryUnavailable as exc:
            raise click.ClickException(str(exc)) from None
