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
    "web": {"host": "0.0.0.0", "port": 5000},
}


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
    hash_salt: str = field(repr=False, default="")
    root: Path = Path(".")


def _merge(defaults: dict[str, Any], given: Mapping[str, Any], path: str, errors: list[str]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in given.items():
        where = f"{path}.{key}" if path else key
        if key not in defaults:
            errors.append(f"unknown setting '{where}'")
        elif isinstance(defaults[key], dict) and key != "transfer_words":
            if not isinstance(value, Mapping):
                errors.append(f"'{where}' must be a mapping")
            else:
                out[key] = _merge(defaults[key], value, where, errors)
        elif key == "transfer_words":
            if not isinstance(value, Mapping) or not all(isinstance(v, list) for v in value.values()):
                errors.append(f"'{where}' must map a language to a list of phrases")
            else:
                out[key] = {**defaults[key], **{k: [str(w) for w in v] for k, v in value.items()}}
        elif value is not None and type(defaults[key]) is not type(value):
            errors.append(f"'{where}' must be {type(defaults[key]).__name__}, not {value!r}")
        else:
            out[key] = value
    return out


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
    if errors:
        raise ConfigError(f"{file}: " + "; ".join(errors))
    root = file.resolve().parent
    flows_dir = Path(merged["flows"]["dir"])
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
        hash_salt=env.get("VOICEBOT_HASH_SALT", ""),
        root=root,
    )
