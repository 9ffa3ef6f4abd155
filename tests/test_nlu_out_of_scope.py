"""Rejecting what a flow does not handle: the held-out goals, the generic background, and what a
caller hears when the assistant knows none of their words."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from voicebot.flow import load_flow
from voicebot.nlu import cache
from voicebot.nlu.generic_out_of_scope import EXAMPLES, for_flow
from voicebot.nlu.intents import IntentClassifier, evaluate
from voicebot.nlu.linear import pack_json, unpack_json
from voicebot.nlu.normalize import normalize
from voicebot.yaml12 import load_yaml

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = sorted((ROOT / "benchmarks" / "data").glob("*_heldout.yaml"))
MINI = ROOT / "tests" / "data" / "mini.yaml"


def heldout(path: Path) -> tuple[Path, list[tuple[str, str | None]]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return ROOT / data["flow"], [(case["text"], case["intent"]) for case in data["cases"]]


def mini_training() -> tuple[dict[str, list[str]], list[str]]:
    tree = load_yaml(MINI.read_text(encoding="utf-8"))
    return {name: spec["examples"] for name, spec in tree["intents"].items()}, tree["out_of_scope"]


@pytest.mark.parametrize("path", HELDOUT, ids=[p.stem for p in HELDOUT])
def test_no_heldout_sentence_is_training_material(path):
    """The held-out sets measure requests nobody tuned the classifier to: none of them is a background
    sentence, and none of the near-domain sets' is a flow example or out-of-scope example either.
    (The first sets share a few one-word requests such as "storing" with their flows.)"""
    flow_file, cases = heldout(path)
    tree = load_yaml(flow_file.read_text(encoding="utf-8"))
    language = tree["language"]
    training = list(EXAMPLES.get(language, ()))
    if "_nearby_" in path.name:
        training += [text for spec in tree["intents"].values() for text in spec["examples"]]
        training += list(tree.get("out_of_scope") or [])
    known = {normalize(text, language) for text in training}
    copied = [text for text, _ in cases if normalize(text, language) in known]
    assert not copied, f"held-out sentences used for training: {copied}"


@pytest.mark.parametrize("name", [path.stem for path in HELDOUT])
def test_every_flow_understands_and_rejects_on_its_heldout_sets(name):
    flow_file, cases = heldout(ROOT / "benchmarks" / "data" / f"{name}.yaml")
    scores = evaluate(load_flow(flow_file).classifier, cases)
    assert scores["accuracy"] >= 0.95 and scores["rejection"] >= 0.90, scores


def test_the_background_leaves_out_what_resembles_the_flows_intents():
    plain = for_flow("nl", ["ik wil mijn meterstand doorgeven"])
    assert "ik wil geld opnemen" in plain
    bank = for_flow("nl", ["ik wil geld opnemen van mijn rekening", "saldo"])
    assert "ik wil geld opnemen" not in bank and len(bank) < len(plain)
    assert for_flow("xx", ["whatever"]) == [], "a language without a background gets none"


def test_the_background_rejects_requests_the_flow_never_mentions():
    examples, out_of_scope = mini_training()
    alone = IntentClassifier(examples, out_of_scope, "nl", generic_out_of_scope=False)
    backed = IntentClassifier(examples, out_of_scope, "nl")
    strays = ["mijn router doet raar", "de lift in onze flat is kapot"]
    assert [alone.classify(text).intent for text in strays] == ["meterstand", "storing"]
    assert all(backed.classify(text).is_out_of_scope for text in strays)
    for text, intent in [("ik wil mijn meterstand doorgeven", "meterstand"), ("storing melden", "storing"),
                         ("wanneer zijn jullie open", "openingstijden")]:
        assert backed.classify(text).intent == intent


def test_unknown_words_are_not_understood_rather_than_refused():
    classifier = load_flow(ROOT / "flows" / "energie.yaml").classifier
    gibberish = classifier.classify("blub blab")
    assert gibberish.intent is None and not gibberish.words_known and not gibberish.is_out_of_scope
    pizza = classifier.classify("ik wil een pizza bestellen")
    assert pizza.intent is None and pizza.words_known and pizza.is_out_of_scope


def test_the_background_is_part_of_the_cache_key_and_the_stored_classifier(tmp_path):
    examples, out_of_scope = mini_training()
    assert cache.cache_key(examples, out_of_scope, "nl", 0.35) != cache.cache_key(
        examples, out_of_scope, "nl", 0.35, generic_out_of_scope=False)
    alone = cache.trained_classifier(examples, out_of_scope, "nl", cache_dir=tmp_path, generic_out_of_scope=False)
    backed = cache.trained_classifier(examples, out_of_scope, "nl", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    again = cache.trained_classifier(examples, out_of_scope, "nl", cache_dir=tmp_path, generic_out_of_scope=False)
    assert (alone.generic_out_of_scope, backed.generic_out_of_scope, again.generic_out_of_scope) == (False, True, False)
    assert again.classify("mijn router doet raar") == alone.classify("mijn router doet raar")


def test_a_classifier_stored_in_the_earlier_format_is_refused():
    examples, out_of_scope = mini_training()
    arrays = IntentClassifier(examples, out_of_scope, "nl").to_arrays()
    meta = unpack_json(arrays["classifier"])
    earlier = {key: value for key, value in meta.items() if key not in ("format", "generic_out_of_scope")}
    with pytest.raises(ValueError, match="format"):
        IntentClassifier.from_arrays({**arrays, "classifier": pack_json(earlier)})
    assert IntentClassifier.from_arrays(arrays).classify("storing melden").intent == "storing"


def test_the_benchmark_prints_before_and_after_for_a_set(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), cache.CACHE_ENV: str(tmp_path / "nlu")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nlu_accuracy.py"), "--runs", "0",
                           str(ROOT / "benchmarks" / "data" / "energie_nearby_heldout.yaml")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=True)
    assert "| intent accuracy | " in done.stdout and "| out-of-scope rejection | " in done.stdout
    [row] = [line for line in done.stdout.splitlines() if line.startswith("| energie_nearby_heldout.yaml |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:3] == ["162", "224"]
    rejection_before, rejection_now = (float(cell.rstrip("%")) for cell in cells[5:7])
    assert rejection_now > rejection_before
