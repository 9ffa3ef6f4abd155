"""`voicebot agents`: the accounts agents log in to the desk (/agent) with.

Passwords are typed twice without echo, or read from the first line of standard input with
``--password-stdin`` (for scripts: never on the command line, where `ps` and the shell's history
would show them). The file is ``desk.accounts`` in config.yaml.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import click

from voicebot.commands.context import settings_from

MAX_PASSWORD_LINE = 2048


def _accounts(ctx: click.Context):
    from voicebot.desk.accounts import Accounts

    return Accounts(settings_from(ctx).desk.accounts)


def _password(password_stdin: bool) -> str:
    from voicebot.desk.accounts import AccountError, check_password

    def valid(text: str) -> str:
        try:
            return check_password(text)
        except AccountError as exc:
            raise click.BadParameter(str(exc)) from None

    if password_stdin:
        line = sys.stdin.readline(MAX_PASSWORD_LINE).rstrip("\r\n")
        try:
            return check_password(line)
        except AccountError as exc:
            raise click.ClickException(f"{exc} (read from standard input)") from None
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password", value_proc=valid,
                        err=True)


@contextmanager
def _one_line_errors(accounts) -> Iterator[None]:
    """What can go wrong with an account or its file, as one clear line instead of a traceback."""
    import sqlite3

    from voicebot.desk.accounts import AccountError

    try:
        yield
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"{accounts.path}: {exc}") from None


@click.group("agents")
def agents() -> None:
    """Agents' accounts for the desk at /agent."""


@agents.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.pass_context
def add_command(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Make an account NAME (a-z, 0-9, '.', '_', '-'); the password is asked twice, never shown."""
    from voicebot.desk.accounts import AccountError, normal_name

    accounts = _accounts(ctx)
    with _one_line_errors(accounts):
        name = normal_name(name)
        if name in accounts.names():
            raise AccountError(f"agent {name} exists already (`voicebot agents passwd {name}` changes the password)")
        accounts.add(name, _password(password_stdin))
    click.echo(f"Agent {name} added to {accounts.path}; log in at /agent.")


@agents.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.pass_context
def passwd_command(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Give NAME a new password; every browser NAME is logged in on is logged out."""
    from voicebot.desk.accounts import AccountError, normal_name

    accounts = _accounts(ctx)
    with _one_line_errors(accounts):
        name = normal_name(name)
        if name not in accounts.names():
            raise AccountError(f"no agent {name}")
        accounts.set_password(name, _password(password_stdin))
    click.echo(f"Password of agent {name} changed.")


@agents.command("remove")
@click.argument("name")
@click.pass_context
def remove_command(ctx: click.Context, name: str) -> None:
    """Remove NAME's account; NAME is logged out at once."""
    from voicebot.desk.accounts import AccountError

    try:
        removed = _accounts(ctx).remove(name)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    if not removed:
        raise click.ClickException(f"no agent {name.strip().lower()}")
    click.echo(f"Agent {name.strip().lower()} removed.")


@agents.command("list")
@click.pass_context
def list_command(ctx: click.Context) -> None:
    """The agents' names, one a line."""
    for name in _accounts(ctx).names():
        click.echo(name)
