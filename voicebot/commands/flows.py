"""`voicebot flows reload`: every running server loads its changed flow files now.

The request goes over Redis (the channel every `voicebot serve` process listens to, see
voicebot/telephony/flow_reload.py), so it reaches every node from any machine that reaches their
Redis, without process ids or a shell on the nodes. Each node checks its own flows directory and
answers with what it serves now; the command prints the answers and exits 1 when a node kept a
running version because a file is broken (the problems are printed as `file:line: message`).
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Any

import click

from voicebot.commands.context import settings_from

MAX_REPLY_BYTES = 256 * 1024


@click.command("reload")
@click.option("--wait", "wait_seconds", type=click.FloatRange(1, 600), default=60.0, show_default=True,
              help="How long to wait for the servers' answers (a changed flow's classifier may be trained first).")
@click.pass_context
def reload(ctx: click.Context, wait_seconds: float) -> None:
    """Tell every running server (through Redis) to load its changed flow files now."""
    import redis

    from voicebot.redis_clients import redis_client, shown_url
    from voicebot.telephony.flow_reload import RELOAD_CHANNEL, REPLY_CHANNEL

    settings = settings_from(ctx)
    request_id = secrets.token_hex(8)
    try:
        client = redis_client(settings.redis_url, "listen")
        answers = client.pubsub(ignore_subscribe_messages=True)
        answers.subscribe(REPLY_CHANNEL)          # before asking: no answer can come before we listen
        listeners = client.publish(RELOAD_CHANNEL, json.dumps({"id": request_id}))
        replies = _collect(answers, request_id, listeners, wait_seconds) if listeners else []
        answers.close()
        client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise click.ClickException(
            f"Redis at {shown_url(settings.redis_url)} does not answer ({exc}); send SIGHUP to each `voicebot "
            f"serve` instead, or let its watcher (flows.watch_seconds) find the change") from None
    if not listeners:
        click.echo(f"no running server listens on {shown_url(settings.redis_url)}", err=True)
        sys.exit(1)
    broken = False
    for reply in replies:
        broken |= _show(reply)
    if len(replies) < listeners:
        click.echo(f"{listeners - len(replies)} of {listeners} server(s) did not answer within {wait_seconds:g} s",
                   err=True)
        sys.exit(1)
    sys.exit(1 if broken else 0)


def _collect(answers: Any, request_id: str, expected: int, wait_seconds: float) -> list[dict[str, Any]]:
    """The answers to ``request_id``, until ``expected`` came or the time is up."""
    replies: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_seconds
    while len(replies) < expected and (left := deadline - time.monotonic()) > 0:
        message = answers.get_message(timeout=min(1.0, left))
        if message is None or message.get("type") != "message":
            continue
        data = message.get("data")
        if not isinstance(data, bytes) or len(data) > MAX_REPLY_BYTES:
            continue
        try:
            reply = json.loads(data)
        except ValueError:
            continue
        if isinstance(reply, dict) and reply.get("id") == request_id:
            replies.append(reply)
    return replies


def _show(reply: dict[str, Any]) -> bool:
    """Print one server's answer; True when it kept a running version for a broken file."""
    node = str(reply.get("node", "?"))
    loaded = reply.get("loaded") if isinstance(reply.get("loaded"), dict) else {}
    serving = reply.get("serving") if isinstance(reply.get("serving"), dict) else {}
    problems = [str(p) for p in reply.get("problems") or []]
    for flow_id, pair in sorted(loaded.items()):
        old, new = (list(pair) + ["", ""])[:2] if isinstance(pair, list) else ("", "")
        click.echo(f"{node}: loaded {flow_id} {old or '(new)'} -> {new}")
    if not loaded and not problems:
        click.echo(f"{node}: nothing changed")
    for problem in problems:
        click.echo(f"{node}: {problem}", err=True)
    for path in reply.get("kept") or []:
        click.echo(f"{node}: {path} is broken: its flow goes on with the running version", err=True)
    for flow_id in reply.get("orphaned") or []:
        click.echo(f"{node}: no file defines {flow_id} any more; it is served until a restart")
    click.echo(f"{node}: serving " + ", ".join(f"{fid} {version}" for fid, version in sorted(serving.items())))
    return bool(problems)
