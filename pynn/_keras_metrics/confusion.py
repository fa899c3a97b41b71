"""Metrics from confusion counts at decision thresholds: the four counts, precision, recall,
AUC, and precision/recall/sensitivity/specificity at a fixed value of the other.

All of them accumulate weighted counts of (label, prediction > threshold) pairs over
everything seen. Labels count as positive when non-zero. With evenly spaced thresholds (AUC,
the *At* metrics) each score is put in its bucket once (Keras's fast path, and its exact
arithmetic), so the cost is O(n + thresholds) per update, not O(n * thresholds).
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from pynn._keras_metrics.base import Metric
from pynn._keras_metrics.reduction import as_float32
from pynn._loss_functions import EPSILON, same_rank

NEG_INF = -1e10   # Keras's score for the classes top_k leaves out


def _thresholds(thresholds, default):
    if thresholds is None:
        return [float(default)]
    items = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) \
        else [thresholds]
    for t in items:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= t <= 1:
            raise ValueError(f"thresholds: expected numbers in [0, 1], got {thresholds!r}")
    if not items:
        raise ValueError("thresholds: expected at least one threshold, got none")
    return [float(t) for t in items]


def _evenly_spaced(thresholds):
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=EPSILON))


def _check_class_id(class_id):
    if class_id is not None and (isinstance(class_id, bool)
                                 or not isinstance(class_id, numbers.Integral) or class_id < 0):
        raise ValueError(f"class_id: expected a non-negative integer or None, got {class_id!r}")
    return None if class_id is None else int(class_id)


def _check_top_k(top_k):
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)
                              or top_k < 1):
        raise ValueError(f"top_k: expected a positive integer or None, got {top_k!r}")
    return None if top_k is None else int(top_k)


def _filter_top_k(p, k):
    """Scores outside each row's k largest become NEG_INF (never above a threshold)."""
    order = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return np.where(keep, p, np.float32(NEG_INF)).astype(np.float32)


def confusion_counts(y_true, y_pred, thresholds, *, evenly=False, top_k=None, class_id=None,
                     sample_weight=None, multi_label=False, label_weights=None):
    """Weighted (tp, fp, tn, fn) at each threshold, as Keras's
    update_confusion_matrix_variables: arrays of shape (T,), or (T, labels) with multi_label."""
    p = as_float32(y_pred, "y_pred")
    t = as_float32(y_true, "y_true")
    p, t = same_rank(p, t)
    sw = None
    if sample_weight is not None:
        sw = as_float32(sample_weight, "sample_weight")[..., None]
        if sw.ndim == t.ndim + 1 and sw.shape[-1] == 1:
            sw = sw[..., 0]
    if top_k is not None:
        p = _filter_top_k(p, top_k)
    if class_id is not None:
        if p.ndim == 1:
            raise ValueError(f"class_id: y_pred must have a class axis (samples, classes), got "
                             f"shape {p.shape}")
        if class_id >= p.shape[-1]:
            raise ValueError(f"class_id: {class_id} is out of range for {p.shape[-1]} classes")
        t = t[..., class_id, None]
        p = p[..., class_id, None]
        if sw is not None and sw.ndim == t.ndim and sw.shape[-1] > 1:
            sw = sw[..., class_id, None]
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred: expected the same shape, got {t.shape} and "
                         f"{p.shape}")
    weights = None
    if sw is not None:
        try:
            weights = np.broadcast_to(sw, p.shape).astype(np.float32)
        except ValueError:
            raise ValueError(f"sample_weight: shape {np.shape(sample_weight)} does not "
                             f"broadcast to y_pred's shape {p.shape}") from None
    if label_weights is not None and not multi_label:
        lw = np.broadcast_to(np.asarray(label_weights, np.float32), p.shape)
        weights = lw if weights is None else weights * lw
    positive = t != 0
    thr = np.asarray(thresholds, dtype=np.float32)
    if multi_label:
        p2 = p.reshape(-1, p.shape[-1]) if p.ndim > 1 else p.reshape(-1, 1)
        pos2 = positive.reshape(p2.shape)
        w2 = None if weights is None else weights.reshape(p2.shape)
    else:
        p2, pos2 = p.reshape(-1, 1), positive.reshape(-1, 1)
        w2 = None if weights is None else weights.reshape(-1, 1)
    true_w = pos2.astype(np.float32) if w2 is None else np.where(pos2, w2, np.float32(0))
    false_w = (1.0 - true_w if w2 is None else w2 - true_w).astype(np.float32)
    if evenly:
        tp, fp = _bucketed(p2, true_w, false_w, thr)
    else:
        above = (p2[None, :, :] > thr[:, None, None]).astype(np.float32)   # (T, n, labels)
        tp = np.einsum("tnl,nl->tl", above, true_w, dtype=np.float32)
        fp = np.einsum("tnl,nl->tl", above, false_w, dtype=np.float32)
    total_true = np.sum(true_w, axis=0, dtype=np.float32)
    total_false = np.sum(false_w, axis=0, dtype=np.float32)
    tn = total_false[None, :] - fp
    fn = total_true[None, :] - tp
    if not multi_label:
        tp, fp, tn, fn = tp[:, 0], fp[:, 0], tn[:, 0], fn[:, 0]
    return tp, fp, tn, fn


