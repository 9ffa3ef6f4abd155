"""`voicebot agents`: the accounts agents log in to the desk (/agent) with.

Each account is an ``agent`` (the desk) or an ``operator`` (the desk and the operations pages at
/ops); ``add --role operator`` makes one, ``role NAME operator|agent`` changes it.

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


ROLE_CHOICE = click.Choice(["agent", "operator"], case_sensitive=False)


@click.group("agents")
def agents() -> None:
    """Accounts for the desk at /agent (agents) and the operations pages at /ops (operators)."""


@agents.command("add")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, default="agent", show_default=True,
              help="operator: the desk and the operations pages (/ops).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.pass_context
def add_command(ctx: click.Context, name: str, role: str, password_stdin: bool) -> None:
    """Make an account NAME (a-z, 0-9, '.', '_', '-'); the password is asked twice, never shown."""
    from voicebot.desk.accounts import AccountError, normal_name

    accounts = _accounts(ctx)
    role = role.lower()
    with _one_line_errors(accounts):
        name = normal_name(name)
        if name in accounts.names():
            raise AccountError(f"agent {name} exists already (`voicebot agents passwd {name}` changes the password)")
        accounts.add(name, _password(password_stdin), role=role)
    where = "/agent and /ops" if role == "operator" else "/agent"
    click.echo(f"{role.capitalize()} {name} added to {accounts.path}; log in at {where}.")


@agents.command("role")
@click.argument("name")
@click.argument("role", type=ROLE_CHOICE)
@click.pass_context
def role_command(ctx: click.Context, name: str, role: str) -> None:
    """Make NAME an operator (the desk and /ops) or an agent (the desk only); counts from their next click."""
    accounts = _accounts(ctx)
    with _one_line_errors(accounts):
        accounts.set_role(name, role.lower())
    click.echo(f"{name.strip().lower()} is now {'an operator' if role.lower() == 'operator' else 'an agent'}.")


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
    """The accounts, one a line: name and role."""
    accounts = _accounts(ctx)
    with _one_line_errors(accounts):
        rows = accounts.roles()
    width = max((len(name) for name, _ in rows), default=0)
    for name, role in rows:
        click.echo(f"{name:<{width}}  {role}")
