"""Evaluation metrics in plain NumPy.

Two families: Keras 3's streaming metric classes (`Precision`, `AUC`, `F1Score`, `Mean`, ...,
with ``update_state`` / ``result`` / ``reset_state``; see pynn/_keras_metrics/), usable alone
and in ``compile(metrics=[...])``, and whole-array functions with scikit-learn's definitions
and output formats (`confusion_matrix`, `classification_report`, `f1_score`, ...), below.

The functions' classification metrics take integer class indices 0..K-1 (as pynn's models predict them:
`model.predict(x).argmax(axis=1)`). K is `num_classes` when given, otherwise one more than the
largest label seen, so a class missing from both arrays still gets its row (with zero support)
when `num_classes` says it exists. Undefined ratios (a class never predicted, never present)
count as 0, scikit-learn's `zero_division` default, without a warning.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike

from pynn._keras_metrics import (
    AUC,
    Accuracy,
    BinaryAccuracy,
    BinaryCrossentropy,
    CategoricalAccuracy,
    CategoricalCrossentropy,
    CategoricalHinge,
    CosineSimilarity,
    F1Score,
    FalseNegatives,
    FalsePositives,
    FBetaScore,
    Hinge,
    KLDivergence,
    LogCoshError,
    Mean,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanMetricWrapper,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    Precision,
    PrecisionAtRecall,
    R2Score,
    Recall,
    RecallAtPrecision,
    RootMeanSquaredError,
    SensitivityAtSpecificity,
    SparseCategoricalAccuracy,
    SparseCategoricalCrossentropy,
    SparseTopKCategoricalAccuracy,
    SpecificityAtSensitivity,
    SquaredHinge,
    Sum,
    TopKCategoricalAccuracy,
    TrueNegatives,
    TruePositives,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from pynn._keras_metrics import BY_NAME as _BY_NAME
from pynn._keras_metrics.base import Metric, MetricVariable

# sklearn-style functions on whole arrays (below), and Keras 3's streaming Metric classes
__all__ = ["Metric", "MetricVariable", "classification_report", "confusion_matrix", "f1_score",
           "mean_absolute_error", "mean_squared_error", "precision_score", "recall_score",
           "roc_auc_score", "get", "serialize", "deserialize", "AUC", "Accuracy",
           "BinaryAccuracy", "BinaryCrossentropy", "CategoricalAccuracy",
           "CategoricalCrossentropy", "CategoricalHinge", "CosineSimilarity", "F1Score",
           "FBetaScore", "FalseNegatives", "FalsePositives", "Hinge", "KLDivergence",
           "LogCoshError", "Mean", "MeanAbsoluteError", "MeanAbsolutePercentageError",
           "MeanMetricWrapper", "MeanSquaredError", "MeanSquaredLogarithmicError", "Poisson",
           "Precision", "PrecisionAtRecall", "R2Score", "Recall", "RecallAtPrecision",
           "RootMeanSquaredError", "SensitivityAtSpecificity", "SparseCategoricalAccuracy",
           "SparseCategoricalCrossentropy", "SparseTopKCategoricalAccuracy",
           "SpecificityAtSensitivity", "SquaredHinge", "Sum", "TopKCategoricalAccuracy",
           "TrueNegatives", "TruePositives", "accuracy", "binary_accuracy",
           "categorical_accuracy", "sparse_categorical_accuracy",
           "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy"]

_AVERAGES = ("binary", "macro", "micro", "weighted", None)


# ---------------------------------------------------------------------------------------------
# Input checks

def _as_labels(y, name: str) -> np.ndarray:
    """A 1-D int64 array of class indices; (n, 1) columns are accepted and flattened."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        hint = (" (for one-hot labels or per-class scores pass .argmax(axis=1))"
                if arr.ndim == 2 else "")
        raise ValueError(f"{name}: expected a 1-D array of class indices, got shape "
                         f"{arr.shape}{hint}")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: expected integer class indices, got non-integer values "
                             f"such as {arr[~np.isfinite(arr) | (arr != np.round(arr))][0]!r}")
        out = arr.astype(np.int64)
    else:
        raise TypeError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    if out.size and out.min() < 0:
        raise ValueError(f"{name}: class indices must be >= 0, got {int(out.min())}")
    return out


def _check_num_classes(num_classes, name: str = "num_classes"):
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes < 1:
        raise ValueError(f"{name}: expected a positive integer, got {num_classes!r}")
    return int(num_classes)


def _pair(y_true, y_pred, num_classes=None):
    """Checked (y_true, y_pred, K)."""
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred: expected the same length, got {len(t)} and "
                         f"{len(p)}")
    if len(t) == 0:
        raise ValueError("y_true: expected at least one sample, got an empty array")
    k = _check_num_classes(num_classes)
    seen = int(max(t.max(), p.max())) + 1
    if k is None:
        k = seen
    elif seen > k:
        which = "y_true" if t.max() >= k else "y_pred"
        top = int(max(t.max(), p.max()))
        raise ValueError(f"{which}: label {top} is out of range for num_classes={k} "
                         f"(expected 0..{k - 1})")
    return t, p, k


