"""Settings: config.yaml merged over built-in defaults, secrets from the environment.

Loaded once into plain dataclasses at start-up; unknown keys and wrong types fail loudly so a
typo in config.yaml never silently falls back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from voicebot.errors import ConfigError

DEFAULT_CONFIG_FILE = "config.yaml"

DEFAULTS: dict[str, Any] = {
    "flows": {"dir": "flows", "default": "energie"},
    "redis": {"url": "redis://localhost:6379/0", "call_ttl_seconds": 86400},
    "queues": {"handoff": "handoff"},
    "dialog": {
        "max_turns": 40,
        "transfer_words": {
            "nl": ["medewerker", "een medewerker", "mens", "iemand spreken"],
            "en": ["agent", "operator", "representative", "human"],
        },
    },
    "web": {"host": "0.0.0.0", "port": 5000, "webhook_threads": 8, "metrics_port": 0},
    "speech": {
        "models_dir": "models",
        "models": {},
        "end_silence_ms": 240,
        "min_speech_ms": 160,
        "max_utterance_seconds": 15.0,
        "vad_aggressiveness": 2,
    },
    "prompts": {
        "cache_dir": "audio/cache",
        "recorded_dir": "audio",
        "rate": 165,
        "voices": {"nl": "nl", "en": "en-gb", "ko": "ko"},
    },
    "telephony": {
        "public_url": "",
        "verify_signatures": True,
        "agent_number": "",
        "agent_sip": "",
        "agent_queue": "",
        "caller_id": "",
        "max_calls": 24,
        "max_pending_streams": 8,
        "start_timeout_seconds": 5.0,
        "media_timeout_seconds": 5.0,
        "rest_timeout_seconds": 10.0,
        "sms_countries": ["NL", "BE"],
        "sms_per_number_per_day": 3,
    },
}

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

# Settings whose value maps a free key (a language) to a value: merged key by key, never checked
# against the defaults' keys.
_OPEN_MAPPINGS = {"transfer_words", "models", "voices"}


@dataclass(frozen=True)
class SpeechSettings:
    """Recognition: where models live and the endpointer's timings (see config.yaml)."""

    models_dir: Path = Path("models")
    models: dict[str, str] = field(default_factory=dict)
    end_silence_ms: int = 240
    min_speech_ms: int = 160
    max_utterance_seconds: float = 15.0
    vad_aggressiveness: int = 2


@dataclass(frozen=True)
class PromptSettings:
    """Prompt audio: synthesis cache, recorded overrides, espeak-ng voice and rate per language."""

    cache_dir: Path = Path("audio/cache")
    recorded_dir: Path = Path("audio")
    rate: int = 165
    voices: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS["prompts"]["voices"]))


@dataclass(frozen=True)
class TelephonySettings:
    """The Twilio side. Secrets (auth token, account SID) come only from the environment."""

    public_url: str = ""
    verify_signatures: bool = True   # always True: the unsigned mode was replaced by the development mode
    agent_number: str = ""
    agent_sip: str = ""
    agent_queue: str = ""
    caller_id: str = ""
    max_calls: int = 24
    max_pending_streams: int = 8
    start_timeout_seconds: float = 5.0
    media_timeout_seconds: float = 5.0
    rest_timeout_seconds: float = 10.0
    sms_countries: tuple[str, ...] = ("NL", "BE")
    sms_per_number_per_day: int = 3
    auth_token: str = field(default="", repr=False)
    account_sid: str = ""
    api_base: str = ""
    stream_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    flows_dir: Path
    default_flow: str
    redis_url: str
    call_ttl_seconds: int
    handoff_queue: str
    max_turns: int
    transfer_words: dict[str, list[str]]
    host: str
    port: int
    webhook_threads: int = 8
    metrics_port: int = 0
    metrics_token: str = field(default="", repr=False)
    dev: bool = False
    hash_salt: str = field(repr=False, default="")
    root: Path = Path(".")
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    prompts: PromptSettings = field(default_factory=PromptSettings)
    telephony: TelephonySettings = field(default_factory=TelephonySettings)


