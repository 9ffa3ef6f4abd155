"""The trained classifier is kept on disk: an unchanged flow is not fitted again, a changed one is."""

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicebot.flow import load_flow
from voicebot.nlu import cache
from voicebot.nlu.intents import IntentClassifier

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "tests" / "data" / "mini.yaml"


@pytest.fixture
def fits(monkeypatch, tmp_path):
    """Counts real fits; the cache lives in a fresh directory for each test."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "nlu"))
    count = []
    real = IntentClassifier._fit

    def counting(self, texts, labels, *weights):
        count.append(len(texts))
        real(self, texts, labels, *weights)

    monkeypatch.setattr(IntentClassifier, "_fit", counting)
    return count


def test_second_load_of_an_unchanged_flow_does_not_fit_again(fits, tmp_path):
    first = load_flow(MINI)
    assert len(fits) == 1
    second = load_flow(MINI)
    assert len(fits) == 1, "the second load trained again instead of reading the cache"
    for text in ("ik wil mijn meterstand doorgeven", "de stroom is uitgevallen", "een pizza graag"):
        assert second.classifier.classify(text) == first.classifier.classify(text)
    assert len(list((tmp_path / "nlu").glob("*.npz"))) == 1


def test_changed_examples_train_again(fits, tmp_path):
    load_flow(MINI)
    changed = tmp_path / "changed.yaml"
    changed.write_text(MINI.read_text().replace("stroomstoring]", "stroomstoring, kortsluiting]"))
    load_flow(changed)
    assert len(fits) == 2
    # A change that does not touch training (a prompt) uses the cache.
    reworded = tmp_path / "reworded.yaml"
    reworded.write_text(MINI.read_text().replace("Wat is uw postcode?", "Wat is de postcode?"))
    load_flow(reworded)
    assert len(fits) == 2


def test_other_library_versions_train_again(fits, monkeypatch):
    load_flow(MINI)
    real = cache.library_versions()
    assert set(real) == {"scikit-learn", "numpy", "scipy"} and "missing" not in real.values()
    monkeypatch.setattr(cache, "library_versions", lambda: {**real, "scikit-learn": "0.0-other"})
    load_flow(MINI)
    assert len(fits) == 2


class _Planted:
    """A pickle that creates a file when it is loaded: reading the cache must never run it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _foreign_contents(path: Path, tmp_path: Path) -> dict[str, bytes]:
    """Files that sit where the cache expects its .npz: garbage, pickles and wrong or broken arrays."""
    stored = dict(np.load(path, allow_pickle=False))
    key = str(stored["key"])

    def npz(**arrays) -> bytes:
        target = tmp_path / "made.npz"
        np.savez(target, **arrays)
        return target.read_bytes()

    return {
        "empty": b"",
        "text": b"not a cache file",
        "truncated": path.read_bytes()[:200],
        "pickle": pickle.dumps({"key": key, "classifier": None}),
        "planted pickle": pickle.dumps({"key": key, "classifier": _Planted(tmp_path / "ran")}),
        "npy": _npy(np.arange(3)),
        "object array": npz(**{**stored, "model.weights": np.array([{"a": 1}], dtype=object)}),
        "other key": npz(**{**stored, "key": np.array("0" * 64)}),
        "cut weights": npz(**{**stored, "model.weights": stored["model.weights"][:-1]}),
        "no model": npz(key=np.array(key), classifier=stored["classifier"]),
    }


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


KINDS = ["empty", "text", "truncated", "pickle", "planted pickle", "npy", "object array", "other key",
         "cut weights", "no model"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_corrupt_or_foreign_file_is_rebuilt(fits, tmp_path, kind):
    load_flow(MINI)
    [path] = (tmp_path / "nlu").glob("*.npz")
    content = _foreign_contents(path, tmp_path)[kind]
    path.write_bytes(content)
    flow = load_flow(MINI)
    assert len(fits) == 2
    assert not (tmp_path / "ran").exists(), "a pickle in the cache was executed"
    assert flow.classifier.classify("storing melden").intent == "storing"
    assert path.read_bytes() != content, "the broken file was not replaced"
    load_flow(MINI)
    assert len(fits) == 2


def test_the_cache_file_holds_plain_arrays_only(fits, tmp_path):
    load_flow(MINI)
    [path] = (tmp_path / "nlu").glob("*.npz")
    with np.load(path, allow_pickle=False) as stored:
        kinds = {name: stored[name].dtype.kind for name in stored.files}
    assert "model.weights" in kinds and kinds["model.weights"] == "f"
    assert "O" not in kinds.values()


WARM_CHECK = """
import sys
from voicebot.flow import load_flow
flow = load_flow(sys.argv[1])
print(flow.classifier.classify("ik wil mijn meterstand doorgeven").intent)
print(sorted({"sklearn", "scipy"} & {name.split(".")[0] for name in sys.modules}))
"""


def test_a_warm_load_does_not_import_sklearn(tmp_path):
    env = {**os.environ, cache.CACHE_ENV: str(tmp_path / "nlu"), "PYTHONPATH": str(ROOT)}

    def run() -> list[str]:
        done = subprocess.run([sys.executable, "-c", WARM_CHECK, str(MINI)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=240, check=True)
        return done.stdout.splitlines()

    cold = run()
    assert cold == ["meterstand", "['scipy', 'sklearn']"], "the cold load should have fitted with scikit-learn"
    warm = run()
    assert warm == ["meterstand", "[]"], "loading a cached flow and classifying imported scikit-learn or SciPy"


def test_cache_can_be_turned_off(fits, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "")
    load_flow(MINI)
    load_flow(MINI)
    assert len(fits) == 2


def test_an_unwritable_cache_still_loads(fits, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "nlu"))
    assert load_flow(MINI).classifier.classify("storing melden").intent == "storing"
