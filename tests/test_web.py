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


def test_healthz_reports_redis_ok(settings):
    app = create_app(settings)
    assert app.config["VOICEBOT_SETTINGS"] is settings
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "version": __version__, "redis": "ok"}


def test_healthz_is_200_when_redis_is_down(settings):
    app = create_app(dataclasses.replace(settings, redis_url=_dead_redis_url()))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "version": __version__, "redis": "down"}


def test_healthz_with_malformed_redis_url(settings):
    app = create_app(dataclasses.replace(settings, redis_url="not-a-url"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["redis"] == "down"


def test_create_app_without_settings_reads_config(monkeypatch, tmp_path):
    flows = Path(__file__).resolve().parent / "data"
    (tmp_path / "config.yaml").write_text(f"web:\n  port: 5123\nflows:\n  dir: {flows}\n  default: mini\n")
    monkeypatch.chdir(tmp_path)
    app = create_app()
    assert app.config["VOICEBOT_SETTINGS"].port == 5123