def _merge(defaults: dict[str, Any], given: Mapping[str, Any], path: str, errors: list[str]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in given.items():
        where = f"{path}.{key}" if path else key
        if key not in defaults:
            errors.append(f"unknown setting '{where}'")
        elif isinstance(defaults[key], dict) and key not in _OPEN_MAPPINGS:
            if not isinstance(value, Mapping):
                errors.append(f"'{where}' must be a mapping")
            else:
                out[key] = _merge(defaults[key], value, where, errors)
        elif key == "transfer_words":
            if not isinstance(value, Mapping) or not all(isinstance(v, list) for v in value.values()):
                errors.append(f"'{where}' must map a language to a list of phrases")
            else:
                out[key] = {**defaults[key], **{k: [str(w) for w in v] for k, v in value.items()}}
        elif key in _OPEN_MAPPINGS:
            if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
                errors.append(f"'{where}' must map a language to a text")
            else:
                out[key] = {**defaults[key], **{str(k): v for k, v in value.items()}}
        elif isinstance(defaults[key], float) and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
        elif value is not None and type(defaults[key]) is not type(value):
            errors.append(f"'{where}' must be {type(defaults[key]).__name__}, not {value!r}")
        else:
            out[key] = value
    return out


def _check_limits(merged: dict[str, Any], errors: list[str]) -> None:
    """Limits that would make the server refuse everything, or wait forever, are errors."""
    tel, web = merged["telephony"], merged["web"]
    if not tel.get("verify_signatures", True):
        errors.append("'telephony.verify_signatures: false' was removed: for local development run "
                      "`voicebot serve --dev` (loopback only, requests signed with a local token)")
    for key in ("max_calls", "max_pending_streams", "sms_per_number_per_day"):
        if isinstance(tel[key], int) and tel[key] < 1:
            errors.append(f"'telephony.{key}' must be at least 1")
    for key in ("start_timeout_seconds", "media_timeout_seconds", "rest_timeout_seconds"):
        if isinstance(tel[key], (int, float)) and not 0 < tel[key] <= 300:
            errors.append(f"'telephony.{key}' must be between 0 and 300 seconds")
    if isinstance(web["metrics_port"], int) and not 0 <= web["metrics_port"] < 65536:
        errors.append("'web.metrics_port' must be a port number, or 0 for /metrics on the main port")
    if isinstance(web["webhook_threads"], int) and web["webhook_threads"] < 2:
        errors.append("'web.webhook_threads' must be at least 2")
    countries = tel["sms_countries"]
    if isinstance(countries, list):
        unknown = [c for c in countries if c not in COUNTRY_PREFIXES]
        if unknown:
            errors.append(f"'telephony.sms_countries': unknown country code(s) {unknown}; "
                          f"known: {', '.join(sorted(COUNTRY_PREFIXES))}")


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (or $VOICEBOT_CONFIG, or ./config.yaml) and the environment."""
    env = os.environ if environ is None else environ
    file = Path(path or env.get("VOICEBOT_CONFIG") or DEFAULT_CONFIG_FILE)
    given: Mapping[str, Any] = {}
    if file.exists():
        try:
            given = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        if not isinstance(given, Mapping):
            raise ConfigError(f"{file}: the top level must be a mapping")
    elif path is not None:
        raise ConfigError(f"{file}: no such config file")
    errors: list[str] = []
    merged = _merge(DEFAULTS, given, "", errors)
    _check_limits(merged, errors)
    if env.get("VOICEBOT_INSECURE_NO_SIGNATURES") == "1":
        errors.append("VOICEBOT_INSECURE_NO_SIGNATURES was removed: for local development run "
                      "`voicebot serve --dev` (or VOICEBOT_DEV=1): loopback only, signed with a local token")
    if errors:
        raise ConfigError(f"{file}: " + "; ".join(errors))
    root = file.resolve().parent

    def under_root(value: str) -> Path:
        return Path(value) if Path(value).is_absolute() else root / value

    flows_dir = Path(merged["flows"]["dir"])
    speech, prompts, tel = merged["speech"], merged["prompts"], merged["telephony"]
    return Settings(
        flows_dir=flows_dir if flows_dir.is_absolute() else root / flows_dir,
        default_flow=merged["flows"]["default"],
        redis_url=env.get("REDIS_URL") or merged["redis"]["url"],
        call_ttl_seconds=merged["redis"]["call_ttl_seconds"],
        handoff_queue=merged["queues"]["handoff"],
        max_turns=merged["dialog"]["max_turns"],
        transfer_words=merged["dialog"]["transfer_words"],
        host=merged["web"]["host"],
        port=int(env.get("PORT") or merged["web"]["port"]),
        webhook_threads=merged["web"]["webhook_threads"],
        metrics_port=merged["web"]["metrics_port"],
        metrics_token=env.get("VOICEBOT_METRICS_TOKEN", ""),
        dev=env.get(DEV_ENV, "") not in ("", "0"),
        hash_salt=env.get("VOICEBOT_HASH_SALT", ""),
        root=root,
        speech=SpeechSettings(
            models_dir=under_root(env.get("VOICEBOT_MODELS_DIR") or speech["models_dir"]),
            models={lang: str(under_root(path)) for lang, path in speech["models"].items()},
            end_silence_ms=speech["end_silence_ms"], min_speech_ms=speech["min_speech_ms"],
            max_utterance_seconds=speech["max_utterance_seconds"], vad_aggressiveness=speech["vad_aggressiveness"],
        ),
        prompts=PromptSettings(
            cache_dir=under_root(prompts["cache_dir"]), recorded_dir=under_root(prompts["recorded_dir"]),
            rate=prompts["rate"], voices=prompts["voices"],
        ),
        telephony=TelephonySettings(
            public_url=(env.get("PUBLIC_URL") or tel["public_url"]).rstrip("/"),
            agent_number=tel["agent_number"], agent_sip=tel["agent_sip"], agent_queue=tel["agent_queue"],
            caller_id=tel["caller_id"], max_calls=tel["max_calls"], max_pending_streams=tel["max_pending_streams"],
            start_timeout_seconds=tel["start_timeout_seconds"], media_timeout_seconds=tel["media_timeout_seconds"],
            rest_timeout_seconds=tel["rest_timeout_seconds"], sms_countries=tuple(tel["sms_countries"]),
            sms_per_number_per_day=tel["sms_per_number_per_day"],
            auth_token=env.get("TWILIO_AUTH_TOKEN", ""), account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
            api_base=env.get("TWILIO_API_BASE", ""), stream_secret=env.get("VOICEBOT_STREAM_SECRET", ""),
        ),
    )
