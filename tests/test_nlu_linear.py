"""The compiled intent model predicts exactly what scikit-learn's fitted pipeline predicts.

Every comparison is against scikit-learn itself (``predict_proba`` of the fitted pipeline and the
vectorizers' ``build_analyzer()``), on the shipped flows' examples, on damaged versions of them
and on arbitrary text.
"""

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from voicebot.nlu.intents import (GENERIC_WEIGHT, OUT_OF_SCOPE, IntentClassifier, fit_pipeline,
                                   generic_out_of_scope_examples, training_set)
from voicebot.nlu.linear import LinearModel, compile_pipeline
from voicebot.yaml12 import load_yaml

FLOWS = Path(__file__).resolve().parent.parent / "flows"
TOLERANCE = 1e-9


def flow_training(name: str) -> tuple[list[str], list[str], list[float]]:
    """What ``IntentClassifier`` trains a shipped flow on: its examples, then the weighted background."""
    tree = load_yaml((FLOWS / name).read_text(encoding="utf-8"))
    examples = {intent: spec["examples"] for intent, spec in tree["intents"].items()}
    texts, labels = training_set(examples, tree.get("out_of_scope"), tree["language"])
    background = generic_out_of_scope_examples(examples, tree["language"])
    return (texts + background, labels + [OUT_OF_SCOPE] * len(background),
            [1.0] * len(texts) + [GENERIC_WEIGHT] * len(background))


@functools.lru_cache(maxsize=None)
def fitted(name: str):
    """A shipped flow's texts, its fitted scikit-learn pipeline and the compiled model (fitted once)."""
    texts, labels, weights = flow_training(name)
    pipeline = fit_pipeline(texts, labels, weights)
    return texts, pipeline, compile_pipeline(pipeline)


@pytest.fixture(scope="module", params=["energie.yaml", "webshop.yaml"])
def shipped(request):
    return fitted(request.param)


@pytest.fixture(scope="module")
def energie():
    return fitted("energie.yaml")


def assert_same(pipeline, model: LinearModel, texts: list[str]) -> None:
    expected = pipeline.predict_proba(texts)
    got = np.array([model.predict_proba(text) for text in texts])
    assert list(model.classes) == [str(c) for c in pipeline.classes_]
    assert got.shape == expected.shape
    worst = np.abs(got - expected).max(axis=1)
    bad = [(texts[i], float(worst[i])) for i in np.flatnonzero(~(worst <= TOLERANCE))]  # NaN is a difference too
    assert not bad, f"compiled probabilities differ from scikit-learn's: {bad[:5]}"


def perturbed(texts: list[str]) -> list[str]:
    """What a recogniser or a typist makes of the examples: letters lost, swapped or doubled, words
    repeated, run together or added, capitals, extra spaces, halves, unknown words."""
    out = []
    for i, text in enumerate(texts):
        words = text.split()
        middle = len(text) // 2
        out += [
            text[:middle] + text[middle + 1:],
            text[:middle] + text[middle + 1:middle + 2] + text[middle:middle + 1] + text[middle + 2:],
            text[:middle] + text[middle] * 2 + text[middle + 1:] if text else text,
            " ".join(words + words[:1]),
            "".join(words),
            text.upper(),
            "  " + text.replace(" ", " \t ") + "\n",
            text[:middle],
            text + " xqzv " + texts[(i + 1) % len(texts)],
            "zyxw " + text,
        ]
    return out + ["", " ", "x", "ab", "ëéï ñ", "123 456"]


def test_probabilities_equal_sklearn_on_the_shipped_flows(shipped):
    texts, pipeline, model = shipped
    assert model.method == "sigmoid" and model.members >= 3
    assert_same(pipeline, model, texts)
    assert_same(pipeline, model, perturbed(texts))


# Letters and separators the flows use, so that arbitrary text also hits the vocabulary.
FLOWISH = st.text(alphabet="aeioundrstlgkmpbvjzchw ' \t\n-ëéIJ0123", max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=60), FLOWISH))
def test_probabilities_equal_sklearn_on_any_text(energie, text):
    _, pipeline, model = energie
    assert_same(pipeline, model, [text])


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), FLOWISH),
       analyzer=st.sampled_from(["word", "char_wb"]),
       low=st.integers(1, 3), extra=st.integers(0, 3))
def test_analyzers_equal_sklearn_build_analyzer(text, analyzer, low, extra):
    ngram_range = (low, low + extra)
    vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram_range, sublinear_tf=True)
    features = compile_pipeline(_pipeline_around(vectorizer)).features[0]
    assert features.analyze(text) == vectorizer.build_analyzer()(text)


