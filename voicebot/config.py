"""Settings: config.yaml read into one pydantic model, the environment applied, paths resolved.

Each setting is written once, in the section classes below, with its default, its type and its
allowed range; config.yaml shows the same values (a test keeps the two equal). ``load_settings``
is the only place that reads the environment and the only place that resolves paths. Unknown
keys, wrong types and values out of range fail loudly, each named with its place in config.yaml,
so a typo never silently falls back to a default and ``prompts.rate: -5`` is refused.

The sections are pydantic dataclasses: frozen, validated when built, and ``dataclasses.replace``
works on them (tests and the development mode derive settings that way).
"""

from __future__ import annotations

import copy

import dataclasses
import difflib
import os
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic import field_validator
from pydantic.dataclasses import dataclass

from voicebot.errors import ConfigError
from voicebot.nlu.lexicon import TRANSFER_WORDS
from voicebot.yaml12 import load_yaml

DEFAULT_CONFIG_FILE = "config.yaml"

DEV_ENV = "VOICEBOT_DEV"
DEV_TOKEN_FILE = Path(".run") / "dev-auth-token"
LOOPBACK = "127.0.0.1"

# ISO country code -> E.164 dialling prefix, for telephony.sms_countries. Add a line to allow a
# country that is not here.
COUNTRY_PREFIXES = {
    "NL": "+31", "BE": "+32", "LU": "+352", "DE": "+49", "FR": "+33", "GB": "+44", "IE": "+353",
    "ES": "+34", "IT": "+39", "AT": "+43", "CH": "+41", "DK": "+45", "SE": "+46", "NO": "+47",
    "PL": "+48", "PT": "+351", "US": "+1", "CA": "+1", "KR": "+82",
}

_SECTION = ConfigDict(extra="forbid", frozen=True)


def _range(lo: float | None = None, hi: float | None = None, *, above: float | None = None,
           unit: str = "", note: str = "") -> Any:
    """A pydantic Field with bounds, and the words the error message uses for them."""
    return Field(ge=lo, le=hi, gt=above, json_schema_extra={"unit": unit, "note": note})


Text = StrictStr
Name = Annotated[StrictStr, Field(min_length=1)]
Int = StrictInt
Seconds = Annotated[StrictFloat, _range(above=0, hi=300, unit="seconds")]
Port = Annotated[StrictInt, _range(1, 65535)]
Words = dict[StrictStr, list[StrictStr]]
Texts = dict[StrictStr, StrictStr]


def _over_default(cls: Any, name: str, value: Any) -> Any:
    """Language-keyed mappings (transfer words, models, voices) are merged key by key over the default."""
    if isinstance(value, Mapping):
        default = cls.__pydantic_fields__[name].get_default(call_default_factory=True)
        return {**default, **value}
    return value


# -- config.yaml, section by section -------------------------------------------------------------

@dataclass(config=_SECTION)
class FlowsSection:
    dir: Name = "flows"
    default: Name = "energie"
    watch_seconds: Annotated[StrictFloat, _range(0, 3600, unit="seconds", note="0: no watching")] = 2.0


@dataclass(config=_SECTION)
class RedisSection:
    url: Name = "redis://localhost:6379/0"
    call_ttl_seconds: Annotated[Int, _range(1, unit="seconds")] = 86400


@dataclass(config=_SECTION)
class QueuesSection:
    handoff: Name = "handoff"
    outbox: Path = Path("data/outbox.sqlite3")
    outbox_max_entries: Annotated[Int, _range(1, 1_000_000)] = 1000


@dataclass(config=_SECTION)
class DialogSection:
    max_turns: Annotated[Int, _range(1, 1000)] = 40
    transfer_words: Words = dataclasses.field(default_factory=lambda: copy.deepcopy(TRANSFER_WORDS))

    @field_validator("transfer_words", mode="before")
    @classmethod
    def _merge(cls, value: Any) -> Any:
        return _over_default(cls, "transfer_words", value)