def _as_real_1d_or_2d(y, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a 1-D or 2-D array, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinity")
    return arr


# ---------------------------------------------------------------------------------------------
# Counting

def confusion_matrix(y_true, y_pred, num_classes=None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: (n,) true class indices.
        y_pred: (n,) predicted class indices.
        num_classes: K; default one more than the largest label in either array.

    Returns:
        (K, K) int64 array C with C[i, j] = number of samples of class i predicted as j
        (rows are true classes, as in scikit-learn).

    Example:
        >>> confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2])
        array([[1, 0, 0],
               [0, 1, 1],
               [0, 0, 1]])
    """
    t, p, k = _pair(y_true, y_pred, num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _per_class_counts(t, p, k):
    """True positives, predicted counts and true counts (support) per class."""
    tp = np.bincount(t[t == p], minlength=k)
    predicted = np.bincount(p, minlength=k)
    support = np.bincount(t, minlength=k)
    return tp, predicted, support


def _ratio(num, den, zero_division):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _check_zero_division(zero_division):
    if isinstance(zero_division, bool) or not isinstance(zero_division, numbers.Real) or not (
            zero_division in (0, 1) or np.isnan(zero_division)):
        raise ValueError(f"zero_division: expected 0, 1 or np.nan, got {zero_division!r}")
    return float(zero_division)


def _prf(y_true, y_pred, average, pos_label, num_classes, zero_division, which):
    """Precision, recall or F1 (which in "p", "r", "f") with scikit-learn's averaging."""
    if average not in _AVERAGES:
        raise ValueError(f"average: expected one of {_AVERAGES}, got {average!r}")
    zd = _check_zero_division(zero_division)
    t, p, k = _pair(y_true, y_pred, num_classes)
    if average == "binary":
        if k > 2:
            raise ValueError(f"average='binary' needs labels in {{0, 1}}, found classes up to "
                             f"{k - 1}; choose average='macro', 'micro', 'weighted' or None")
        if pos_label not in (0, 1):
            raise ValueError(f"pos_label: expected 0 or 1, got {pos_label!r}")
        k = 2
    tp, predicted, support = _per_class_counts(t, p, k)
    if average == "micro":
        # Summed over classes: every sample is one prediction and one truth.
        tp, predicted, support = tp.sum(), predicted.sum(), support.sum()
    if which == "p":
        score = _ratio(tp, predicted, zd)
    elif which == "r":
        score = _ratio(tp, support, zd)
    else:
        # 2PR/(P+R) written in counts; scikit-learn defines it the same way (>= 1.3).
        score = _ratio(2 * tp, predicted + support, zd)
    if average == "binary":
        return float(score[pos_label])
    if average == "micro":
        return float(score)
    if average is None:
        return score
    if average == "macro":
        return float(np.mean(score))
    return float(np.average(score, weights=support)) if support.sum() else zd


@overload
def precision_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: str = ...,
                    pos_label: int = ..., num_classes: int | None = ...,
                    zero_division: float = ...) -> float: ...
@overload
def precision_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: None,
                    pos_label: int = ..., num_classes: int | None = ...,
                    zero_division: float = ...) -> np.ndarray: ...
def precision_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: str | None = "binary",
                    pos_label: int = 1, num_classes: int | None = None,
                    zero_division: float = 0.0) -> float | np.ndarray:
    """Precision tp / (tp + fp): of the samples predicted as a class, the share that are.

    Args:
        y_true, y_pred: (n,) class indices.
        average: "binary" (the score of `pos_label`; labels must be 0/1), "macro" (unweighted
            mean over classes), "micro" (from counts pooled over classes; equals accuracy for
            single-label data), "weighted" (mean weighted by support), or None (per-class
            array of shape (K,)).
        pos_label: the positive class for average="binary".
        num_classes: K; default one more than the largest label seen.
        zero_division: the value of an undefined ratio (0, 1 or np.nan).

    Example:
        >>> precision_score([0, 1, 1, 0], [0, 1, 0, 1])
        0.5
    """
    return _prf(y_true, y_pred, average, pos_label, num_classes, zero_division, "p")


@overload
def recall_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: str = ...,
                 pos_label: int = ..., num_classes: int | None = ...,
                 zero_division: float = ...) -> float: ...
@overload
def recall_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: None,
                 pos_label: int = ..., num_classes: int | None = ...,
                 zero_division: float = ...) -> np.ndarray: ...
