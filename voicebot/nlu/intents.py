"""Intent classification trained from a flow's example utterances when the flow loads.

Word and character n-grams (character n-grams absorb recogniser misspellings and Dutch
compounds) feed a logistic regression whose probabilities are calibrated by cross-validation,
so that "0.8" means roughly "right eight times in ten" and the engine's thresholds mean
something. The flow's ``out_of_scope`` examples form an extra class: a request the flow cannot
handle is rejected instead of being forced onto the nearest intent. A prediction whose best
intent stays under ``min_confidence`` is rejected as well.

A flow's out-of-scope examples are few and cannot list everything callers say, so the class also
learns from a per-language background of requests no customer-service flow handles
(``nlu.generic_out_of_scope``), weighted below the flow's own examples and without the sentences
that resemble the flow's intents. ``generic_out_of_scope=False`` trains on the flow alone, as the
classifier did before (the NLU benchmark compares both; docs/nlu.md).

The fit is small (a few hundred short texts), so it runs with the numeric libraries limited to one
thread: on a busy two-core machine OpenBLAS threads fighting over the cores made it 20-50 times
slower. scikit-learn fits the model, which is then compiled into plain arrays (``nlu.linear``):
every classifier, freshly fitted or read from ``nlu.cache``, predicts through that one NumPy path,
and scikit-learn is imported only when something has to be fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from voicebot.nlu.generic_out_of_scope import WEIGHT as GENERIC_WEIGHT
from voicebot.nlu.generic_out_of_scope import for_flow as generic_for_flow
from voicebot.nlu.linear import LinearModel, compile_pipeline, pack_json, unpack_json
from voicebot.nlu.normalize import normalize

OUT_OF_SCOPE = "__out_of_scope__"
# The classifier's own arrays (``to_arrays``); 2 added ``generic_out_of_scope``. The model's arrays
# carry their own format (``nlu.linear.FORMAT``).
FORMAT = 2


@dataclass(frozen=True)
class IntentResult:
    """The best intent (``None`` when out of scope), its confidence and the runners-up."""

    intent: str | None
    confidence: float
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    out_of_scope: float = 0.0
    words_known: bool = True

    @property
    def is_out_of_scope(self) -> bool:
        """Rejected because it clearly resembles the flow's out-of-scope examples, not merely unclear.

        Only when some of its words occur in the training texts: "blub blab" was not understood,
        whatever its letters resemble, and the caller should hear that rather than a refusal.
        """
        return self.intent is None and self.words_known and self.out_of_scope > max(self.confidence, 0.4)

    @property
    def margin(self) -> float:
        """How far the best intent is ahead of the runner-up (1.0 when there is none)."""
        if not self.alternatives:
            return 1.0 if self.intent else 0.0
        return max(0.0, self.confidence - self.alternatives[0][1])

    def to_dict(self) -> dict:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 3),
            "alternatives": [{"intent": i, "confidence": round(c, 3)} for i, c in self.alternatives],
        }


class IntentClassifier:
    """Trained once per flow; ``classify`` is cheap and thread-safe (read-only model)."""

    def __init__(self, examples: dict[str, list[str]], out_of_scope: list[str] | None = None,
                 language: str = "nl", min_confidence: float = 0.35, generic_out_of_scope: bool = True):
        self.language = language
        self.min_confidence = min_confidence
        self.generic_out_of_scope = generic_out_of_scope
        texts, labels = training_set(examples, out_of_scope, language)
        self.labels = sorted(set(labels))
        self._model: LinearModel | None = None
        if len(self.labels) < 2:
            # One intent and nothing to contrast it with: accept everything as that intent, weakly.
            self._only = self.labels[0] if self.labels else None
            return
        self._only = None
        weights = [1.0] * len(texts)
        if generic_out_of_scope:
            background = generic_out_of_scope_examples(examples, language)
            texts, labels = texts + background, labels + [OUT_OF_SCOPE] * len(background)
            weights += [GENERIC_WEIGHT] * len(background)
            self.labels = sorted(set(labels))
        self._fit(texts, labels, weights)

    def _fit(self, texts: list[str], labels: list[str], weights: list[float] | None = None) -> None:
        self._model = compile_pipeline(fit_pipeline(texts, labels, weights))

    def classify(self, text: str) -> IntentResult:
        norm = normalize(text, self.language).replace("[unk]", " ").strip()
        if not norm:
            return IntentResult(None, 0.0)
        if self._model is None:
            return IntentResult(self._only, 0.5 if self._only else 0.0)
        classes = self._model.classes
        probs = self._model.predict_proba(norm)
        oos = float(probs[classes.index(OUT_OF_SCOPE)]) if OUT_OF_SCOPE in classes else 0.0
        ranked = sorted(
            ((label, float(p)) for label, p in zip(classes, probs) if label != OUT_OF_SCOPE),
            key=lambda item: item[1], reverse=True,
        )
        best, conf = ranked[0]
        alternatives = ranked[1:3]
        known = self._model.knows_a_word(norm)
        if oos > conf or conf < self.min_confidence:
            return IntentResult(None, conf, [(best, conf), *alternatives][:3], oos, known)
        return IntentResult(best, conf, alternatives, oos, known)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The trained classifier as named arrays (for ``numpy.savez``; no pickled objects)."""
        meta = {"format": FORMAT, "language": self.language, "min_confidence": self.min_confidence,
                "generic_out_of_scope": self.generic_out_of_scope, "labels": self.labels, "only": self._only}
        arrays = {"classifier": pack_json(meta)}
        if self._model is not None:
            arrays.update(self._model.to_arrays())
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> IntentClassifier:
        """The classifier ``to_arrays`` wrote; ``ValueError``/``KeyError`` when they do not fit together."""
        meta: Any = unpack_json(arrays["classifier"])
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not classifier metadata of this format")
        classifier = cls.__new__(cls)
        classifier.language = str(meta["language"])
        classifier.min_confidence = float(meta["min_confidence"])
        classifier.generic_out_of_scope = bool(meta["generic_out_of_scope"])
        classifier.labels = [str(label) for label in meta["labels"]]
        only = meta["only"]
        classifier._only = None if only is None else str(only)
        classifier._model = None
        if len(classifier.labels) >= 2:
            classifier._model = LinearModel.from_arrays(arrays)
            if list(classifier._model.classes) != classifier.labels:
                raise ValueError("the model's classes are not the classifier's labels")
        elif classifier._only not in (classifier.labels or [None]):
            raise ValueError("a single-intent classifier must name its intent")
        return classifier


