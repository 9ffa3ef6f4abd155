"""`voicebot models list|install` and `voicebot doctor`.

A voice bot fails at the first call, not at start-up, when a speech model, Redis or espeak-ng is
missing; these commands say so up front, one line per part, each with the command that fixes it.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from voicebot.commands.context import default_flow_file, flow_header, settings_from
from voicebot.config import Settings
from voicebot.errors import VoicebotError

if TYPE_CHECKING:
    from voicebot.speech.models import ModelInfo


def _mb(size: int, approx: bool) -> str:
    return f"{'~' if approx else ''}{size / 1e6:.1f} MB"


@click.group("models")
def models() -> None:
    """Speech models: which are known, which are installed, installing one."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Known downloadable models per language, and the model each language uses now."""
    from voicebot.speech import models as sm

    speech = settings_from(ctx).speech
    rows = sm.describe(sm.candidate_languages(speech), speech)
    installed = {row["language"]: row["name"] for row in rows if row["status"] == "ok"}
    known = [dict(_known_row(info), installed=installed.get(info.language) == info.name)
             for infos in sm.KNOWN_MODELS.values() for info in infos]
    if as_json:
        click.echo(json.dumps({"models_dir": str(speech.models_dir), "known": known, "languages": rows}, indent=2))
        return
    _print_known(known)
    click.echo("")
    _print_languages(rows, speech.models_dir)


def _known_row(info: ModelInfo) -> dict:
    return {"language": info.language, "name": info.name, "size": info.size, "size_approx": info.size_approx,
            "url": info.url, "checksum": info.checksum, "dynamic_graph": info.dynamic_graph,
            "license": info.license, "description": info.description}


def _print_known(known: list[dict]) -> None:
    click.echo("Known models (`voicebot models install LANG|NAME`; the first per language is the default):")
    width = max(len(row["name"]) for row in known)
    for row in known:
        mark = "*" if row["installed"] else " "
        graph = "dynamic" if row["dynamic_graph"] else "static " if row["dynamic_graph"] is False else "?      "
        checksum = row["checksum"] or "none published (install needs --checksum)"
        click.echo(f" {mark} {row['language']:<3} {row['name']:<{width}}  {_mb(row['size'], row['size_approx']):>10}"
                   f"  {graph}  {checksum}  {row['url']}")
    click.echo("   (* = installed; dynamic = graph/HCLr.fst + Gr.fst, needed for grammar-constrained listening)")


def _print_languages(rows: list[dict], models_dir: Path) -> None:
    click.echo(f"Speech model per language (models directory: {models_dir}):")
    for row in rows:
        if row["status"] == "missing":
            click.echo(f"   {row['language']:<3} missing  `voicebot models install {row['language']}`")
        elif row["status"] == "broken":
            click.echo(f"   {row['language']:<3} BROKEN   {row['problem']}")
        else:
            name = row["name"] or "unknown model"
            graph = "" if row["dynamic_graph"] else ", no dynamic graph"
            click.echo(f"   {row['language']:<3} ok       {row['path']}  ({name}; from {row['source']}{graph})")


@models.command("install")
@click.argument("model", required=False)
@click.option("--url", default=None, help="Download from this address instead of the known one.")
@click.option("--checksum", default=None, help="Expected sha256:<hex> or md5:<hex> of the archive.")
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False), default=None,
              help="Install a local .zip or .tar.gz archive (no network).")
@click.option("--language", default=None, help="Language the --from-file model is for (e.g. nl).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def install_model(ctx: click.Context, model: str | None, url: str | None, checksum: str | None,
                  from_file: str | None, language: str | None, no_progress: bool) -> None:
    """Install MODEL (a language such as nl, or a model name) into the models directory.

    \b
    voicebot models install nl
    voicebot models install vosk-model-small-en-us-0.15
    voicebot models install xx --url https://host/model.zip --checksum sha256:...
    voicebot models install --from-file vosk-model-small-nl-0.22.zip --language nl
    """
    from voicebot.speech import models as sm

    speech = settings_from(ctx).speech
    try:
        if from_file:
            lang = language or _language_of(model)
            if not lang:
                raise click.UsageError("--from-file needs --language LANG")
            info_name = Path(from_file).name
            path = sm.install_from_file(from_file, lang, speech, checksum=checksum)
        else:
            if not model:
                raise click.UsageError("name a language or model (e.g. `voicebot models install nl`), "
                                       "or use --from-file ARCHIVE --language LANG")
            if language:
                raise click.UsageError("--language is only used with --from-file")
            info_name = sm.resolve(model, url=url, checksum=checksum).name
            path = sm.install(model, speech, url=url, checksum=checksum, progress=not no_progress)
    except VoicebotError as exc:
        raise click.ClickException(str(exc)) from None
    graph = "" if sm.has_dynamic_graph(path) else " (no dynamic graph: grammar-constrained listening is unavailable)"
    click.echo(f"installed {info_name} in {path}{graph}")