def _pipeline_around(vectorizer):
    """A minimal fitted pipeline with ``vectorizer`` as its only feature, for compiling."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    texts = ["ab cd ef gh", "ef gh ij kl", "ab ef cd gh", "cd gh ab ef"]
    return make_pipeline(FeatureUnion([("only", vectorizer)]), LogisticRegression()).fit(texts, ["x", "y", "x", "y"])


def test_the_compiled_analyzers_are_the_flow_vectorizers(energie):
    texts, pipeline, model = energie
    vectorizers = [v for _, v in pipeline[0].transformer_list]
    assert [f.analyzer for f in model.features] == ["word", "char_wb"]
    for features, vectorizer in zip(model.features, vectorizers):
        analyze = vectorizer.build_analyzer()
        for text in texts[:40]:
            assert features.analyze(text) == analyze(text)


BINARY = {
    "ja": ["ja graag", "ja dat klopt", "jazeker", "ja hoor", "prima ja"],
    "nee": ["nee dank u", "nee dat klopt niet", "liever niet", "nee hoor", "zeker niet"],
}
TEXTS = ["ja", "nee", "ja hoor graag", "niet", "misschien", "", "klopt", "ja nee"]


def test_binary_calibrated_model_equals_sklearn():
    texts, labels = training_set(BINARY)
    pipeline = fit_pipeline(texts, labels)
    model = compile_pipeline(pipeline)
    assert model.method == "sigmoid" and len(model.classes) == 2
    assert model.weights.shape[1] == model.members == 5, "one column per member for two classes"
    assert_same(pipeline, model, TEXTS + texts)


@pytest.mark.parametrize("intents", [
    {"ja": ["ja graag", "ja hoor"], "nee": ["nee dank u", "liever niet", "nee hoor"]},
    {"ja": ["ja graag", "ja hoor"], "nee": ["nee dank u", "nee hoor"], "later": ["straks", "later graag"]},
], ids=["binary", "three-classes"])
def test_plain_logistic_regression_with_fewer_than_three_examples_equals_sklearn(intents):
    texts, labels = training_set(intents)
    pipeline = fit_pipeline(texts, labels)
    model = compile_pipeline(pipeline)
    assert type(pipeline[-1]).__name__ == "LogisticRegression"
    assert model.method == "logistic" and model.members == 1
    assert_same(pipeline, model, TEXTS + texts + ["straks ja", "later"])


def test_members_whose_calibrators_all_give_zero_predict_uniform_like_sklearn():
    texts, labels, weights = flow_training("webshop.yaml")
    pipeline = fit_pipeline(texts, labels, weights)
    members = pipeline[-1].calibrated_classifiers_
    for calibrator in members[0].calibrators + members[2].calibrators:
        calibrator.b_ = 1e6  # expit(-(a*d + 1e6)) is exactly 0 for every class
    model = compile_pipeline(pipeline)
    sample = texts[:20] + ["", "iets heel anders"]
    assert_same(pipeline, model, sample)
    # The two silenced members contribute 1/n for every class.
    alone = pipeline[-1].calibrated_classifiers_[0].predict_proba(pipeline[0].transform(sample[:1]))
    assert np.allclose(alone, 1 / len(model.classes))


def test_arrays_round_trip_through_npz_without_pickle(energie):
    texts, pipeline, model = energie
    buffer = io.BytesIO()
    np.savez(buffer, **model.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        again = LinearModel.from_arrays({name: stored[name] for name in stored.files})
    for text in texts[:30] + ["", "zyxw meterstand"]:
        assert np.array_equal(again.predict_proba(text), model.predict_proba(text))


def test_arrays_that_do_not_fit_together_are_refused(energie):
    _, _, model = energie
    arrays = model.to_arrays()
    cut = dict(arrays, **{"model.weights": arrays["model.weights"][:-1]})
    with pytest.raises(ValueError, match="weights"):
        LinearModel.from_arrays(cut)
    wrong_class = dict(arrays, **{"model.column_class": arrays["model.column_class"] + 50})
    with pytest.raises(ValueError, match="class"):
        LinearModel.from_arrays(wrong_class)
    not_finite = dict(arrays, **{"model.intercepts": np.full_like(arrays["model.intercepts"], np.nan)})
    with pytest.raises(ValueError):
        LinearModel.from_arrays(not_finite)


@pytest.mark.parametrize("change", ["strip_accents", "isotonic", "norm"])
def test_a_configuration_it_cannot_reproduce_is_refused(change):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    texts, labels = training_set(BINARY)
    options = {"strip_accents": {"strip_accents": "unicode"}, "norm": {"norm": "l1"}}.get(change, {})
    method = "isotonic" if change == "isotonic" else "sigmoid"
    pipeline = make_pipeline(FeatureUnion([("words", TfidfVectorizer(**options))]),
                             CalibratedClassifierCV(LogisticRegression(), method=method, cv=3))
    pipeline.fit(texts, labels)
    with pytest.raises(ValueError):
        compile_pipeline(pipeline)


def test_the_classifier_predicts_through_the_compiled_model(energie):
    texts, pipeline, _ = energie
    tree = load_yaml((FLOWS / "energie.yaml").read_text(encoding="utf-8"))
    classifier = IntentClassifier({i: s["examples"] for i, s in tree["intents"].items()},
                                  tree["out_of_scope"], tree["language"])
    for text in ["ik wil mijn meterstand doorgeven", "de stroom is uitgevallen", "een pizza graag"]:
        result = classifier.classify(text)
        proba = dict(zip(map(str, pipeline.classes_), pipeline.predict_proba([text])[0]))
        best = result.intent or result.alternatives[0][0]
        assert result.confidence == pytest.approx(proba[best], abs=TOLERANCE)
        assert result.out_of_scope == pytest.approx(proba.get("__out_of_scope__", 0.0), abs=TOLERANCE)
    restored = IntentClassifier.from_arrays(classifier.to_arrays())
    for text in texts[:30]:
        assert restored.classify(text) == classifier.classify(text)