def _bucketed(p, true_w, false_w, thr):
    """Counts above evenly spaced thresholds by bucketing each score once: bucket b holds
    scores in (b / (T-1), (b+1) / (T-1)]; a threshold's count is the sum over the buckets
    at and above its own (Keras's arithmetic, float32)."""
    n_thr = thr.shape[0]
    with_epsilon = bool(thr[0] < 0.0 or thr[-1] > 1.0)
    q = np.clip(p, 0.0, 1.0).astype(np.float32)
    bucket = np.ceil(q * np.float32(n_thr - 1)) - 1
    if with_epsilon:
        bucket = np.maximum(bucket, 0)
    bucket = bucket.astype(np.int64)
    labels = p.shape[1]
    tp = np.zeros((n_thr, labels), np.float32)
    fp = np.zeros((n_thr, labels), np.float32)
    for c in range(labels):
        b = bucket[:, c]
        ok = b >= 0      # a score of exactly 0 below thresholds without epsilon
        tb = np.bincount(b[ok], weights=true_w[ok, c], minlength=n_thr).astype(np.float32)
        fb = np.bincount(b[ok], weights=false_w[ok, c], minlength=n_thr).astype(np.float32)
        tp[:, c] = np.cumsum(tb[::-1], dtype=np.float32)[::-1]
        fp[:, c] = np.cumsum(fb[::-1], dtype=np.float32)[::-1]
    return tp, fp


def _divide_no_nan(a, b):
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    out = np.zeros(np.broadcast(a, b).shape, np.float32)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _scalar_or_vector(values, n_thresholds):
    values = np.asarray(values, np.float32)
    return values[0] if n_thresholds == 1 else values


class _ConfusionCount(Metric):
    """One of the four counts at each threshold (a scalar with one threshold)."""

    _which = 0   # index in (tp, fp, tn, fn)

    def __init__(self, thresholds: Any = None, name: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.thresholds = _thresholds(thresholds, 0.5)
        self._evenly = _evenly_spaced(self.thresholds)
        self.accumulator = self.add_variable((len(self.thresholds),), name="accumulator")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        counts = confusion_counts(y_true, y_pred, self.thresholds, evenly=self._evenly,
                                  sample_weight=sample_weight)
        self.accumulator.assign_add(counts[self._which])

    def result(self) -> Any:
        return _scalar_or_vector(self.accumulator.numpy(), len(self.thresholds))

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds}


class TruePositives(_ConfusionCount):
    """Weighted count of positive labels predicted positive (score > threshold)."""

    _which = 0


class FalsePositives(_ConfusionCount):
    """Weighted count of negative labels predicted positive (score > threshold)."""

    _which = 1