def _language_of(model: str | None) -> str | None:
    """`install --from-file X nl` and `install --from-file X vosk-model-small-nl-0.22` name the language too."""
    from voicebot.speech.models import known_model

    if model is None:
        return None
    info = known_model(model)
    return info.language if info else model


# -- doctor ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One line of `voicebot doctor`: a part, whether it is usable, and what to do if not."""

    part: str
    ok: bool
    detail: str
    required: bool = True

    @property
    def label(self) -> str:
        return "ok" if self.ok else "MISSING" if self.required else "WARN"


@click.command("doctor")
@click.option("--live", is_flag=True,
              help="Check for taking real calls: Twilio's credentials and the public URL are required too.")
@click.pass_context
def doctor(ctx: click.Context, live: bool) -> None:
    """Report every missing part: speech models, Redis, espeak-ng, ffmpeg, credentials.

    \b
    Required (exit 1 when any is missing), because local use breaks without them:
      flow files in the flows directory, each with a readable `language:`,
      a speech model for every language used by those flows,
      Redis reachable at redis.url / REDIS_URL, espeak-ng on PATH, pyttsx3 importable.
    Needed to take real calls (warnings, exit 0; required with --live):
      TWILIO_AUTH_TOKEN, telephony.public_url (or PUBLIC_URL) and VOICEBOT_HASH_SALT. Without them
      the development mode (`make run` without a token, or `voicebot serve --dev`) runs on
      127.0.0.1 with a generated token and a local salt in .run/hash-salt, and `voicebot call`
      rings it.
    Warnings only (exit 0):
      TWILIO_ACCOUNT_SID (text messages need it), flows.default not among the flows,
      ffmpeg (needed only for recorded prompts and audio files that are not plain PCM WAV),
      the agent desk: no agent account yet, or (with --live) no VOICEBOT_DESK_SECRET.
    Secrets are never printed, only whether they are set.
    """
    settings = settings_from(ctx)
    checks = [*_model_checks(settings), _redis_check(settings.redis_url),
              _program_check("espeak-ng", True, "prompt synthesis needs it: apt-get install espeak-ng"),
              _program_check("ffmpeg", False, "reading recorded prompts other than PCM WAV needs it: "
                                               "apt-get install ffmpeg"),
              _pyttsx3_check(), *_twilio_checks(settings, live), _salt_check(settings, live),
              *_desk_checks(settings, live)]
    width = max(len(check.part) for check in checks)
    for check in checks:
        click.echo(f"{check.label:<8} {check.part:<{width}}  {check.detail}")
    missing = [check for check in checks if not check.ok and check.required]
    warned = [check for check in checks if not check.ok and not check.required]
    purpose = ("for taking real calls" if live else
               "for local use (`voicebot doctor --live` checks what real calls need)")
    click.echo(f"{len(missing)} missing, {len(warned)} warning(s) {purpose}")
    sys.exit(1 if missing else 0)


def _flow_languages(flows_dir: Path) -> tuple[dict[str, list[str]], list[Check]]:
    """Language -> flow files using it, read cheaply from each file's `language:` key.

    Read as flows are (YAML 1.2 booleans), so `language: no` is Norwegian, not False.
    """
    languages: dict[str, list[str]] = {}
    problems: list[Check] = []
    files = sorted(flows_dir.glob("*.yaml"))
    if not files:
        problems.append(Check("flows", False, f"no flow files in {flows_dir}: add one or set flows.dir"))
    for file in files:
        language = flow_header(file).get("language")
        if not isinstance(language, str) or not language:
            problems.append(Check(f"flow {file.name}", False, "no readable `language:`; run `voicebot flows check`"))
            continue
        languages.setdefault(language, []).append(file.name)
    return languages, problems


def _default_flow_check(settings: Settings) -> list[Check]:
    if not any(settings.flows_dir.glob("*.yaml")) or default_flow_file(settings) is not None:
        return []
    return [Check("default flow", False, f"flows.default '{settings.default_flow}' is not the `flow:` of any file "
                                         f"in {settings.flows_dir}: calls that name no flow get the first flow, "
                                         "and `voicebot chat`/`nlu` need --flow", required=False)]