@dataclass(config=_SECTION)
class WebSection:
    host: Name = "0.0.0.0"
    port: Port = 5000
    webhook_threads: Annotated[Int, _range(2, 1000)] = 8
    metrics_port: Annotated[Int, _range(0, 65535, note="0 serves /metrics on the main port")] = 0


@dataclass(config=_SECTION)
class SpeechSettings:
    """Recognition: where models live and the endpointer's timings (see config.yaml)."""

    models_dir: Path = Path("models")
    models: Texts = dataclasses.field(default_factory=dict)
    end_silence_ms: Annotated[Int, _range(20, 5000, unit="ms")] = 180
    end_silence_closed_ms: Annotated[Int, _range(20, 5000, unit="ms")] = 120
    end_silence_extended_ms: Annotated[Int, _range(20, 5000, unit="ms")] = 600
    min_speech_ms: Annotated[Int, _range(20, 5000, unit="ms")] = 160
    max_utterance_seconds: Annotated[StrictFloat, _range(above=0, hi=300, unit="seconds")] = 15.0
    vad_aggressiveness: Annotated[Int, _range(0, 3)] = 2

    @field_validator("models", mode="before")
    @classmethod
    def _merge(cls, value: Any) -> Any:
        return _over_default(cls, "models", value)


@dataclass(config=_SECTION)
class PromptSettings:
    """Prompt audio: synthesis cache, recorded overrides, espeak-ng voice and rate per language."""

    cache_dir: Path = Path("audio/cache")
    recorded_dir: Path = Path("audio")
    rate: Annotated[Int, _range(80, 450, unit="words per minute")] = 165
    voices: Texts = dataclasses.field(default_factory=lambda: {"nl": "nl", "en": "en-gb", "ko": "ko"})

    @field_validator("voices", mode="before")
    @classmethod
    def _merge(cls, value: Any) -> Any:
        return _over_default(cls, "voices", value)


