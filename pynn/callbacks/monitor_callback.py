"""Shared machinery of callbacks that watch one logged quantity: mode, min_delta, improvement."""
from __future__ import annotations

import numbers
import operator

from pynn.callbacks.callback import Callback

# Metric names (without a "val_" prefix) whose value should go up. Everything loss-like goes
# down. Anything else needs an explicit mode, as in Keras 3, rather than a silent guess.
_UP_NAMES = ("acc", "accuracy", "auc", "precision", "recall", "f1_score", "f1", "fbeta_score",
             "iou", "r2_score")
_DOWN_NAMES = ("loss", "mse", "mae", "mape", "msle", "mean_squared_error",
               "mean_absolute_error", "mean_absolute_percentage_error",
               "mean_squared_logarithmic_error", "root_mean_squared_error", "rmse",
               "crossentropy", "binary_crossentropy", "categorical_crossentropy",
               "sparse_categorical_crossentropy", "hinge", "squared_hinge", "log_cosh",
               "huber", "kl_divergence")


def infer_direction(monitor: str) -> str | None:
    """Returns "max", "min" or None for a monitored name in mode="auto"."""
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name in _DOWN_NAMES or name.endswith("_loss") or name.endswith("_error"):
        return "min"
    if name in _UP_NAMES or "accuracy" in name \
            or name.startswith(("precision", "recall", "auc", "f1")):
        return "max"
    return None


def check_mode(mode, owner: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: expected mode to be one of 'auto', 'min', 'max'. "
                         f"Received: mode={mode!r}")
    return mode


def check_monitor(monitor, owner: str) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"{owner}: expected monitor to be the non-empty name of a logged "
                        f"quantity such as 'val_loss'. Received: monitor={monitor!r}")
    return monitor


def check_real(value, name: str, owner: str, *, allow_none=False, minimum=None) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise TypeError(f"{owner}: expected {name} to be a real number. "
                        f"Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: expected {name} >= {minimum}. Received: {name}={value!r}")
    return float(value)


def check_count(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: expected {name} to be a non-negative integer. "
                         f"Received: {name}={value!r}")
    return int(value)


class MonitorCallback(Callback):
    """Base for callbacks that track whether a monitored quantity improves.

    Args:
        monitor: name of the logged quantity, e.g. "val_loss" or "accuracy".
        mode: "min", "max" or "auto" (direction inferred from the name: accuracy-like names
            are maximised, loss- and error-like names minimised; other names need an explicit
            mode, or a metric object on the model with a `direction` of "up"/"down").
        baseline: initial reference value, or None to take the first value seen.
        min_delta: smallest absolute change counted as an improvement.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        owner = type(self).__name__
        self.monitor = check_monitor(monitor, owner)
        self.mode = check_mode(mode, owner)
        self.best = check_real(baseline, "baseline", owner, allow_none=True)
        self.min_delta = abs(check_real(min_delta, "min_delta", owner))
        self.monitor_op = None

    def _set_monitor_op(self):
        direction = self.mode if self.mode != "auto" else infer_direction(self.monitor)
        if direction is None:
            direction = self._direction_from_model()
        if direction is None:
            raise ValueError(
                f"{type(self).__name__} callback received monitor={self.monitor!r}, but cannot "
                "tell whether that quantity should be maximised or minimised. Pass mode='max' "
                "to keep the highest value or mode='min' to keep the lowest.")
        self.monitor_op = operator.gt if direction == "max" else operator.lt

    def _direction_from_model(self):
        # A user-defined metric object may say which way is better (Keras's `_direction`).
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        for metric in getattr(self.model, "metrics", None) or ():
            if getattr(metric, "name", None) == name:
                direction = getattr(metric, "direction", getattr(metric, "_direction", None))
                if direction in ("up", "down"):
                    return "max" if direction == "up" else "min"
        return None

    def _is_improvement(self, current, reference) -> bool:
        if reference is None:
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        # The value must beat the reference by min_delta in the good direction.
        if self.monitor_op is operator.gt:
            return current - self.min_delta > reference
        return current + self.min_delta < reference
