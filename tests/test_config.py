"""Settings: one model with each default written once, clear errors, ranges, the environment, YAML 1.2."""

import dataclasses
from pathlib import Path

import pytest

from voicebot.config import DEFAULTS, ConfigFile, SpeechSettings, load_settings
from voicebot.errors import ConfigError
from voicebot.speech.endpoint import EndpointConfig
from voicebot.yaml12 import load_yaml

REPO = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, text: str, **env: str):
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    return load_settings(config, environ=env)


def _error(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, **env)
    return str(info.value)


def test_config_yaml_shows_exactly_the_models_defaults():
    shown = load_yaml((REPO / "config.yaml").read_text(encoding="utf-8"))
    assert shown == DEFAULTS
    assert ConfigFile().speech.end_silence_ms == shown["speech"]["end_silence_ms"]


def test_the_endpointer_takes_its_timings_from_the_settings():
    assert EndpointConfig() == SpeechSettings()
    settings = load_settings(REPO / "config.yaml", environ={})
    assert settings.speech.end_silence_ms == DEFAULTS["speech"]["end_silence_ms"]
    assert EndpointConfig(end_silence_ms=2000).min_speech_ms == DEFAULTS["speech"]["min_speech_ms"]


def test_an_empty_file_gives_the_defaults_with_paths_under_its_folder(tmp_path):
    settings = _load(tmp_path, "{}\n")
    assert settings.flows_dir == tmp_path / "flows" and settings.speech.models_dir == tmp_path / "models"
    assert settings.prompts.cache_dir == tmp_path / "audio" / "cache"
    assert settings.default_flow == "energie" and settings.port == 5000 and settings.telephony.max_calls == 24
    assert not settings.dev and settings.telephony.auth_token == ""


def test_language_keyed_settings_merge_over_the_defaults(tmp_path):
    settings = _load(tmp_path, "prompts: {voices: {de: de}}\ndialog: {transfer_words: {de: [mensch]}}\n")
    assert settings.prompts.voices == {"nl": "nl", "en": "en-gb", "ko": "ko", "de": "de"}
    assert settings.transfer_words["de"] == ["mensch"] and "medewerker" in settings.transfer_words["nl"]


def test_unknown_key_is_named_with_its_section(tmp_path):
    message = _error(tmp_path, "web:\n  prot: 8080\n")
    assert message.endswith("config.yaml: unknown setting 'web.prot' (did you mean 'web.port'?)")
    assert "unknown setting 'nope'" in _error(tmp_path, "nope: 1\n")


@pytest.mark.parametrize("text, expected", [
    ("web: {port: abc}\n", "'web.port' must be a whole number, not 'abc'"),
    ("speech: {max_utterance_seconds: soon}\n", "'speech.max_utterance_seconds' must be a number, not 'soon'"),
    ("telephony: {agent_number: 31201234567}\n", "'telephony.agent_number' must be text, not 31201234567"),
    ("web: 3\n", "'web' must be a mapping, not 3"),
    ("dialog: {transfer_words: {nl: mens}}\n", "'dialog.transfer_words' must map a language to a list of phrases"),
    ("speech: {models: {nl: 3}}\n", "'speech.models' must map a language to a text"),
])
def test_wrong_type_is_named(tmp_path, text, expected):
    assert expected in _error(tmp_path, text)


@pytest.mark.parametrize("text, expected", [
    ("prompts: {rate: -5}\n", "'prompts.rate' must be between 80 and 450 words per minute, not -5"),
    ("web: {port: 70000}\n", "'web.port' must be between 1 and 65535, not 70000"),
    ("web: {metrics_port: -1}\n", "'web.metrics_port' must be between 0 and 65535"),
    ("web: {webhook_threads: 1}\n", "'web.webhook_threads' must be between 2 and 1000, not 1"),
    ("speech: {vad_aggressiveness: 4}\n", "'speech.vad_aggressiveness' must be between 0 and 3, not 4"),
    ("telephony: {max_calls: 0}\n", "'telephony.max_calls' must be between 1 and 10000, not 0"),
    ("telephony: {start_timeout_seconds: 0}\n",
     "'telephony.start_timeout_seconds' must be more than 0 and at most 300 seconds, not 0"),
    ("telephony: {sms_countries: [XX]}\n", "unknown country code(s) ['XX']"),
    ("telephony: {public_url: bot.example.com}\n", "'telephony.public_url': must start with https://"),
])
def test_values_out_of_range_are_refused_with_the_range(tmp_path, text, expected):
    assert expected in _error(tmp_path, text)