def _model_checks(settings: Settings) -> list[Check]:
    from voicebot.speech.models import ModelError, has_dynamic_graph, identify, model_dir

    languages, checks = _flow_languages(settings.flows_dir)
    checks += _default_flow_check(settings)
    for language, files in sorted(languages.items()):
        part = f"speech model {language}"
        try:
            path = model_dir(language, settings.speech)
        except ModelError as exc:
            checks.append(Check(part, False, f"{exc} (used by {', '.join(files)})"))
            continue
        name = identify(path) or "model"
        graph = "" if has_dynamic_graph(path) else "; no dynamic graph: listen phrases fall back to free-form"
        checks.append(Check(part, True, f"{path} ({name}){graph}"))
    return checks


def _redis_check(url: str) -> Check:
    from voicebot.redis_clients import ping, shown_url

    fix = "start redis-server (`make run` does) or set REDIS_URL / redis.url to a running Redis"
    reason = ping(url, "probe")
    if reason is None:
        return Check("redis", True, f"{shown_url(url)} answers PING")
    if reason.startswith("not a valid Redis URL"):
        return Check("redis", False, f"{shown_url(url)} is {reason}; {fix}")
    return Check("redis", False, f"cannot reach Redis at {shown_url(url)} ({reason}); {fix}")


def _program_check(program: str, required: bool, fix: str) -> Check:
    found = shutil.which(program)
    return Check(program, bool(found), found or f"not on PATH; {fix}", required)


def _pyttsx3_check() -> Check:
    try:
        import pyttsx3  # noqa: F401
    except Exception as exc:  # a broken install can fail with more than ImportError
        return Check("pyttsx3", False, f"cannot be imported ({exc}); pip install pyttsx3")
    return Check("pyttsx3", True, "importable")


DEV_MODE = "for local use, `make run` without a token or `voicebot serve --dev` needs none"


def _twilio_checks(settings: Settings, live: bool) -> list[Check]:
    """Twilio's side: required with --live; otherwise warnings that say what works without them."""
    tel = settings.telephony
    return [
        Check("twilio auth token", bool(tel.auth_token),
              "set (TWILIO_AUTH_TOKEN)" if tel.auth_token
              else f"TWILIO_AUTH_TOKEN is not set: needed to take real calls (copy it from the Twilio console "
                   f"into the environment); {DEV_MODE}", required=live),
        Check("public url", bool(tel.public_url),
              tel.public_url or "telephony.public_url (or PUBLIC_URL) is not set: needed to take real calls (the "
                                f"https address Twilio reaches); {DEV_MODE}", required=live),
        Check("twilio account sid", bool(tel.account_sid),
              "set (TWILIO_ACCOUNT_SID)" if tel.account_sid
              else "TWILIO_ACCOUNT_SID is not set: text messages cannot be sent and the media stream's account is "
                   "not checked; copy it from the Twilio console into the environment", required=False),
    ]


def _salt_check(settings: Settings, live: bool) -> Check:
    """The salt that keys every stored hash: `voicebot serve` refuses to start without one."""
    from voicebot.telephony.devmode import DEV_SALT_FILE, SALT_RECIPE, salt_problem

    problem = salt_problem(settings.hash_salt)
    if problem is None:
        return Check("hash salt", True, "set (VOICEBOT_HASH_SALT)")
    if settings.hash_salt:
        return Check("hash salt", False, f"{problem}; needed to take real calls", required=live)
    return Check("hash salt", False,
                 "VOICEBOT_HASH_SALT is not set: needed to take real calls (secret answers and calling numbers are "
                 f"kept as hashes keyed with it; make one with `{SALT_RECIPE}`); for local use the development mode "
                 f"keeps one in {DEV_SALT_FILE}", required=live)


def _desk_checks(settings: Settings, live: bool) -> list[Check]:
    """The agent desk (/agent): someone must be able to log in, and its cookies need a secret."""
    import sqlite3

    from voicebot.desk import secret_problem
    from voicebot.desk.accounts import Accounts

    accounts = settings.desk.accounts
    try:
        names = Accounts(accounts).names()
        detail = (f"{len(names)} account(s) in {accounts}" if names else
                  f"no agent account in {accounts}: nobody can log in to /agent; make one with "
                  "`voicebot agents add NAME`")
    except (sqlite3.Error, OSError) as exc:
        names, detail = [], f"{accounts} cannot be read ({exc})"
    checks = [Check("desk agents", bool(names), detail, required=False)]
    problem = secret_problem(settings.desk.secret)
    if problem is None:
        checks.append(Check("desk secret", True, "set (VOICEBOT_DESK_SECRET)"))
    else:
        checks.append(Check("desk secret", False, f"{problem}; without it /agent answers 503 (the development mode "
                                                   "keeps one in .run/desk-secret)", required=False))
    return checks
