"""Regression metrics: error means, RMSE, cosine similarity, R^2."""
from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from pynn import _loss_functions as F
from pynn._keras_metrics.base import Metric
from pynn._keras_metrics.reduction import Mean, as_float32, wrapper_class
from pynn._loss_functions import same_rank

MeanSquaredError = wrapper_class("MeanSquaredError", F.mean_squared_error,
                                 "mean_squared_error", "Mean of (y_true - y_pred)**2.")
MeanAbsoluteError = wrapper_class("MeanAbsoluteError", F.mean_absolute_error,
                                  "mean_absolute_error", "Mean of |y_true - y_pred|.")
MeanAbsolutePercentageError = wrapper_class(
    "MeanAbsolutePercentageError", F.mean_absolute_percentage_error,
    "mean_absolute_percentage_error", "Mean of 100 |y_true - y_pred| / |y_true|.")
MeanSquaredLogarithmicError = wrapper_class(
    "MeanSquaredLogarithmicError", F.mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error", "Mean of (log(1 + y_pred) - log(1 + y_true))**2.")
LogCoshError = wrapper_class("LogCoshError", F.log_cosh, "logcosh",
                             "Mean of log(cosh(y_pred - y_true)).")


def cosine_similarity(y_true: Any, y_pred: Any, axis: int = -1) -> Any:
    """The cosine of the angle between y_true and y_pred along `axis` (1 when aligned)."""
    return -F.cosine_similarity(y_true, y_pred, axis)


CosineSimilarity = wrapper_class("CosineSimilarity", cosine_similarity, "cosine_similarity",
                                 "Mean cosine similarity of y_true and y_pred along `axis`.",
                                 {"axis": -1})


class RootMeanSquaredError(Mean):
    """sqrt of the mean of (y_true - y_pred)**2 over everything seen."""

    def __init__(self, name: str = "root_mean_squared_error", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        t, p = same_rank(as_float32(y_true, "y_true"), as_float32(y_pred, "y_pred"))
        super().update_state(np.square(p - t), sample_weight=sample_weight)

    def result(self) -> np.float32:
        return np.float32(np.sqrt(super().result()))


class R2Score(Metric):
    """The coefficient of determination 1 - SS_res / SS_tot per output, averaged.

    Args:
        class_aggregation: "uniform_average" (mean over outputs), "variance_weighted_average"
            (weighted by each output's variance) or None (one score per output).
        num_regressors: the number of independent variables, for the adjusted R^2 (0: plain).
    """

    class_aggregation: str | None
    num_regressors: int
    num_samples: Any
    _built: bool

    def __init__(self, class_aggregation: str | None = "uniform_average",
                 num_regressors: int = 0, name: str = "r2_score", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        allowed = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in allowed:
            raise ValueError(f"class_aggregation: expected one of {list(allowed)}, got "
                             f"{class_aggregation!r}")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, numbers.Integral) \
                or num_regressors < 0:
            raise ValueError(f"num_regressors: expected an integer >= 0, got {num_regressors!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = int(num_regressors)
        self.num_samples = self.add_variable((), name="num_samples")
        self._built = False

    def _build(self, t_shape, p_shape):
        if len(p_shape) != 2 or len(t_shape) != 2:
            raise ValueError(f"R2Score: expected 2-D y_true and y_pred (samples, outputs), got "
                             f"shapes {t_shape} and {p_shape}")
        k = p_shape[-1]
        self.squared_sum = self.add_variable((k,), name="squared_sum")
        self.sum = self.add_variable((k,), name="sum")
        self.total_mse = self.add_variable((k,), name="residual")
        self.count = self.add_variable((k,), name="count")
        self._built = True

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        t, p = same_rank(as_float32(y_true, "y_true"), as_float32(y_pred, "y_pred"))
        if not self._built:
            self._build(t.shape, p.shape)
        sw = np.float32(1.0) if sample_weight is None else as_float32(sample_weight,
                                                                      "sample_weight")
        sw = np.asarray(sw)
        if sw.ndim == 1:
            sw = sw[:, None]
        sw = np.broadcast_to(sw, t.shape).astype(np.float32)
        wt = t * sw
        self.sum.assign_add(np.sum(wt, axis=0, dtype=np.float32))
        self.squared_sum.assign_add(np.sum(t * wt, axis=0, dtype=np.float32))
        self.total_mse.assign_add(np.sum((t - p) ** 2 * sw, axis=0, dtype=np.float32))
        self.count.assign_add(np.sum(sw, axis=0, dtype=np.float32))
        # Keras 3.15 counts every value here (not rows): the adjusted score uses that n
        self.num_samples.assign_add(np.float32(t.size))

    def result(self) -> Any:
        if not self._built:
            return np.float32(0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = self.sum.numpy()
            mean = s / self.count.numpy()
            total = self.squared_sum.numpy() - s * mean
            raw = 1 - self.total_mse.numpy() / total
        raw = np.where(np.isinf(raw), np.float32(0.0), raw).astype(np.float32)
        if self.class_aggregation == "uniform_average":
            score: Any = np.float32(np.mean(raw))
        elif self.class_aggregation == "variance_weighted_average":
            score = np.float32(np.sum(total * raw) / np.sum(total))
        else:
            score = raw
        if self.num_regressors:
            n = float(self.num_samples)
            if self.num_regressors > n - 1:
                warnings.warn("More independent predictors than datapoints in adjusted R2 "
                              "score. Falling back to standard R2 score.", stacklevel=2)
            elif self.num_regressors == n - 1:
                warnings.warn("Division by zero in adjusted R2 score. Falling back to "
                              "standard R2 score.", stacklevel=2)
            else:
                score = np.float32(1.0 - (1.0 - score) * (n - 1.0)
                                   / (n - self.num_regressors - 1.0))
        return score

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype,
                "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}
