"""The trained classifier is kept on disk: an unchanged flow is not fitted again, a changed one is."""

from pathlib import Path

import pytest

from voicebot.flow import load_flow
from voicebot.nlu import cache
from voicebot.nlu.intents import IntentClassifier

MINI = Path(__file__).parent / "data" / "mini.yaml"


@pytest.fixture
def fits(monkeypatch, tmp_path):
    """Counts real fits; the cache lives in a fresh directory for each test."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "nlu"))
    count = []
    real = IntentClassifier._fit

    def counting(self, texts, labels):
        count.append(len(texts))
        real(self, texts, labels)

    monkeypatch.setattr(IntentClassifier, "_fit", counting)
    return count


def test_second_load_of_an_unchanged_flow_does_not_fit_again(fits, tmp_path):
    first = load_flow(MINI)
    assert len(fits) == 1
    second = load_flow(MINI)
    assert len(fits) == 1, "the second load trained again instead of reading the cache"
    for text in ("ik wil mijn meterstand doorgeven", "de stroom is uitgevallen", "een pizza graag"):
        assert second.classifier.classify(text) == first.classifier.classify(text)
    assert len(list((tmp_path / "nlu").glob("*.pickle"))) == 1


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
    monkeypatch.setattr(cache.sklearn, "__version__", "0.0-other")
    load_flow(MINI)
    assert len(fits) == 2


@pytest.mark.parametrize("content", [b"", b"not a pickle", b"\x80\x04K\x01."])
def test_a_corrupt_or_foreign_file_is_rebuilt(fits, tmp_path, content):
    load_flow(MINI)
    [path] = (tmp_path / "nlu").glob("*.pickle")
    path.write_bytes(content)
    flow = load_flow(MINI)
    assert len(fits) == 2
    assert flow.classifier.classify("storing melden").intent == "storing"
    assert path.read_bytes() != content, "the broken file was not replaced"
    load_flow(MINI)
    assert len(fits) == 2


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
