"""Trained intent classifiers kept on disk, so an unchanged flow is not fitted again.

A classifier is stored under a key made of everything that decides what training produces: the
flow's examples and out-of-scope examples (as written), its language, the rejection threshold,
whether the generic out-of-scope background is used, the versions of Python, scikit-learn, NumPy
and SciPy, and the source of this package (``voicebot/nlu``, the background sentences included;
a change to normalisation or to the model changes the key). A file that is missing, corrupt, from
other versions or for other examples is ignored and the classifier is trained and written again.

A file is the compiled model (``nlu.linear``) as one ``.npz`` of plain arrays, read with
``allow_pickle=False``: reading it runs no code from the file and imports neither scikit-learn nor
SciPy, which is most of why a warm start is fast. A crafted file can at worst make the flow
misclassify, so the directory still belongs to the user running the service. It holds only a
flow's own training examples' n-grams and the fitted numbers, nothing a caller said. It is the
user's own cache (``.cache/voicebot/nlu`` under the working directory, or ``VOICEBOT_NLU_CACHE``;
set that to an empty string to turn the cache off). Files are written to a temporary name and
renamed, so processes starting together (web workers, several nodes) never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from voicebot.nlu.intents import IntentClassifier

log = logging.getLogger(__name__)

CACHE_ENV = "VOICEBOT_NLU_CACHE"
DEFAULT_CACHE_DIR = Path(".cache") / "voicebot" / "nlu"
_NLU_DIR = Path(__file__).resolve().parent


def default_cache_dir() -> Path | None:
    """``VOICEBOT_NLU_CACHE`` if set (empty: no cache), else ``.cache/voicebot/nlu``."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return DEFAULT_CACHE_DIR
    return Path(value) if value.strip() else None


def _code_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(_NLU_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that fit the model, read without importing them."""
    versions = {}
    for name in ("scikit-learn", "numpy", "scipy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def cache_key(examples: dict[str, list[str]], out_of_scope: list[str], language: str,
              min_confidence: float, generic_out_of_scope: bool = True) -> str:
    """A hash of the training input and of everything that could change the fitted model."""
    payload = {
        "examples": {name: list(texts) for name, texts in sorted(examples.items())},
        "out_of_scope": list(out_of_scope),
        "language": language,
        "min_confidence": min_confidence,
        "generic_out_of_scope": generic_out_of_scope,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        **library_versions(),
        "nlu": _code_version(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _read(path: Path, key: str) -> IntentClassifier | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                log.info("ignoring classifier cache %s: not for this flow or these versions", path)
                return None
            return IntentClassifier.from_arrays({name: stored[name] for name in stored.files})
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is rebuilt, whatever broke it
        log.info("ignoring unreadable classifier cache %s (%s)", path, exc.__class__.__name__)
        return None


def _write(path: Path, key: str, classifier: IntentClassifier) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, key=np.array(key), **classifier.to_arrays())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        # A read-only checkout still works; it only trains on every start.
        log.warning("cannot write classifier cache %s: %s", path, exc)


def trained_classifier(examples: dict[str, list[str]], out_of_scope: list[str] | None = None,
                       language: str = "nl", min_confidence: float = 0.35,
                       cache_dir: Path | str | None = None, use_cache: bool = True,
                       generic_out_of_scope: bool = True) -> IntentClassifier:
    """The classifier for these examples: from the cache when it holds one, else trained (and stored).

    ``cache_dir`` defaults to ``default_cache_dir()``; ``use_cache=False`` always trains;
    ``generic_out_of_scope=False`` trains on the flow's examples alone (``IntentClassifier``).
    """
    out_of_scope = list(out_of_scope or [])
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not use_cache or folder is None:
        return IntentClassifier(examples, out_of_scope, language, min_confidence, generic_out_of_scope)
    key = cache_key(examples, out_of_scope, language, min_confidence, generic_out_of_scope)
    path = folder / f"{key[:32]}.npz"
    cached = _read(path, key)
    if cached is not None:
        return cached
    classifier = IntentClassifier(examples, out_of_scope, language, min_confidence, generic_out_of_scope)
    _write(path, key, classifier)
    return classifier
