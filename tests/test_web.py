from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from voicebot import __version__
from voicebot.web import create_app


def _dead_redis_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


DATA = Path(__file__).resolve().parent / "data"


def _configured(settings):
    """Settings as a server must have them (small test flows, so the app builds quickly)."""
    return dataclasses.replace(settings, flows_dir=DATA, default_flow="mini", telephony=dataclasses.replace(
        settings.telephony, auth_token="tok", public_url="https://bot.example.com"))


def _ready_app(settings):
    """An app whose runtime has finished its start-up work."""
    app = create_app(settings)
    app.extensions["voicebot_runtime"].ready.set()
    return app


def test_healthz_reports_redis_ok(settings):
    settings = _configured(settings)
    app = _ready_app(settings)
    assert app.config["VOICEBOT_SETTINGS"] is settings
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["version"] == __version__ and body["redis"] == "ok"
    assert body["ready"] is True and "problems" not in body


def test_healthz_is_200_when_redis_is_down(settings):
    app = _ready_app(dataclasses.replace(_configured(settings), redis_url=_dead_redis_url()))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok" and response.get_json()["redis"] == "down"


def test_healthz_with_malformed_redis_url(settings):
    app = _ready_app(dataclasses.replace(_configured(settings), redis_url="not-a-url"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["redis"] == "down"


def test_healthz_is_503_until_ready_and_when_misconfigured(settings):
    app = create_app(dataclasses.replace(_configured(settings), telephony=settings.telephony))  # no token, not ready
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and body["ready"] is False
    assert any("not configured" in p for p in body["problems"]) and any("starting" in p for p in body["problems"])
    app.extensions["voicebot_runtime"].ready.set()
    assert [p for p in app.test_client().get("/healthz").get_json()["problems"]] == [
        "not configured: TWILIO_AUTH_TOKEN and PUBLIC_URL must be set"]


def test_create_app_without_settings_reads_config(monkeypatch, tmp_path):
    flows = Path(__file__).resolve().parent / "data"
    (tmp_path / "config.yaml").write_text(f"web:\n  port: 5123\nflows:\n  dir: {flows}\n  default: mini\n")
    monkeypatch.chdir(tmp_path)
    app = create_app()
    assert app.config["VOICEBOT_SETTINGS"].port == 5123