class TrueNegatives(_ConfusionCount):
    """Weighted count of negative labels predicted negative (score <= threshold)."""

    _which = 2


class FalseNegatives(_ConfusionCount):
    """Weighted count of positive labels predicted negative (score <= threshold)."""

    _which = 3


class _PrecisionRecall(Metric):
    """tp / (tp + fp) or tp / (tp + fn) at each threshold; with `top_k`, only each row's k
    highest scores can be positive; with `class_id`, only that class's column counts."""

    _other = 1   # fp for precision, fn (3) for recall

    def __init__(self, thresholds: Any = None, top_k: int | None = None,
                 class_id: int | None = None, name: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.top_k = _check_top_k(top_k)
        self.class_id = _check_class_id(class_id)
        self.thresholds = _thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        self._evenly = _evenly_spaced(self.thresholds)
        n = len(self.thresholds)
        self.true_positives = self.add_variable((n,), name="true_positives")
        self._others = self.add_variable(
            (n,), name="false_positives" if self._other == 1 else "false_negatives")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        counts = confusion_counts(y_true, y_pred, self.thresholds, evenly=self._evenly,
                                  top_k=self.top_k, class_id=self.class_id,
                                  sample_weight=sample_weight)
        self.true_positives.assign_add(counts[0])
        self._others.assign_add(counts[self._other])

    def result(self) -> Any:
        tp = self.true_positives.numpy()
        return _scalar_or_vector(_divide_no_nan(tp, tp + self._others.numpy()),
                                 len(self.thresholds))

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """Of the predictions above the threshold, the (weighted) share whose label is positive.

    Example:
        >>> m = Precision()
        >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
        >>> round(float(m.result()), 4)
        0.6667
    """

    _other = 1

    @property
    def false_positives(self) -> Any:
        return self._others


class Recall(_PrecisionRecall):
    """Of the positive labels, the (weighted) share predicted above the threshold.

    Example:
        >>> m = Recall()
        >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
        >>> round(float(m.result()), 4)
        0.6667
    """

    _other = 3

    @property
    def false_negatives(self) -> Any:
        return self._others


def _check_num_thresholds(num_thresholds, least):
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
            or num_thresholds < least:
        raise ValueError(f"num_thresholds: expected an integer >= {least}, got "
                         f"{num_thresholds!r}")
    return int(num_thresholds)


def _check_unit(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


class _AtValue(Metric):
    """Counts at `num_thresholds` evenly spaced thresholds in [0, 1]; the result is the best
    of one rate among the thresholds where another reaches `value`."""

    _arg = ""

    def __init__(self, value: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.value = _check_unit(value, self._arg)
        setattr(self, self._arg, self.value)
        self.num_thresholds = _check_num_thresholds(num_thresholds, 1)
        self.class_id = _check_class_id(class_id)
        if self.num_thresholds == 1:
            self.thresholds = [0.5]
            self._evenly = False
        else:
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1)
                     for i in range(self.num_thresholds - 2)]
            self.thresholds = [0.0] + inner + [1.0]
            self._evenly = True
        n = len(self.thresholds)
        self.true_positives = self.add_variable((n,), name="true_positives")
        self.false_positives = self.add_variable((n,), name="false_positives")
        self.true_negatives = self.add_variable((n,), name="true_negatives")
        self.false_negatives = self.add_variable((n,), name="false_negatives")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        tp, fp, tn, fn = confusion_counts(y_true, y_pred, self.thresholds, evenly=self._evenly,
                                          class_id=self.class_id, sample_weight=sample_weight)
        self.true_positives.assign_add(tp)
        self.false_positives.assign_add(fp)
        self.true_negatives.assign_add(tn)
        self.false_negatives.assign_add(fn)

    def _rates(self):
        tp, fp = self.true_positives.numpy(), self.false_positives.numpy()
        tn, fn = self.true_negatives.numpy(), self.false_negatives.numpy()
        return {"recall": _divide_no_nan(tp, tp + fn), "precision": _divide_no_nan(tp, tp + fp),
                "specificity": _divide_no_nan(tn, tn + fp)}

    def _best(self, constrained, dependent):
        feasible = constrained >= np.float32(self.value)
        return np.float32(np.max(np.where(feasible, dependent, 0), initial=0))

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "num_thresholds": self.num_thresholds,
                "class_id": self.class_id, self._arg: self.value}