@dataclass(config=_SECTION)
class TelephonySettings:
    """The Twilio side. The fields after ``sms_per_number_per_day`` come only from the environment."""

    public_url: Text = ""
    agent_number: Text = ""
    agent_sip: Text = ""
    agent_queue: Text = ""
    caller_id: Text = ""
    max_calls: Annotated[Int, _range(1, 10000)] = 24
    max_pending_streams: Annotated[Int, _range(1, 10000)] = 8
    start_timeout_seconds: Seconds = 5.0
    media_timeout_seconds: Seconds = 5.0
    rest_timeout_seconds: Seconds = 10.0
    queue_max_wait_seconds: Annotated[Int, _range(30, 3600, unit="seconds")] = 300
    sms_countries: tuple[StrictStr, ...] = ("NL", "BE")
    sms_per_number_per_day: Annotated[Int, _range(1, 1000)] = 3
    auth_token: Text = dataclasses.field(default="", repr=False)
    account_sid: Text = ""
    api_base: Text = ""
    stream_secret: Text = dataclasses.field(default="", repr=False)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (the address Twilio reaches, signatures are checked "
                             f"against it), not {value!r}")
        return value.rstrip("/")

    @field_validator("sms_countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in COUNTRY_PREFIXES]
        if unknown:
            raise ValueError(f"unknown country code(s) {unknown}; known: {', '.join(sorted(COUNTRY_PREFIXES))}")
        return value


@dataclass(config=_SECTION)
class IdentitySection:
    """Who is calling: the customer directory and the lockout against guessing across calls."""

    directory: Literal["sqlite", "http"] = "sqlite"
    database: Path = Path("data/customers.sqlite3")
    crm_url: Text = ""
    crm_timeout_seconds: Seconds = 3.0
    crm_failures_to_open: Annotated[Int, _range(1, 1000)] = 5
    crm_open_seconds: Seconds = 30.0
    lockout_attempts: Annotated[Int, _range(1, 100)] = 5
    lockout_minutes: Annotated[Int, _range(1, 10080, unit="minutes")] = 30
    crm_token: Text = dataclasses.field(default="", repr=False)


@dataclass(config=_SECTION)
class DeskSection:
    """The agent desk (``/agent``): its accounts file, sessions, lockout and live-update limits (docs/desk.md)."""

    accounts: Path = Path("data/agents.sqlite3")
    queues: tuple[StrictStr, ...] = ()
    group: Name = "desk"
    session_hours: Annotated[Int, _range(1, 168, unit="hours")] = 12
    lockout_attempts: Annotated[Int, _range(1, 100)] = 5
    lockout_attempts_per_address: Annotated[Int, _range(1, 10000)] = 20
    lockout_minutes: Annotated[Int, _range(1, 10080, unit="minutes")] = 15
    max_event_streams: Annotated[Int, _range(0, 1000, note="0: every desk polls")] = 4
    event_stream_seconds: Annotated[Int, _range(10, 3600, unit="seconds")] = 300
    heartbeat_seconds: Annotated[Int, _range(1, 300, unit="seconds")] = 15
    poll_seconds: Annotated[Int, _range(1, 300, unit="seconds")] = 5
    max_cards: Annotated[Int, _range(1, 1000)] = 200
    secret: Text = dataclasses.field(default="", repr=False)


@dataclass(config=_SECTION)
class WebhooksSection:
    """CRM delivery: every delivered handoff record POSTed as signed JSON to its queue's URLs.

    ``urls`` maps a queue name (``*``: every queue) to its URLs; the HMAC key is
    VOICEBOT_WEBHOOK_SECRET, never written here. See docs/telephony.md (*CRM webhooks*)."""

    urls: dict[StrictStr, tuple[StrictStr, ...]] = dataclasses.field(default_factory=dict)
    timeout_seconds: Seconds = 5.0
    retry_seconds: tuple[Int, ...] = (10, 30, 120, 600, 1800)
    secret: Text = dataclasses.field(default="", repr=False)

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for queue, urls in value.items():
            if len(urls) > 10:
                raise ValueError(f"queue '{queue}' has {len(urls)} URLs; at most 10")
            for url in urls:
                parts = urlsplit(url)
                if parts.scheme not in ("https", "http") or not parts.hostname:
                    raise ValueError(f"queue '{queue}': {url!r} is not an https:// (or http://) address")
        return value

    @field_validator("retry_seconds")
    @classmethod
    def _retries(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) > 20:
            raise ValueError(f"at most 20 retries, not {len(value)}")
        wrong = [v for v in value if not 1 <= v <= 86400]
        if wrong:
            raise ValueError(f"each pause must be between 1 and 86400 seconds, not {wrong[0]}")
        return value


@dataclass(config=_SECTION)
class RecordsSection:
    """Call records that outlast Redis: where they are kept and for how long (docs/records.md).

    ``url`` is an SQLAlchemy URL: ``sqlite:///data/records.sqlite3`` (relative to config.yaml's
    folder) by default, ``postgresql+psycopg://user@host/db`` for more than one worker machine;
    VOICEBOT_RECORDS_URL overrides it (so a password need not be written here). Records are
    personal data: each flow's are deleted after ``flow_retention_days[flow]`` or else
    ``retention_days``."""

    url: Name = "sqlite:///data/records.sqlite3"
    queue: Name = "records"
    retention_days: Annotated[Int, _range(1, 3650, unit="days")] = 90
    flow_retention_days: dict[StrictStr, Annotated[Int, _range(1, 3650, unit="days")]] = dataclasses.field(
        default_factory=dict)

    def retention_for(self, flow: str) -> int:
        """Days the records of ``flow`` are kept."""
        return self.flow_retention_days.get(flow, self.retention_days)


class ConfigFile(BaseModel):
    """config.yaml as written: one attribute per section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flows: FlowsSection = FlowsSection()
    redis: RedisSection = RedisSection()
    queues: QueuesSection = QueuesSection()
    dialog: DialogSection = DialogSection()
    web: WebSection = WebSection()
    speech: SpeechSettings = SpeechSettings()
    prompts: PromptSettings = PromptSettings()
    telephony: TelephonySettings = TelephonySettings()
    identity: IdentitySection = IdentitySection()
    desk: DeskSection = DeskSection()
    webhooks: WebhooksSection = WebhooksSection()
    records: RecordsSection = RecordsSection()


# Environment variables that override a setting of config.yaml (its range still applies).
ENV_OVERRIDES = {
    "REDIS_URL": ("redis", "url"),
    "PORT": ("web", "port"),
    "PUBLIC_URL": ("telephony", "public_url"),
    "VOICEBOT_MODELS_DIR": ("speech", "models_dir"),
    "AGENT_NUMBER": ("telephony", "agent_number"),
    "VOICEBOT_RECORDS_URL": ("records", "url"),
}
# Secrets: only ever from the environment, never from config.yaml.
ENV_SECRETS = {
    "TWILIO_AUTH_TOKEN": ("telephony", "auth_token"),
    "TWILIO_ACCOUNT_SID": ("telephony", "account_sid"),
    "TWILIO_API_BASE": ("telephony", "api_base"),
    "VOICEBOT_STREAM_SECRET": ("telephony", "stream_secret"),
    "VOICEBOT_CRM_TOKEN": ("identity", "crm_token"),
    "VOICEBOT_DESK_SECRET": ("desk", "secret"),
    "VOICEBOT_WEBHOOK_SECRET": ("webhooks", "secret"),
}
_FILE_ONLY_NOT = {key: var for var, (_, key) in ENV_SECRETS.items()}



def _defaults() -> dict[str, Any]:
    shown = ConfigFile().model_dump(mode="json")
    for section, key in ENV_SECRETS.values():
        del shown[section][key]
    return shown


DEFAULTS: dict[str, Any] = _defaults()
"""The defaults as config.yaml shows them: read from the model, never written a second time."""


@dataclass(frozen=True)
class Settings:
    """What the code reads: config.yaml's values flattened, environment applied, paths absolute."""

    flows_dir: Path
    default_flow: str            # a flow id (the `flow:` key of a file in flows_dir)
    redis_url: str
    call_ttl_seconds: int
    handoff_queue: str
    outbox_path: Path             # handoff contexts Redis could not take yet (voicebot/handoff/outbox.py)
    outbox_max_entries: int
    max_turns: int
    transfer_words: dict[str, list[str]]
    host: str
    port: int
    webhook_threads: int
    metrics_port: int
    speech: SpeechSettings
    prompts: PromptSettings
    telephony: TelephonySettings
    identity: IdentitySection
    desk: DeskSection = dataclasses.field(default_factory=DeskSection)
    metrics_token: str = dataclasses.field(default="", repr=False)   # VOICEBOT_METRICS_TOKEN
    dev: bool = False                                                # VOICEBOT_DEV=1
    hash_salt: str = dataclasses.field(default="", repr=False)       # VOICEBOT_HASH_SALT
    root: Path = Path(".")                                           # the folder of config.yaml
    webhooks: WebhooksSection = dataclasses.field(default_factory=WebhooksSection)
    records: RecordsSection = dataclasses.field(default_factory=RecordsSection)
    flows_watch_seconds: float = 2.0                                 # flows.watch_seconds


# -- reading --------------------------------------------------------------------------------------

def _without_nones(tree: Any) -> Any:
    """``key:`` with nothing after it means the default, as if the key were not there."""
    if isinstance(tree, Mapping):
        return {k: _without_nones(v) for k, v in tree.items() if v is not None}
    return tree


_OPEN = {"transfer_words": "map a language to a list of phrases", "models": "map a language to a text",
         "voices": "map a language to a text"}
_KINDS = {"int": "a whole number", "float": "a number", "string": "text", "bool": "true or false",
          "dict": "a mapping", "dataclass": "a mapping", "model": "a mapping", "list": "a list",
          "tuple": "a list", "path": "a path"}


def _field_info(loc: tuple[Any, ...]) -> Any:
    cls: Any = ConfigFile
    info = None
    for part in loc:
        fields = getattr(cls, "model_fields", None) or getattr(cls, "__pydantic_fields__", None)
        if not fields or part not in fields:
            return info
        info = fields[part]
        cls = info.annotation
    return info


def _bounds(info: Any) -> str:
    lo = hi = above = None
    for meta in getattr(info, "metadata", []):
        lo = getattr(meta, "ge", lo)
        hi = getattr(meta, "le", hi)
        above = getattr(meta, "gt", above)
    extra = (info.json_schema_extra or {}) if info is not None else {}
    if lo is not None and hi is not None:
        text = f"between {lo} and {hi}"
    elif above is not None and hi is not None:
        text = f"more than {above} and at most {hi}"
    elif lo is not None:
        text = f"at least {lo}"
    elif above is not None:
        text = f"more than {above}"
    else:
        text = "in range"
    unit = f" {extra['unit']}" if extra.get("unit") else ""
    note = f" ({extra['note']})" if extra.get("note") else ""
    return text + unit + note


def _sentence(error: dict[str, Any], from_env: dict[str, str]) -> str:
    """One pydantic error as a sentence about config.yaml."""
    loc = tuple(part for part in error["loc"] if isinstance(part, str))
    where = ".".join(loc)
    kind = error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        section, _, key = where.rpartition(".")
        if key in _FILE_ONLY_NOT:
            return f"'{where}' is a secret and never read from config.yaml: set {_FILE_ONLY_NOT[key]} instead"
        parent = _field_info(tuple(section.split("."))) if section else None
        known = list(getattr(parent.annotation, "__pydantic_fields__", {})) if parent else list(ConfigFile.model_fields)
        close = difflib.get_close_matches(key, known, n=1)
        return f"unknown setting '{where}'" + (f" (did you mean '{section + '.' if section else ''}{close[0]}'?)"
                                                 if close else "")
    top = ".".join(loc[:2])
    if len(loc) >= 2 and loc[1] in _OPEN:
        return f"'{top}' must {_OPEN[loc[1]]}"
    source = f" (from {from_env[where]})" if where in from_env else ""
    value = error.get("input")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"'{where}'{source} must be {_bounds(_field_info(loc))}, not {value!r}"
    if kind == "string_too_short":
        return f"'{where}'{source} must not be empty"
    if kind == "value_error":
        return f"'{where}'{source}: {error['msg'].removeprefix('Value error, ')}"
    for prefix, words in _KINDS.items():
        if kind.startswith(prefix + "_"):
            return f"'{where}'{source} must be {words}, not {value!r}"
    return f"'{where}'{source}: {error['msg']}"


def _read(file: Path, required: bool) -> dict[str, Any]:
    if not file.exists():
        if required:
            raise ConfigError(f"{file}: no such config file")
        return {}
    try:
        given = load_yaml(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"{file}: the top level must be a mapping")
    return _without_nones(given)


def _removed(given: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The unsigned mode is gone; saying so beats an 'unknown setting'."""
    errors = []
    tel = given.get("telephony")
    if isinstance(tel, Mapping) and "verify_signatures" in tel:
        if tel["verify_signatures"] is not True:
            errors.append("'telephony.verify_signatures: false' was removed: for local development run "
                          "`voicebot serve --dev` (loopback only, requests signed with a local token)")
        given["telephony"] = {k: v for k, v in tel.items() if k != "verify_signatures"}
    if env.get("VOICEBOT_INSECURE_NO_SIGNATURES") == "1":
        errors.append("VOICEBOT_INSECURE_NO_SIGNATURES was removed: for local development run "
                      "`voicebot serve --dev` (or VOICEBOT_DEV=1): loopback only, signed with a local token")
    return errors


def _apply_environment(given: dict[str, Any], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Put the environment's values where config.yaml's would be; refuse secrets written in the file."""
    errors: list[str] = []
    from_env: dict[str, str] = {}
    for var, (section, key) in ENV_SECRETS.items():
        part = given.get(section)
        if isinstance(part, Mapping) and key in part:
            errors.append(f"'{section}.{key}' is a secret and never read from config.yaml: set {var} instead")
            given[section] = {k: v for k, v in part.items() if k != key}
    for var, (section, key) in {**ENV_OVERRIDES, **ENV_SECRETS}.items():
        value = env.get(var)
        if not value:
            continue
        part = given.get(section)
        if part is not None and not isinstance(part, Mapping):
            continue    # reported as "must be a mapping"
        if key == "port":
            try:
                value = int(value)
            except ValueError:
                errors.append(f"{var} must be a port number, not {value!r}")
                continue
        given[section] = {**(part or {}), key: value}
        from_env[f"{section}.{key}"] = var
    return errors, from_env


def read_config(file: Path, env: Mapping[str, str], required: bool = False) -> ConfigFile:
    """config.yaml (and the environment's overrides) checked against the model; every problem at once."""
    given = _read(file, required)
    errors = _removed(given, env)
    env_errors, from_env = _apply_environment(given, env)
    errors += env_errors
    try:
        config = ConfigFile.model_validate(given)
    except ValidationError as exc:
        errors += [_sentence(e, from_env) for e in exc.errors()]
        config = None
    if errors:
        raise ConfigError(f"{file}: " + "; ".join(dict.fromkeys(errors)))
    assert config is not None
    return config


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (or $VOICEBOT_CONFIG, or ./config.yaml) and the environment."""
    env = os.environ if environ is None else environ
    file = Path(path or env.get("VOICEBOT_CONFIG") or DEFAULT_CONFIG_FILE)
    config = read_config(file, env, required=path is not None)
    root = file.resolve().parent

    def under_root(value: str | Path) -> Path:
        return Path(value) if Path(value).is_absolute() else root / value

    speech, prompts = config.speech, config.prompts
    return Settings(
        flows_dir=under_root(config.flows.dir),
        default_flow=config.flows.default,
        redis_url=config.redis.url,
        call_ttl_seconds=config.redis.call_ttl_seconds,
        handoff_queue=config.queues.handoff,
        outbox_path=under_root(config.queues.outbox),
        outbox_max_entries=config.queues.outbox_max_entries,
        max_turns=config.dialog.max_turns,
        transfer_words=config.dialog.transfer_words,
        host=config.web.host,
        port=config.web.port,
        webhook_threads=config.web.webhook_threads,
        metrics_port=config.web.metrics_port,
        metrics_token=env.get("VOICEBOT_METRICS_TOKEN", ""),
        dev=env.get(DEV_ENV, "") not in ("", "0"),
        hash_salt=env.get("VOICEBOT_HASH_SALT", ""),
        root=root,
        speech=dataclasses.replace(speech, models_dir=under_root(speech.models_dir),
                                   models={lang: str(under_root(p)) for lang, p in speech.models.items()}),
        prompts=dataclasses.replace(prompts, cache_dir=under_root(prompts.cache_dir),
                                    recorded_dir=under_root(prompts.recorded_dir)),
        telephony=config.telephony,
        identity=dataclasses.replace(config.identity, database=under_root(config.identity.database)),
        desk=dataclasses.replace(config.desk, accounts=under_root(config.desk.accounts)),
        webhooks=config.webhooks,
        records=dataclasses.replace(config.records, url=_records_url(config.records.url, root)),
        flows_watch_seconds=config.flows.watch_seconds,
    )


def _records_url(url: str, root: Path) -> str:
    """A relative SQLite path is under config.yaml's folder, like every other path here."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(root / url[len(prefix):])
    return url
