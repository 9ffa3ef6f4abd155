"""The `voicebot` command line: one click group, each command a thin wrapper over a module.

Commands get their settings and flows from ``voicebot.commands.context``; nothing imports this module
back (imports run cli -> commands -> the package).
"""

from __future__ import annotations

import sys

import click

from voicebot.commands.context import chat_identity, flow_path, load_flow_file, settings_from


@click.group()
@click.option("--config", "config_path", envvar="VOICEBOT_CONFIG", default=None, help="config.yaml to use.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """voicebot: offline telephony voice assistant."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@main.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default: PORT or config web.port).")
@click.option("--dev", is_flag=True, default=False,
              help="Development mode (also VOICEBOT_DEV=1): 127.0.0.1 only; without TWILIO_AUTH_TOKEN a random "
                   "token is written to .run/dev-auth-token for `voicebot call`; without VOICEBOT_HASH_SALT a "
                   "local salt is kept in .run/hash-salt.")
@click.pass_context
def serve(ctx: click.Context, port: int | None, dev: bool) -> None:
    """Run the web app under gunicorn.

    Refuses to start without TWILIO_AUTH_TOKEN, PUBLIC_URL and VOICEBOT_HASH_SALT, unless in development
    mode.
    """
    from voicebot.errors import VoicebotError
    from voicebot.telephony.devmode import apply_dev_mode, serve_problem
    from voicebot.web import serve as run_server

    settings = settings_from(ctx)
    port = settings.port if port is None else port
    announce = ""
    if dev or settings.dev:
        settings, announce = apply_dev_mode(settings, port)
    else:
        problem = serve_problem(settings)
        if problem:
            raise click.ClickException(f"cannot start: {problem}")
    try:
        run_server(settings, port=port, announce=announce)
    except VoicebotError as exc:   # an invalid flow stops start-up with every problem listed
        raise click.ClickException(f"cannot start:\n{exc}") from None


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.pass_context
def worker(ctx: click.Context, burst: bool) -> None:
    """Run the RQ worker that handles warm-transfer jobs."""
    from voicebot.worker import run_worker

    sys.exit(run_worker(settings_from(ctx), burst=burst))


@main.group()
def flows() -> None:
    """Work with call flows."""


@flows.command("check")
@click.argument("files", nargs=-1, type=click.Path())
@click.pass_context
def flows_check(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Validate flow files (default: every flow in the flows directory); exit 1 on any error."""
    from voicebot.flow import check_files

    settings = settings_from(ctx)
    paths = list(files) or sorted(str(p) for p in settings.flows_dir.glob("*.yaml"))
    if not paths:
        click.echo(f"no flow files found in {settings.flows_dir}", err=True)
        sys.exit(1)
    loaded, problems = check_files(paths, settings.transfer_words)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {len(paths)} file(s)", err=True)
        sys.exit(1)
    for flow in loaded.values():
        click.echo(f"ok  {flow.path}  ({flow.id}, {flow.language}, {len(flow.spec.steps)} steps, "
                   f"{len(flow.spec.intents)} intents)")


@main.command()
@click.option("--flow", "flow_file", type=click.Path(), default=None,
              help="Flow file or id (default: the default flow).")
@click.option("--eval", "evaluate", is_flag=True,
              help="Measure the flow on its held-out sets (benchmarks/data/<flow>_*.yaml), as it is and with the "
                   "reviewed examples that wait for export.")
@click.option("--sets", type=click.Path(file_okay=False), default=None,
              help="With --eval: the folder of held-out sets (default: benchmarks/data next to config.yaml).")
@click.argument("text", required=False)
@click.pass_context
def nlu(ctx: click.Context, flow_file: str | None, evaluate: bool, sets: str | None, text: str | None) -> None:
    """Print what the flow understands in TEXT, as JSON (intent null when out of scope); or --eval."""
    import json

    from voicebot.nlu.slots import extract_entities

    if evaluate:
        from voicebot.commands.nlu_eval import run_eval

        run_eval(ctx, flow_file, sets)
        return
    if text is None:
        raise click.UsageError("give the TEXT to understand, or --eval")
    flow = load_flow_file(ctx, flow_path(ctx, flow_file))
    if flow.classifier is None:
        result = {"intent": None, "confidence": 0.0, "alternatives": []}
    else:
        result = flow.classifier.classify(text).to_dict()
    result["slots"] = extract_entities(text, flow.language)
    click.echo(json.dumps(result, ensure_ascii=False))


@main.command()
@click.option("--flow", "flow_file", type=click.Path(), default=None, help="Flow file (default: the default flow).")
@click.option("--caller", default="+31612345678", show_default=True, help="Caller's number.")
@click.option("--at", default=None, help="Call time, ISO 8601 (default: now), for business hours.")
@click.option("--script", type=click.Path(exists=True), default=None, help="Run a scenario file instead.")
@click.option("--keypad", is_flag=True, help="A call without speech recognition: only keys (#1234) and silence.")
@click.pass_context
def chat(ctx: click.Context, flow_file: str | None, caller: str, at: str | None, script: str | None,
         keypad: bool) -> None:
    """A text call in the terminal, or (with --script) scripted scenarios with expectations."""
    from voicebot import simulator
    from voicebot.errors import ScenarioError

    if script:
        try:
            defaults, scenarios = simulator.load_scenarios(script)
        except ScenarioError as exc:
            raise click.ClickException(str(exc)) from None
        flow = load_flow_file(ctx, flow_path(ctx, flow_file or defaults.get("flow")))
        identity = chat_identity(settings_from(ctx), flow, shared=False, customers=defaults.get("customers"))
        failed = 0
        for scenario in scenarios:
            result = simulator.run_scenario(flow, scenario, caller=caller if caller != "+31612345678"
                                            else defaults.get("caller", caller), at=at or defaults.get("at"),
                                            identity=identity)
            click.echo(f"{'PASS' if result.passed else 'FAIL'}  {result.name}")
            if not result.passed:
                failed += 1
                for failure in result.failures:
                    click.echo(f"      {failure}")
                for line in result.transcript:
                    click.echo(f"        | {line}")
        click.echo(f"{len(scenarios) - failed} passed, {failed} failed")
        sys.exit(1 if failed else 0)
    flow = load_flow_file(ctx, flow_path(ctx, flow_file))
    identity = chat_identity(settings_from(ctx), flow, note=lambda line: click.echo(f"     [{line}]"))
    simulator.chat(flow, caller=caller, at=at, read=input, out=sys.stdout, keypad=keypad, identity=identity)


def _register() -> None:
    from voicebot.commands.agents import agents
    from voicebot.commands.audio import audio
    from voicebot.commands.call import call
    from voicebot.commands.customers import customers
    from voicebot.commands.flows import reload as flows_reload
    from voicebot.commands.models import doctor, models
    from voicebot.commands.records import records
    from voicebot.commands.records_simulate import simulate
    from voicebot.commands.report import report
    from voicebot.commands.review import review
    from voicebot.commands.transcribe import transcribe

    for command in (models, doctor, audio, transcribe, call, customers, agents, records, report, review):
        main.add_command(command)
    records.add_command(simulate)
    flows.add_command(flows_reload)


_register()
