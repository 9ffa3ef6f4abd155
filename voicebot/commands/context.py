"""What every command needs from the command line: its settings and the flow it works on.

``voicebot --config FILE`` (or VOICEBOT_CONFIG) names config.yaml once for the whole command line;
commands read it here, never through ``voicebot.cli``, so imports run one way: cli -> commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError
from voicebot.flow_files import flow_file, flow_header  # noqa: F401  (flow_header: the commands' import)

if TYPE_CHECKING:
    from voicebot.flow import Flow
    from voicebot.identity.service import IdentityService


def config_path(ctx: click.Context) -> str | None:
    """The --config given to `voicebot` (None: $VOICEBOT_CONFIG or ./config.yaml)."""
    return (ctx.find_root().obj or {}).get("config_path")


def settings_from(ctx: click.Context) -> Settings:
    """The command's settings, read once per command line; a bad config.yaml is one clear error line."""
    obj = ctx.find_root().ensure_object(dict)
    if "settings" not in obj:
        try:
            obj["settings"] = load_settings(obj.get("config_path"))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    return obj["settings"]


def default_flow_file(settings: Settings) -> Path | None:
    """The file in the flows directory whose ``flow:`` id is ``flows.default``.

    ``<id>.yaml`` is tried first (the usual name); any other file is found by its id.
    """
    return flow_file_by_id(settings, settings.default_flow)


def flow_file_by_id(settings: Settings, flow_id: str) -> Path | None:
    """The file in the flows directory whose ``flow:`` id is ``flow_id`` (``<id>.yaml`` looked at first)."""
    return flow_file(settings.flows_dir, flow_id)


def flow_path(ctx: click.Context, flow: str | None) -> str:
    """``--flow FILE`` as given (or, when no such file exists, the flows directory's file of the flow
    with that id), else the file of the configured default flow."""
    if flow:
        if not Path(flow).exists():
            found = flow_file_by_id(settings_from(ctx), flow)
            if found is not None:
                return str(found)
        return flow
    settings = settings_from(ctx)
    found = default_flow_file(settings)
    if found is None:
        raise click.UsageError(f"default flow '{settings.default_flow}' (flows.default) not found in "
                               f"{settings.flows_dir}; pass --flow FILE")
    return str(found)


def load_flow_file(ctx: click.Context, path: str) -> Flow:
    """The flow in ``path``, ready to run; its problems are printed, one a line, and the command exits 1."""
    from voicebot.errors import FlowError
    from voicebot.flow import load_flow

    try:
        return load_flow(path, settings_from(ctx).transfer_words)
    except FlowError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)


def chat_identity(settings: Settings, flow: "Flow", *, shared: bool = True, customers: str | None = None,
                         note: Callable[[str], None] = lambda line: None) -> "IdentityService | None":
    """The identity checks of a chat: None when ``flow`` has no verify step, else the configured
    directory with lockout counters in Redis when ``shared`` and Redis answers, else in this
    process (``note`` is told so, in one line). ``customers``: a CSV file whose customers answer
    instead of the configured directory (a scenario file's ``customers:``)."""
    from voicebot.identity.service import IdentityService, uses_verification

    if not uses_verification([flow]):
        return None
    from voicebot.identity.directory import open_directory   # only a flow that verifies needs it
    from voicebot.identity.lockout import Lockout, MemoryLockout, RedisLockout
    from voicebot.redis_clients import ping, redis_client, shown_url

    section = settings.identity
    lockout: Lockout
    window = section.lockout_minutes * 60
    problem = ping(settings.redis_url) if shared else "not shared"
    if problem is None:
        lockout = RedisLockout(redis_client(settings.redis_url, "store"), section.lockout_attempts, window)
    else:
        lockout = MemoryLockout(section.lockout_attempts, window)
        if shared:
            note(f"no Redis at {shown_url(settings.redis_url)} ({problem}): failed identity checks count "
                 "in this chat only")
    if customers:
        from voicebot.identity.csvimport import directory_from_csv

        try:
            directory = directory_from_csv(customers)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"customers: {exc}") from None
    else:
        directory = open_directory(section)
    return IdentityService(directory, None, settings.hash_salt, section.lockout_attempts,
                           section.lockout_minutes, lockout=lockout)