def recall_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: str | None = "binary",
                 pos_label: int = 1, num_classes: int | None = None,
                 zero_division: float = 0.0) -> float | np.ndarray:
    """Recall tp / (tp + fn): of the samples of a class, the share predicted as it.

    Arguments as for `precision_score`.

    Example:
        >>> recall_score([0, 1, 1, 1], [0, 1, 0, 1])
        0.6666666666666666
    """
    return _prf(y_true, y_pred, average, pos_label, num_classes, zero_division, "r")


@overload
def f1_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: str = ...,
             pos_label: int = ..., num_classes: int | None = ...,
             zero_division: float = ...) -> float: ...
@overload
def f1_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: None,
             pos_label: int = ..., num_classes: int | None = ...,
             zero_division: float = ...) -> np.ndarray: ...
def f1_score(y_true: ArrayLike, y_pred: ArrayLike, *, average: str | None = "binary",
             pos_label: int = 1, num_classes: int | None = None,
             zero_division: float = 0.0) -> float | np.ndarray:
    """F1 = 2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall.

    Arguments as for `precision_score`. "macro" averages the per-class F1 scores (it is not
    the F1 of macro precision and macro recall), as scikit-learn does.

    Example:
        >>> f1_score([0, 1, 1, 1], [0, 1, 0, 1])
        0.8
    """
    return _prf(y_true, y_pred, average, pos_label, num_classes, zero_division, "f")


# ---------------------------------------------------------------------------------------------
# The report

def classification_report(y_true: ArrayLike, y_pred: ArrayLike,
                          class_names: Sequence[str] | None = None, digits: int = 4,
                          output_dict: bool = False,
                          num_classes: int | None = None) -> str | dict[str, Any]:
    """Per-class precision, recall, F1 and support, then accuracy, macro and weighted averages.

    The text has scikit-learn's layout, so it reads the same as `sklearn.metrics.
    classification_report(..., labels=range(K), target_names=class_names, digits=digits)`.

    Args:
        y_true, y_pred: (n,) class indices.
        class_names: K names (e.g. `pynn.datasets.fashion_mnist.class_names`); default "0".."K-1".
            Their number fixes K.
        digits: decimals in the text.
        output_dict: return a dict {name: {"precision", "recall", "f1-score", "support"},
            "accuracy": float, "macro avg": {...}, "weighted avg": {...}} instead of text.
        num_classes: K when `class_names` is not given.

    Example:
        >>> print(classification_report([0, 1, 1], [0, 1, 0], class_names=["cat", "dog"],
        ...                             digits=2))
                      precision    recall  f1-score   support
        <BLANKLINE>
                 cat       0.50      1.00      0.67         1
                 dog       1.00      0.50      0.67         2
        <BLANKLINE>
            accuracy                           0.67         3
           macro avg       0.75      0.75      0.67         3
        weighted avg       0.83      0.67      0.67         3
        <BLANKLINE>
    """
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 0:
        raise ValueError(f"digits: expected a non-negative integer, got {digits!r}")
    if class_names is not None:
        if isinstance(class_names, str):
            raise TypeError("class_names: expected a sequence of names, got a single string")
        class_names = [str(c) for c in class_names]
        if not class_names:
            raise ValueError("class_names: expected at least one name, got an empty sequence")
        if num_classes is not None and _check_num_classes(num_classes) != len(class_names):
            raise ValueError(f"num_classes={num_classes} disagrees with {len(class_names)} "
                             f"class_names")
        num_classes = len(class_names)
        if len(set(class_names)) != len(class_names):
            raise ValueError("class_names: names must be distinct")
    t, p, k = _pair(y_true, y_pred, num_classes)
    if class_names is None:
        class_names = [str(i) for i in range(k)]
    tp, predicted, support = _per_class_counts(t, p, k)
    precision = _ratio(tp, predicted, 0.0)
    recall = _ratio(tp, support, 0.0)
    f1 = _ratio(2 * tp, predicted + support, 0.0)
    n = int(support.sum())
    accuracy = float(tp.sum()) / n
    averages = {
        "macro avg": (float(precision.mean()), float(recall.mean()), float(f1.mean())),
        "weighted avg": tuple(float(np.average(m, weights=support))
                              for m in (precision, recall, f1)),
    }
    if output_dict:
        out = {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                      "f1-score": float(f1[i]), "support": int(support[i])}
               for i, name in enumerate(class_names)}
        out["accuracy"] = accuracy
        for heading, (pa, ra, fa) in averages.items():
            out[heading] = {"precision": pa, "recall": ra, "f1-score": fa, "support": n}
        return out

    width = max(max(len(c) for c in class_names), len("weighted avg"), digits)
    lines = [f"{'':>{width}} " + "".join(f" {h:>9}" for h in
                                         ("precision", "recall", "f1-score", "support")), ""]

    def row(name, values, count):
        return (f"{name:>{width}} " + "".join(f" {v:>9.{digits}f}" for v in values)
                + f" {count:>9}")

    for i, name in enumerate(class_names):
        lines.append(row(name, (precision[i], recall[i], f1[i]), int(support[i])))
    lines.append("")
    lines.append(f"{'accuracy':>{width}} " + f" {'':>9}" * 2 + f" {accuracy:>9.{digits}f}"
                 + f" {n:>9}")
    for heading, values in averages.items():
        lines.append(row(heading, values, n))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Scores and regression