def training_set(examples: dict[str, list[str]], out_of_scope: list[str] | None = None,
                 language: str = "nl") -> tuple[list[str], list[str]]:
    """Normalised texts and their labels (``OUT_OF_SCOPE`` for the out-of-scope examples)."""
    texts: list[str] = []
    labels: list[str] = []
    for intent, utterances in examples.items():
        for text in utterances:
            texts.append(normalize(text, language))
            labels.append(intent)
    for text in out_of_scope or []:
        texts.append(normalize(text, language))
        labels.append(OUT_OF_SCOPE)
    return texts, labels


def generic_out_of_scope_examples(examples: dict[str, list[str]], language: str = "nl") -> list[str]:
    """The background out-of-scope sentences for a flow with these intent examples, normalised."""
    return generic_for_flow(language, [text for texts in examples.values() for text in texts])


def fit_pipeline(texts: list[str], labels: list[str], weights: list[float] | None = None) -> Any:
    """The scikit-learn pipeline fitted to normalised texts (imported here: only fitting needs it).

    ``weights`` (one per text, default all 1) scale each text's say in the fit and the calibration.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from threadpoolctl import threadpool_limits

    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
    ])
    smallest = min(labels.count(label) for label in set(labels))
    base = LogisticRegression(C=20.0, max_iter=5000, class_weight="balanced")
    if smallest >= 3:
        model = CalibratedClassifierCV(base, method="sigmoid", cv=min(5, smallest))
    else:
        model = base
    pipeline = make_pipeline(features, model)
    fit_params = {}
    if weights is not None and any(weight != 1.0 for weight in weights):
        fit_params[f"{pipeline.steps[-1][0]}__sample_weight"] = np.asarray(weights, dtype=np.float64)
    with threadpool_limits(limits=1):
        pipeline.fit(texts, labels, **fit_params)
    return pipeline


def evaluate(classifier: IntentClassifier, cases: list[tuple[str, str | None]]) -> dict[str, float]:
    """Intent accuracy on in-scope cases and rejection rate on out-of-scope cases."""
    in_scope = [(t, i) for t, i in cases if i is not None]
    oos = [t for t, i in cases if i is None]
    correct = sum(classifier.classify(t).intent == i for t, i in in_scope)
    rejected = sum(classifier.classify(t).intent is None for t in oos)
    return {
        "in_scope": len(in_scope),
        "accuracy": correct / len(in_scope) if in_scope else float("nan"),
        "out_of_scope": len(oos),
        "rejection": rejected / len(oos) if oos else float("nan"),
    }
