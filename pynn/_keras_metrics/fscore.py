"""F-beta and F1 scores over a stream of (samples, classes) predictions."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from pynn._keras_metrics.base import Metric
from pynn._keras_metrics.reduction import as_float32
from pynn._loss_functions import EPSILON

_AVERAGES = (None, "micro", "macro", "weighted")


class FBetaScore(Metric):
    """F-beta = (1 + beta**2) P R / (beta**2 P + R) per class from accumulated counts.

    Args:
        average: None (one score per class), "micro" (counts pooled over classes), "macro"
            (mean of the class scores) or "weighted" (mean weighted by each class's support).
        beta: weight of recall against precision (> 0).
        threshold: a score above it is a positive prediction; None: each row's highest
            score (of those above 1e-9) is the prediction.

    Inputs are 2-D: y_true (samples, classes) one-hot or multi-hot, y_pred scores.
    """

    average: str | None
    beta: float
    threshold: float | None
    axis: int | None
    _built: bool

    def __init__(self, average: str | None = None, beta: float = 1.0,
                 threshold: float | None = None, name: str = "fbeta_score",
                 dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if average not in _AVERAGES:
            raise ValueError(f"average: expected one of {list(_AVERAGES)}, got {average!r}")
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not beta > 0:
            raise ValueError(f"beta: expected a number > 0, got {beta!r}")
        if threshold is not None and (isinstance(threshold, bool)
                                      or not isinstance(threshold, numbers.Real)
                                      or not 0 < threshold <= 1):
            raise ValueError(f"threshold: expected a number in (0, 1] or None, got "
                             f"{threshold!r}")
        self.average = average
        self.beta = float(beta)
        self.threshold = None if threshold is None else float(threshold)
        self.axis = None if average == "micro" else 0
        self._built = False

    def _build(self, t_shape, p_shape):
        if len(p_shape) != 2 or len(t_shape) != 2:
            raise ValueError(f"{type(self).__name__}: expected 2-D y_true and y_pred "
                             f"(samples, classes), got shapes {t_shape} and {p_shape}")
        shape = () if self.average == "micro" else (p_shape[-1],)
        self.true_positives = self.add_variable(shape, name="true_positives")
        self.false_positives = self.add_variable(shape, name="false_positives")
        self.false_negatives = self.add_variable(shape, name="false_negatives")
        self.intermediate_weights = self.add_variable(shape, name="intermediate_weights")
        self._built = True

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        t = as_float32(y_true, "y_true")
        p = as_float32(y_pred, "y_pred")
        if not self._built:
            self._build(t.shape, p.shape)
        if t.shape != p.shape:
            raise ValueError(f"y_true and y_pred: expected the same shape, got {t.shape} and "
                             f"{p.shape}")
        if self.threshold is None:
            top = np.max(p, axis=-1, keepdims=True)
            pred = ((p >= top) & (np.abs(p) > 1e-9)).astype(np.float32)
        else:
            pred = (p > self.threshold).astype(np.float32)
        sw = None
        if sample_weight is not None:
            sw = as_float32(sample_weight, "sample_weight")
            sw = sw.reshape(sw.shape + (1,) * (t.ndim - sw.ndim))

        def weighted_sum(v):
            if sw is not None:
                v = v * sw
            return np.sum(v, axis=self.axis, dtype=np.float32)

        self.true_positives.assign_add(weighted_sum(pred * t))
        self.false_positives.assign_add(weighted_sum(pred * (1 - t)))
        self.false_negatives.assign_add(weighted_sum((1 - pred) * t))
        self.intermediate_weights.assign_add(weighted_sum(t))

    def result(self) -> Any:
        if not self._built:
            return np.float32(0.0)
        tp = self.true_positives.numpy()
        eps = np.float32(EPSILON)
        precision = tp / (tp + self.false_positives.numpy() + eps)
        recall = tp / (tp + self.false_negatives.numpy() + eps)
        b2 = np.float32(self.beta ** 2)
        score = precision * recall / (b2 * precision + recall + eps) * (1 + b2)
        if self.average == "weighted":
            w = self.intermediate_weights.numpy()
            return np.float32(np.sum(score * (w / (np.sum(w) + eps))))
        if self.average is not None:
            return np.float32(np.mean(score))
        return score.astype(np.float32)

    def reset_state(self) -> None:
        if self._built:
            super().reset_state()

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "average": self.average,
                "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """FBetaScore with beta = 1: the harmonic mean of precision and recall per class."""

    def __init__(self, average: str | None = None, threshold: float | None = None,
                 name: str = "f1_score", dtype: Any = None) -> None:
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name,
                         dtype=dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["beta"]
        return config