class PrecisionAtRecall(_AtValue):
    """The best precision among the thresholds whose recall is at least `recall`."""

    _arg = "recall"

    def __init__(self, recall: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype: Any = None) -> None:
        super().__init__(recall, num_thresholds, class_id, name, dtype)

    def result(self) -> np.float32:
        r = self._rates()
        return self._best(r["recall"], r["precision"])


class RecallAtPrecision(_AtValue):
    """The best recall among the thresholds whose precision is at least `precision`."""

    _arg = "precision"

    def __init__(self, precision: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(precision, num_thresholds, class_id, name, dtype)

    def result(self) -> np.float32:
        r = self._rates()
        return self._best(r["precision"], r["recall"])


class SensitivityAtSpecificity(_AtValue):
    """The best sensitivity (recall) among the thresholds whose specificity is at least
    `specificity`."""

    _arg = "specificity"

    def __init__(self, specificity: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(specificity, num_thresholds, class_id, name, dtype)

    def result(self) -> np.float32:
        r = self._rates()
        return self._best(r["specificity"], r["recall"])


class SpecificityAtSensitivity(_AtValue):
    """The best specificity among the thresholds whose sensitivity (recall) is at least
    `sensitivity`."""

    _arg = "sensitivity"

    def __init__(self, sensitivity: float, num_thresholds: int = 200,
                 class_id: int | None = None, name: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)

    def result(self) -> np.float32:
        r = self._rates()
        return self._best(r["recall"], r["specificity"])


_CURVES = {"roc": "ROC", "pr": "PR"}
_SUMMATIONS = ("interpolation", "majoring", "minoring")


class AUC(Metric):
    """Area under the ROC or precision-recall curve, approximated from confusion counts at
    `num_thresholds` thresholds (Keras's Riemann sums; "interpolation" on the PR curve uses
    Davis & Goadrich's interpolation between thresholds).

    Args:
        num_thresholds: thresholds evenly spaced over [0, 1] (> 1), unless `thresholds` are
            given.
        curve: "ROC" or "PR".
        summation_method: "interpolation" (trapezoids), "minoring" or "majoring" (left or
            right Riemann sums of the smaller / larger height).
        thresholds: explicit thresholds in [0, 1] (0 - eps and 1 + eps are added).
        multi_label: one curve per label (column), averaged (weighted by `label_weights`);
            otherwise every score counts as one binary decision.
        num_labels: the number of labels for multi_label, when known ahead.
        label_weights: per-label weights of the counts (single-label) or of the average.
        from_logits: y_pred are logits (a sigmoid is applied).
    """

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 dtype: Any = None, thresholds: Any = None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights: Any = None,
                 from_logits: bool = False) -> None:
        super().__init__(name=name, dtype=dtype)
        if not isinstance(curve, str) or curve.lower() not in _CURVES:
            raise ValueError(f"curve: expected 'ROC' or 'PR', got {curve!r}")
        if not isinstance(summation_method, str) or summation_method.lower() not in _SUMMATIONS:
            raise ValueError(f"summation_method: expected one of {list(_SUMMATIONS)}, got "
                             f"{summation_method!r}")
        self.curve = _CURVES[curve.lower()]
        self.summation_method = summation_method.lower()
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_thresholds(thresholds, 0.5))
            self.num_thresholds = len(inner) + 2
            self._evenly = _evenly_spaced(np.array([0.0] + inner + [1.0]))
        else:
            self.num_thresholds = _check_num_thresholds(num_thresholds, 2)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1)
                     for i in range(self.num_thresholds - 2)]
            self._evenly = True
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        self.multi_label = bool(multi_label)
        if num_labels is not None and not self.multi_label:
            raise ValueError("num_labels: only meaningful with multi_label=True")
        self.num_labels = num_labels
        self.label_weights = (None if label_weights is None
                              else np.asarray(label_weights, dtype=np.float32))
        self._from_logits = bool(from_logits)
        self._built = False
        if not self.multi_label:
            self._build(None)
        elif num_labels:
            self._build((None, int(num_labels)))

    @property
    def thresholds(self) -> list[float]:
        return list(self._thresholds)

    def _build(self, shape):
        if self.multi_label:
            if shape is None or len(shape) != 2:
                raise ValueError(f"AUC(multi_label=True): expected y_pred of shape (samples, "
                                 f"labels), got {shape}")
            self._num_labels = int(shape[1])
            var_shape: tuple[int, ...] = (self.num_thresholds, self._num_labels)
        else:
            var_shape = (self.num_thresholds,)
        self.true_positives = self.add_variable(var_shape, name="true_positives")
        self.false_positives = self.add_variable(var_shape, name="false_positives")
        self.true_negatives = self.add_variable(var_shape, name="true_negatives")
        self.false_negatives = self.add_variable(var_shape, name="false_negatives")
        self._built = True

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        p = as_float32(y_pred, "y_pred")
        if not self._built:
            self._build(p.shape)
        if self._from_logits:
            p = (1.0 / (1.0 + np.exp(-p.astype(np.float64)))).astype(np.float32)
        tp, fp, tn, fn = confusion_counts(
            y_true, p, self._thresholds, evenly=self._evenly, sample_weight=sample_weight,
            multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights)
        self.true_positives.assign_add(tp)
        self.false_positives.assign_add(fp)
        self.true_negatives.assign_add(tn)
        self.false_negatives.assign_add(fn)

    def _average(self, by_threshold):
        if not self.multi_label:
            return np.float32(np.sum(by_threshold, dtype=np.float32))
        by_label = np.sum(by_threshold, axis=0, dtype=np.float32)
        if self.label_weights is None:
            return np.float32(np.mean(by_label, dtype=np.float32))
        return np.float32(_divide_no_nan(np.sum(by_label * self.label_weights),
                                         np.sum(self.label_weights)))

    def _interpolated_pr(self, tp, fp, fn):
        n = self.num_thresholds
        dtp = tp[: n - 1] - tp[1:]
        p = tp + fp
        dp = p[: n - 1] - p[1:]
        slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[: n - 1] > 0) & (p[1:] > 0)
        ratio = np.where(both, _divide_no_nan(p[: n - 1], np.maximum(p[1:], 0)),
                         np.ones_like(p[1:]))
        increments = _divide_no_nan(slope * (dtp + intercept * np.log(ratio)),
                                    np.maximum(tp[1:] + fn[1:], 0))
        return self._average(increments)

    def result(self) -> np.float32:
        if not self._built:
            return np.float32(0.0)
        tp, fp = self.true_positives.numpy(), self.false_positives.numpy()
        tn, fn = self.true_negatives.numpy(), self.false_negatives.numpy()
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr(tp, fp, fn)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        n = self.num_thresholds
        if self.summation_method == "interpolation":
            heights = (y[: n - 1] + y[1:]) / np.float32(2.0)
        elif self.summation_method == "minoring":
            heights = np.minimum(y[: n - 1], y[1:])
        else:
            heights = np.maximum(y[: n - 1], y[1:])
        return self._average((x[: n - 1] - x[1:]) * heights)

    def reset_state(self) -> None:
        if self._built:
            super().reset_state()

    def get_config(self) -> dict:
        config = {"name": self.name, "dtype": self.dtype,
                  "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "multi_label": self.multi_label,
                  "num_labels": self.num_labels,
                  "label_weights": (None if self.label_weights is None
                                    else self.label_weights.tolist()),
                  "from_logits": self._from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = [float(t) for t in self._thresholds[1:-1]]
        return config
