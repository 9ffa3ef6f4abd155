"""`voicebot call`: ring a running voicebot server from the terminal, exactly as Twilio would.

Before a real number points at the server, this shows whether the phone side holds up: signed
webhooks against the public URL, a real-time media stream, marks echoed on playback, barge-in with
``clear``, and the transfer TwiML with its whisper. The caller's turns come from the command line
(``--say``, ``--dtmf`` and ``--wav``, played in the order given, each after the bot has finished
talking) or from a YAML scenario (``--script``), which can also state what must happen (``expect``).

    voicebot call --say "ik wil een afspraak maken" --dtmf 1 --say ja --record bot.wav
    voicebot call --script scenarios/transfer.yaml --public-url https://bot.example.com
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

TURN_OPTIONS = {"--say": "say", "--dtmf": "dtmf", "--wav": "wav"}
ORDER_KEY = "voicebot.call.turn_order"


def turn_order(args: list[str]) -> list[str]:
    """The kinds of ``--say/--dtmf/--wav`` in command-line order.

    click hands each repeated option over as one tuple, which loses how they were interleaved;
    the raw arguments still have it.
    """
    order: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name in TURN_OPTIONS:
            order.append(TURN_OPTIONS[name])
            if "=" not in arg:
                i += 1  # the value, even if it looks like an option
        i += 1
    return order


class _OrderedTurns(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ORDER_KEY] = turn_order(list(args))
        return super().parse_args(ctx, args)


def _turns_from_options(order: list[str], values: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    pending = {kind: list(v) for kind, v in values.items()}
    turns = [{kind: pending[kind].pop(0)} for kind in order if pending.get(kind)]
    for kind, rest in pending.items():  # anything the scan missed keeps click's order
        turns.extend({kind: value} for value in rest)
    return turns


@click.command("call", cls=_OrderedTurns)
@click.option("--server", default="http://127.0.0.1:5000", show_default=True,
              help="Where the voicebot server listens.")
@click.option("--public-url", envvar="PUBLIC_URL", default=None,
              help="The base URL the server validates signatures against (env PUBLIC_URL; default: --server).")
@click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", default=None,
              help="The server's Twilio Auth Token, to sign requests (env TWILIO_AUTH_TOKEN; default: the token "
                   "a development server wrote to .run/dev-auth-token).")
@click.option("--account-sid", envvar="TWILIO_ACCOUNT_SID", default=None,
              help="AccountSid to send (env TWILIO_ACCOUNT_SID; default: a random one).")
@click.option("--from", "caller", default=None, help="Caller's number [default: +31612345678].")
@click.option("--to", "called", default=None, help="Number called [default: +31850000000].")
@click.option("--voice", default=None, help="espeak-ng voice for --say [default: nl].")
@click.option("--rate", type=int, default=None, help="espeak-ng words per minute [default: 165].")
@click.option("--say", multiple=True, help="Caller says TEXT (repeatable; turns play in command-line order).")
@click.option("--dtmf", multiple=True, help="Caller presses KEYS, e.g. 123# (repeatable).")
@click.option("--wav", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Caller plays a recording (any WAV; repeatable).")
@click.option("--script", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A YAML scenario (caller, called, voice, rate, turns, expect) instead of --say/--dtmf/--wav.")
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              help="Write what the caller heard from the bot to this WAV file.")
@click.option("--max-seconds", type=float, default=None, help="Hang up after this long [default: 120].")
@click.option("--redis-url", default=None,
              help="The server's Redis, where what the bot said is read after the call (prompts carry no text "
                   "on the line) [default: REDIS_URL or redis.url of config.yaml].")
@click.pass_context
def call(ctx: click.Context, server: str, public_url: str | None, auth_token: str | None, account_sid: str | None,
         caller: str | None, called: str | None, voice: str | None, rate: int | None, say: tuple[str, ...],
         dtmf: tuple[str, ...], wav: tuple[str, ...], script: str | None, record: str | None,
         max_seconds: float | None, redis_url: str | None) -> None:
    """Place a call on a running voicebot server as Twilio would, and print the conversation.

    What the bot said is read from the server's record of the call in its Redis once the call is
    over: like Twilio, the line only learns when a prompt was heard (marks are numbers).

    Exit status 1 when the server cannot be reached, refuses the signature, or an expectation of
    the scenario fails.
    """
    from voicebot.errors import VoicebotError
    from voicebot.emulator import DEFAULT_CALLED, DEFAULT_CALLER, load_scenario, place_call

    if not auth_token:
        auth_token = _dev_token(ctx)
    if not auth_token:
        raise click.UsageError("no auth token: pass --auth-token or set TWILIO_AUTH_TOKEN to the server's "
                               "Twilio Auth Token (requests are signed with it); a development server "
                               "(`make run`, `voicebot serve --dev`) writes one to .run/dev-auth-token")
    if script and (say or dtmf or wav):
        raise click.UsageError("use either --script or --say/--dtmf/--wav, not both")
    try:
        scenario = load_scenario(script) if script else {
            "turns": _turns_from_options(ctx.meta.get(ORDER_KEY, []), {"say": say, "dtmf": dtmf, "wav": wav})}
    except VoicebotError as exc:
        raise click.ClickException(str(exc)) from None
    # Only what the command line or the scenario states: place_call owns the defaults.
    options = {"caller": caller, "called": called, "voice": voice, "rate": rate, "max_seconds": max_seconds}
    kwargs: dict[str, Any] = {key: scenario[key] for key in options if key in scenario}
    kwargs.update({key: value for key, value in options.items() if value is not None})
    public = (public_url or server).rstrip("/")
    click.echo(f"calling {server} from {kwargs.get('caller', DEFAULT_CALLER)} to {kwargs.get('called', DEFAULT_CALLED)}"
               + (f" (signed for {public})" if public != server.rstrip("/") else ""))
    try:
        report = place_call(server, scenario["turns"], auth_token=auth_token, public_url=public,
                            account_sid=account_sid, record=record, out=sys.stdout,
                            expect=scenario.get("expect") or None, redis_url=redis_url or _redis_url(ctx), **kwargs)
    except VoicebotError as exc:
        raise click.ClickException(str(exc)) from None
    _summary(report, checked=bool(scenario.get("expect")))
    if not report.passed:
        sys.exit(1)


def _redis_url(ctx: click.Context) -> str | None:
    """The Redis this checkout's server uses (REDIS_URL, else config.yaml's redis.url)."""
    from voicebot.commands.context import settings_from

    try:
        return settings_from(ctx).redis_url
    except click.ClickException:    # a bad config.yaml: the call still runs, without the bot's words
        return None


def _dev_token(ctx: click.Context) -> str:
    """The token a development server on this checkout wrote (next to config.yaml, else here)."""
    from voicebot.commands.context import settings_from
    from voicebot.telephony.devmode import read_dev_token

    try:
        root = settings_from(ctx).root
    except click.ClickException:    # a bad config.yaml: the token may still be here
        root = Path.cwd()
    token = read_dev_token(root) or read_dev_token(Path.cwd())
    if token:
        click.echo(f"signing with the development token in {root / '.run' / 'dev-auth-token'}", err=True)
    return token


def _summary(report: Any, checked: bool) -> None:
    if report.transfer:
        end = f"transferred ({report.transfer['kind']} {report.transfer['target']})"
    elif report.timed_out:
        end = "no end in time: the caller hung up"
    else:
        end = {"bot": "the bot hung up", "caller": "the caller hung up"}.get(report.hung_up_by, "ended")
    click.echo(f"call {report.call_sid}: {end} after {report.duration:.1f} s, {len(report.marks)} prompt(s), "
               f"{report.clears} clear(s)")
    if report.latencies:
        click.echo("reply latency: " + ", ".join(f"turn {i}: " + (f"{lat:.3f} s" if lat is not None else "no reply")
                                                  for i, lat in enumerate(report.latencies, start=1)))
    if report.recording:
        click.echo(f"bot audio: {Path(report.recording)} ({len(report.bot_audio) / 8000:.1f} s)")
    for failure in report.failures:
        click.echo(f"FAIL  {failure}")
    if checked and report.passed:
        click.echo("PASS  every expectation met")