def roc_auc_score(y_true, y_score) -> float:
    """Area under the ROC curve for binary labels, via the Mann-Whitney rank statistic.

    AUC is the probability that a random positive scores above a random negative, ties
    counting one half; with average ranks r over all scores,
    AUC = (sum of positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos * n_neg).

    Args:
        y_true: (n,) labels in {0, 1} (or booleans); both must occur.
        y_score: (n,) real scores, larger meaning "more likely 1" (a probability, a logit, ...).

    Example:
        >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    t = _as_labels(y_true, "y_true")
    s = np.asarray(y_score)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise ValueError(f"y_score: expected a 1-D array of scores for the positive class, got "
                         f"shape {s.shape}")
    s = _as_real_1d_or_2d(s, "y_score")
    if len(t) != len(s):
        raise ValueError(f"y_true and y_score: expected the same length, got {len(t)} and "
                         f"{len(s)}")
    if len(t) == 0:
        raise ValueError("y_true: expected at least one sample, got an empty array")
    if t.max() > 1:
        raise ValueError(f"y_true: roc_auc_score is binary; expected labels 0 and 1, got "
                         f"{int(t.max())}")
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("y_true: only one class present; ROC AUC is undefined without both "
                         "positives and negatives")
    # Average ranks (1-based) with ties sharing the mean of the ranks they span.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]
    rank_sum = float(ranks[t == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _regression_pair(y_true, y_pred):
    t = _as_real_1d_or_2d(y_true, "y_true")
    p = _as_real_1d_or_2d(y_pred, "y_pred")
    # (n,) and (n, 1) describe the same single output.
    if t.ndim == 2 and t.shape[1] == 1 and p.ndim == 1:
        t = t[:, 0]
    if p.ndim == 2 and p.shape[1] == 1 and t.ndim == 1:
        p = p[:, 0]
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred: expected the same shape, got {t.shape} and "
                         f"{p.shape}")
    if t.shape[0] == 0:
        raise ValueError("y_true: expected at least one sample, got an empty array")
    return t, p


def mean_squared_error(y_true, y_pred) -> float:
    """Mean of (y_true - y_pred)**2 over samples and outputs.

    Example:
        >>> mean_squared_error([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
        1.3333333333333333
    """
    t, p = _regression_pair(y_true, y_pred)
    return float(np.mean((t - p) ** 2))


def mean_absolute_error(y_true, y_pred) -> float:
    """Mean of |y_true - y_pred| over samples and outputs.

    Example:
        >>> mean_absolute_error([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
        0.6666666666666666
    """
    t, p = _regression_pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# ---------------------------------------------------------------------------------------------
# Streaming metrics (Keras 3's Metric API): the base class is in pynn/_keras_metrics/base.py,
# Keras's classes in pynn/_keras_metrics/; here they are looked up by name, for get() and
# compile(metrics=[...])

def get(identifier: Any) -> Metric:
    """A metric object from a Keras name ("Precision", "auc", "mape", "top_k_categorical_
    accuracy", ...), a class, an instance (returned as is), a function (wrapped in
    MeanMetricWrapper) or a serialized config. The object is named as the string given."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise ValueError(f"metric: unknown name {identifier!r}; expected a Keras metric "
                             f"name such as {sorted(n for n in _BY_NAME if n[0].islower())}")
        obj = cls()
        obj.name = identifier
        return obj
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"metric: expected a name, a Metric or a function, got {identifier!r}")


def serialize(metric: Metric) -> dict:
    """{"class_name", "config"} of a metric object (what `deserialize` reads back)."""
    from pynn.saving import registered_name

    name = registered_name(type(metric)) or type(metric).__name__
    return {"class_name": name, "config": metric.get_config()}


def deserialize(config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None
                ) -> Metric:
    """The metric object of a `serialize` dict (pynn's classes, or registered ones)."""
    from pynn.saving import lookup

    name = config.get("class_name")
    cls = _BY_NAME.get(name) if isinstance(name, str) and name[:1].isupper() else None
    cls = cls or lookup(name, custom_objects)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise ValueError(f"metric: unknown metric class {name!r}; register it with "
                         f"@pynn.saving.register_serializable()")
    return cls.from_config(dict(config.get("config") or {}))