def test_every_problem_is_reported_at_once(tmp_path):
    message = _error(tmp_path, "prompts: {rate: -5}\nweb: {prot: 1}\n")
    assert "'prompts.rate'" in message and "'web.prot'" in message


def test_secrets_are_never_read_from_the_file(tmp_path):
    message = _error(tmp_path, "telephony: {auth_token: abc}\n")
    assert "'telephony.auth_token' is a secret" in message and "TWILIO_AUTH_TOKEN" in message


def test_the_unsigned_mode_stays_removed(tmp_path):
    assert "voicebot serve --dev" in _error(tmp_path, "telephony: {verify_signatures: false}\n")
    assert "voicebot serve --dev" in _error(tmp_path, "{}\n", VOICEBOT_INSECURE_NO_SIGNATURES="1")


def test_environment_overrides_in_one_place(tmp_path):
    settings = _load(tmp_path, "redis: {url: redis://file:6379/0}\n", REDIS_URL="redis://env:6379/1", PORT="5123",
                     PUBLIC_URL="https://bot.example.com/", VOICEBOT_MODELS_DIR="/srv/vosk",
                     TWILIO_AUTH_TOKEN="tok", TWILIO_ACCOUNT_SID="AC1", TWILIO_API_BASE="http://127.0.0.1:9",
                     VOICEBOT_HASH_SALT="salt", VOICEBOT_STREAM_SECRET="s", VOICEBOT_METRICS_TOKEN="m",
                     VOICEBOT_DEV="1")
    assert settings.redis_url == "redis://env:6379/1" and settings.port == 5123
    assert settings.telephony.public_url == "https://bot.example.com" and settings.speech.models_dir == Path("/srv/vosk")
    tel = settings.telephony
    assert (tel.auth_token, tel.account_sid, tel.api_base, tel.stream_secret) == ("tok", "AC1", "http://127.0.0.1:9", "s")
    assert settings.hash_salt == "salt" and settings.metrics_token == "m" and settings.dev
    assert "tok" not in repr(settings) and "salt" not in repr(settings)


def test_environment_values_have_the_settings_range(tmp_path):
    assert "'web.port' (from PORT) must be between 1 and 65535, not 0" in _error(tmp_path, "{}\n", PORT="0")
    assert "PORT must be a port number, not 'x'" in _error(tmp_path, "{}\n", PORT="x")


def test_yaml_1_2_keeps_no_as_text(tmp_path):
    settings = _load(tmp_path, "flows: {default: no}\nprompts: {voices: {no: nb}}\n")
    assert settings.default_flow == "no" and settings.prompts.voices["no"] == "nb"
    assert "must be true or false" not in _error(tmp_path, "web: {host: yes, port: x}\n")


def test_an_empty_key_means_the_default(tmp_path):
    settings = _load(tmp_path, "telephony:\n  public_url:\nweb:\n")
    assert settings.telephony.public_url == "" and settings.port == 5000


def test_derived_settings_are_checked_too(tmp_path):
    settings = _load(tmp_path, "{}\n")
    changed = dataclasses.replace(settings, default_flow="mini",
                                  prompts=dataclasses.replace(settings.prompts, rate=200))
    assert changed.default_flow == "mini" and changed.prompts.rate == 200
    with pytest.raises(ValueError, match="rate"):
        dataclasses.replace(settings.prompts, rate=-5)
