"""A fitted intent model as plain arrays, evaluated with NumPy alone.

scikit-learn fits the model (``nlu.intents``), but importing scikit-learn and SciPy takes longer
than everything else a command does with a cached model, and a server or ``voicebot nlu`` only
needs predictions. So the fitted pipeline is compiled into the few numbers that decide its
output: each TF-IDF vectorizer's vocabulary and idf weights, and the coefficients, intercepts
and sigmoid calibration of every classifier. ``LinearModel.predict_proba`` reproduces the
pipeline's ``predict_proba`` (to rounding) for the configuration ``nlu.intents`` fits, read from
scikit-learn 1.9's sources:

- features: a ``FeatureUnion`` of ``TfidfVectorizer``s, each lowercasing, with the default token
  pattern (``analyzer="word"``) or whitespace-padded character n-grams (``analyzer="char_wb"``),
  raw or sublinear (``1 + log``) term counts times idf, each vectorizer's row scaled to unit
  length, the vectorizers' columns side by side;
- classifier: a ``CalibratedClassifierCV`` with ``method="sigmoid"`` (the mean over its members
  of per-class ``expit(-(a * score + b))``, normalised per member as scikit-learn does), or a
  plain ``LogisticRegression`` (softmax over more than two classes, ``expit`` for two).

``compile_pipeline`` refuses anything else, so a change to the fitted configuration fails loudly
instead of predicting something different. A sample's features are a few dozen indices into a
dense weight matrix with one column per (member, class): the score is a weighted sum of rows.

``to_arrays``/``from_arrays`` turn the model into named NumPy arrays and back (numbers, and text
as UTF-8 JSON bytes), so it can be stored with ``numpy.savez`` and read without pickle.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

FORMAT = 1
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_TOKEN = re.compile(DEFAULT_TOKEN_PATTERN)
_WHITE_SPACES = re.compile(r"\s\s+")
ANALYZERS = ("word", "char_wb")
METHODS = ("sigmoid", "logistic")
# scikit-learn sets calibrated probabilities in (1, 1 + 1e-5] to exactly 1.
_CLIP_ABOVE_ONE = 1e-5


def word_ngrams(text: str, ngram_range: tuple[int, int]) -> list[str]:
    """Words of two or more word characters, then their n-grams joined by a space, shortest first."""
    tokens = _TOKEN.findall(text.lower())
    min_n, max_n = ngram_range
    if max_n == 1:
        return tokens
    grams = list(tokens) if min_n == 1 else []
    for n in range(max(min_n, 2), min(max_n + 1, len(tokens) + 1)):
        for i in range(len(tokens) - n + 1):
            grams.append(" ".join(tokens[i:i + n]))
    return grams


def char_wb_ngrams(text: str, ngram_range: tuple[int, int]) -> list[str]:
    """Character n-grams inside each word padded with a space; a word shorter than n counts once."""
    text = _WHITE_SPACES.sub(" ", text.lower())
    min_n, max_n = ngram_range
    grams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            offset = 0
            grams.append(padded[offset:offset + n])
            while offset + n < length:
                offset += 1
                grams.append(padded[offset:offset + n])
            if offset == 0:
                break
    return grams


def expit(x: np.ndarray) -> np.ndarray:
    """The logistic function as SciPy computes it, ``1 / (1 + exp(-x))`` (exp may overflow to inf)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class TfidfFeatures:
    """One vectorizer: ``vocabulary[term]`` is its column, ``idf[column]`` its weight."""

    analyzer: str
    ngram_range: tuple[int, int]
    sublinear_tf: bool
    vocabulary: Mapping[str, int]
    idf: np.ndarray

    def analyze(self, text: str) -> list[str]:
        """The terms of ``text``, as the vectorizer's ``build_analyzer()`` gives them."""
        if self.analyzer == "word":
            return word_ngrams(text, self.ngram_range)
        return char_wb_ngrams(text, self.ngram_range)

    def transform(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Columns (ascending) and values of the text's unit-length TF-IDF row; unknown terms drop out."""
        counts: dict[int, int] = {}
        vocabulary = self.vocabulary
        for term in self.analyze(text):
            column = vocabulary.get(term)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        columns = np.array(sorted(counts), dtype=np.intp)
        values = np.array([counts[c] for c in columns.tolist()], dtype=np.float64)
        if self.sublinear_tf:
            values = np.log(values) + 1.0
        values *= self.idf[columns]
        norm = math.fsum(values * values)
        if norm != 0.0:
            values /= math.sqrt(norm)
        return columns, values


@dataclass(frozen=True)
class LinearModel:
    """The compiled pipeline: features side by side, then one weight column per (member, class).

    ``column_member[j]`` is the member (a cross-validation fold's classifier) of column ``j`` and
    ``column_class[j]`` the class its calibrated score is for; ``a``/``b`` are the columns' sigmoid
    calibration (empty for a plain logistic regression, which has one member).
    """

    classes: tuple[str, ...]
    method: str
    features: tuple[TfidfFeatures, ...]
    weights: np.ndarray
    intercepts: np.ndarray
    column_member: np.ndarray
    column_class: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        _check_model(self)

    @property
    def members(self) -> int:
        return int(self.column_member.max()) + 1 if self.column_member.size else 0

    def features_of(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The text's row of the feature union: columns and values."""
        offset = 0
        all_columns, all_values = [], []
        for features in self.features:
            columns, values = features.transform(text)
            all_columns.append(columns + offset)
            all_values.append(values)
            offset += len(features.vocabulary)
        return np.concatenate(all_columns), np.concatenate(all_values)

    def knows_a_word(self, text: str) -> bool:
        """Whether a word of ``text`` occurs in the training texts (a word vectorizer's term).

        Letters alone (character n-grams) always find something; whole words tell whether the text
        says anything the examples said. ``True`` when no vectorizer looks at words.
        """
        word_features = [f for f in self.features if f.analyzer == "word"]
        if not word_features:
            return True
        words = word_ngrams(text, (1, 1))
        return any(word in f.vocabulary for f in word_features for word in words)

    def scores(self, text: str) -> np.ndarray:
        """Every column's decision value (``decision_function`` of each member, side by side)."""
        columns, values = self.features_of(text)
        return values @ self.weights[columns] + self.intercepts

    def predict_proba(self, text: str) -> np.ndarray:
        """The probability of each of ``classes`` for one text."""
        scores = self.scores(text)
        n_classes = len(self.classes)
        if self.method == "logistic":
            if n_classes == 2:
                positive = expit(scores[:1])[0]
                return np.array([1.0 - positive, positive])
            exp = np.exp(scores - scores.max())
            return exp / exp.sum()
        calibrated = expit(-(self.a * scores + self.b))
        total = np.zeros(n_classes)
        for member in range(self.members):
            mine = self.column_member == member
            proba = np.zeros(n_classes)
            proba[self.column_class[mine]] = calibrated[mine]
            if n_classes == 2:
                proba[0] = 1.0 - proba[1]
            else:
                denominator = proba.sum()
                proba = proba / denominator if denominator != 0 else np.full(n_classes, 1 / n_classes)
            proba[(1.0 < proba) & (proba <= 1.0 + _CLIP_ABOVE_ONE)] = 1.0
            total += proba
        return total / self.members

    def to_arrays(self, prefix: str = "model.") -> dict[str, np.ndarray]:
        """Named arrays holding the whole model (no objects: loadable with ``allow_pickle=False``)."""
        meta = {
            "format": FORMAT,
            "classes": list(self.classes),
            "method": self.method,
            "features": [
                {"analyzer": f.analyzer, "ngram_range": list(f.ngram_range), "sublinear_tf": f.sublinear_tf,
                 "terms": _terms(f.vocabulary)}
                for f in self.features
            ],
        }
        arrays = {"meta": pack_json(meta), "weights": self.weights, "intercepts": self.intercepts,
                  "column_member": self.column_member, "column_class": self.column_class,
                  "a": self.a, "b": self.b}
        arrays.update({f"idf{i}": f.idf for i, f in enumerate(self.features)})
        return {prefix + name: value for name, value in arrays.items()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "model.") -> LinearModel:
        """The model ``to_arrays`` wrote; ``ValueError`` (or ``KeyError``) when the arrays do not fit together."""
        meta = unpack_json(arrays[prefix + "meta"])
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a compiled intent model of this format")
        features = []
        for i, spec in enumerate(meta["features"]):
            terms = spec["terms"]
            if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
                raise ValueError("feature terms must be text")
            vocabulary = {term: column for column, term in enumerate(terms)}
            if len(vocabulary) != len(terms):
                raise ValueError("repeated feature term")
            low, high = spec["ngram_range"]
            features.append(TfidfFeatures(str(spec["analyzer"]), (int(low), int(high)), bool(spec["sublinear_tf"]),
                                          vocabulary, _floats(arrays[f"{prefix}idf{i}"], 1)))
        return cls(
            classes=tuple(str(c) for c in meta["classes"]),
            method=str(meta["method"]),
            features=tuple(features),
            weights=_floats(arrays[prefix + "weights"], 2),
            intercepts=_floats(arrays[prefix + "intercepts"], 1),
            column_member=_ints(arrays[prefix + "column_member"]),
            column_class=_ints(arrays[prefix + "column_class"]),
            a=_floats(arrays[prefix + "a"], 1),
            b=_floats(arrays[prefix + "b"], 1),
        )


def compile_pipeline(pipeline: Any) -> LinearModel:
    """The fitted ``make_pipeline(FeatureUnion([...TfidfVectorizer]), classifier)`` as a ``LinearModel``.

    Reads only fitted attributes (no scikit-learn import); ``ValueError`` for a configuration
    whose predictions this module does not reproduce.
    """
    union, estimator = pipeline[0], pipeline[-1]
    if len(pipeline) != 2 or getattr(union, "transformer_weights", 0) is not None:
        raise ValueError("expected a pipeline of an unweighted FeatureUnion and a classifier")
    features = tuple(_compile_vectorizer(v) for _, v in union.transformer_list)
    classes = tuple(str(c) for c in estimator.classes_)
    index = {c: i for i, c in enumerate(classes)}
    if type(estimator).__name__ == "CalibratedClassifierCV":
        if estimator.method != "sigmoid":
            raise ValueError(f"calibration {estimator.method!r} is not supported, only 'sigmoid'")
        members = [(c.estimator, c.calibrators) for c in estimator.calibrated_classifiers_]
        if any(c.method != "sigmoid" for c in estimator.calibrated_classifiers_):
            raise ValueError("only sigmoid-calibrated members are supported")
        method = "sigmoid"
    else:
        members = [(estimator, None)]
        method = "logistic"
    weights, intercepts, column_member, column_class, a, b = [], [], [], [], [], []
    for number, (member, calibrators) in enumerate(members):
        if type(member).__name__ != "LogisticRegression":
            raise ValueError(f"{type(member).__name__} is not supported, only LogisticRegression")
        coef = np.asarray(member.coef_, dtype=np.float64)
        weights.append(coef.T)
        intercepts.append(np.broadcast_to(np.asarray(member.intercept_, dtype=np.float64), (coef.shape[0],)))
        positions = [index[str(c)] for c in member.classes_]
        if calibrators is None:
            # A plain logistic regression: its columns are its classes (one column: the second class).
            column_class.extend(positions[-coef.shape[0]:])
        else:
            if len(calibrators) != coef.shape[0]:
                raise ValueError("a calibrated member needs one calibrator per decision column")
            # As _CalibratedClassifier.predict_proba pairs them: the i-th column calibrates the i-th
            # of the member's classes, or the second class when there are two classes in all.
            column_class.extend(p + 1 if len(classes) == 2 else p for p in positions[:len(calibrators)])
            a.extend(float(c.a_) for c in calibrators)
            b.extend(float(c.b_) for c in calibrators)
        column_member.extend([number] * coef.shape[0])
    return LinearModel(
        classes=classes, method=method, features=features,
        weights=np.ascontiguousarray(np.hstack(weights)), intercepts=np.concatenate(intercepts),
        column_member=np.array(column_member, dtype=np.int64), column_class=np.array(column_class, dtype=np.int64),
        a=np.array(a, dtype=np.float64), b=np.array(b, dtype=np.float64),
    )


def _compile_vectorizer(vectorizer: Any) -> TfidfFeatures:
    expected = {
        "input": "content", "lowercase": True, "strip_accents": None, "preprocessor": None,
        "tokenizer": None, "stop_words": None, "binary": False, "norm": "l2", "use_idf": True,
        "dtype": np.float64,
    }
    for name, value in expected.items():
        if getattr(vectorizer, name) != value:
            raise ValueError(f"vectorizer setting {name}={getattr(vectorizer, name)!r} is not supported")
    if vectorizer.analyzer not in ANALYZERS:
        raise ValueError(f"analyzer {vectorizer.analyzer!r} is not supported")
    if vectorizer.analyzer == "word" and vectorizer.token_pattern != DEFAULT_TOKEN_PATTERN:
        raise ValueError("only the default token pattern is supported")
    vocabulary = {str(term): int(column) for term, column in vectorizer.vocabulary_.items()}
    low, high = vectorizer.ngram_range
    return TfidfFeatures(vectorizer.analyzer, (int(low), int(high)), bool(vectorizer.sublinear_tf),
                         vocabulary, np.asarray(vectorizer.idf_, dtype=np.float64))


def _check_model(model: LinearModel) -> None:
    """Every array has the shape the others imply, and every index points inside its array."""
    if model.method not in METHODS:
        raise ValueError(f"unknown method {model.method!r}")
    if len(model.classes) < 2 or len(set(model.classes)) != len(model.classes):
        raise ValueError("a model needs two or more distinct classes")
    n_features = 0
    for features in model.features:
        if features.analyzer not in ANALYZERS:
            raise ValueError(f"unknown analyzer {features.analyzer!r}")
        low, high = features.ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"bad n-gram range {features.ngram_range}")
        if features.idf.shape != (len(features.vocabulary),):
            raise ValueError("idf and vocabulary differ in length")
        if sorted(features.vocabulary.values()) != list(range(len(features.vocabulary))):
            raise ValueError("vocabulary columns must be 0..n-1")
        n_features += len(features.vocabulary)
    n_columns = model.intercepts.shape[0]
    if model.weights.shape != (n_features, n_columns) or n_columns == 0:
        raise ValueError(f"weights {model.weights.shape} do not match {n_features} features, {n_columns} columns")
    for name in ("column_member", "column_class"):
        if getattr(model, name).shape != (n_columns,):
            raise ValueError(f"{name} has the wrong length")
    if model.column_class.min() < 0 or model.column_class.max() >= len(model.classes):
        raise ValueError("a column's class is out of range")
    members = model.column_member
    if members[0] != 0 or np.any(np.diff(members) < 0) or np.any(np.diff(members) > 1):
        raise ValueError("columns must be grouped by member 0, 1, 2, ...")
    if model.method == "sigmoid":
        if model.a.shape != (n_columns,) or model.b.shape != (n_columns,):
            raise ValueError("calibration needs one slope and one offset per column")
    else:
        if members.max() != 0 or (len(model.classes) == 2) != (n_columns == 1):
            raise ValueError("a logistic regression is one member with a column per class (one for two)")
        if len(model.classes) > 2 and model.column_class.tolist() != list(range(len(model.classes))):
            raise ValueError("a multiclass logistic regression has its columns in class order")


def _terms(vocabulary: Mapping[str, int]) -> list[str]:
    terms = [""] * len(vocabulary)
    for term, column in vocabulary.items():
        terms[column] = term
    return terms


def pack_json(value: Any) -> np.ndarray:
    """JSON as a byte array, so text can sit in an ``.npz`` without pickling objects."""
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def unpack_json(array: np.ndarray) -> Any:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError("expected JSON bytes")
    return json.loads(array.tobytes().decode("utf-8"))


def _floats(array: np.ndarray, ndim: int) -> np.ndarray:
    if array.dtype != np.float64 or array.ndim != ndim or not np.all(np.isfinite(array)):
        raise ValueError(f"expected finite float64 values in {ndim} dimension(s)")
    return array


def _ints(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.int64 or array.ndim != 1:
        raise ValueError("expected a row of int64 indices")
    return array
