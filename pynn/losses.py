"""Losses (Keras 3 names): a class per loss plus the function form.

The compiled model evaluates losses in C++ (fused with the output activation where that is
stable); these objects carry the configuration, and calling one computes the loss on arrays.
"""
from __future__ import annotations

import numbers

import numpy as np

from pynn import _core

_ALIASES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "crossentropy": "categorical_crossentropy",
}


class Loss:
    name = ""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits: expected a bool, got {from_logits!r}")
        if reduction != "sum_over_batch_size":
            raise ValueError(f"reduction: only 'sum_over_batch_size' (Keras's default) is "
                             f"supported, got {reduction!r}")
        self.from_logits = bool(from_logits)
        self.reduction = reduction
        if name is not None:
            self.name = name

    delta = 1.0

    def __call__(self, y_true, y_pred, sample_weight=None):
        pred = np.ascontiguousarray(np.asarray(y_pred, dtype=np.float32))
        if pred.ndim == 1:
            pred = pred[:, None]
        n, c = pred.shape
        sw = None if sample_weight is None else np.ascontiguousarray(
            np.asarray(sample_weight, dtype=np.float32).reshape(-1))
        if type(self).kind == "sparse_categorical_crossentropy":
            target = np.ascontiguousarray(np.asarray(y_true).reshape(-1).astype(np.int32))
        else:
            target = np.ascontiguousarray(np.asarray(y_true, dtype=np.float32).reshape(n, c))
        value, _ = _core.loss_value_grad(type(self).kind, pred, target, sw, self.from_logits,
                                         float(self.delta))
        return float(value)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _define(class_name, kind, extra=None):
    ns = {"kind": kind, "name": kind, "__doc__": f"The `{kind}` loss."}
    return type(class_name, (Loss,), ns)


MeanSquaredError = _define("MeanSquaredError", "mean_squared_error")
MeanAbsoluteError = _define("MeanAbsoluteError", "mean_absolute_error")
BinaryCrossentropy = _define("BinaryCrossentropy", "binary_crossentropy")
CategoricalCrossentropy = _define("CategoricalCrossentropy", "categorical_crossentropy")
SparseCategoricalCrossentropy = _define("SparseCategoricalCrossentropy",
                                        "sparse_categorical_crossentropy")


class Huber(Loss):
    """Huber loss: quadratic within `delta` of the target, linear beyond."""

    kind = "huber"
    name = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(False, reduction, name)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
            raise ValueError(f"delta: expected a positive number, got {delta!r}")
        self.delta = float(delta)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "delta": self.delta}


_CLASSES = {cls.kind: cls for cls in (MeanSquaredError, MeanAbsoluteError, Huber,
                                      BinaryCrossentropy, CategoricalCrossentropy,
                                      SparseCategoricalCrossentropy)}
_BY_CLASS_NAME = {cls.__name__: cls for cls in _CLASSES.values()}


def get(identifier) -> Loss:
    """A loss object from a name ("categorical_crossentropy", "mse", ...) or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if callable(identifier) and getattr(identifier, "_pynn_loss", None):
        return _CLASSES[identifier._pynn_loss]()
    if isinstance(identifier, str):
        key = _ALIASES.get(identifier, identifier)
        cls = _CLASSES.get(key) or _BY_CLASS_NAME.get(identifier)
        if cls is None:
            raise ValueError(f"loss: unknown name {identifier!r}; expected one of "
                             f"{sorted(_CLASSES) + sorted(_ALIASES)}")
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS_NAME:
        return _BY_CLASS_NAME[identifier["class_name"]](**identifier.get("config", {}))
    raise TypeError(f"loss: expected a name or a pynn.losses.Loss, got {identifier!r}")


def serialize(loss: Loss) -> dict:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def _function(kind):
    def fn(y_true, y_pred, from_logits=False):
        cls = _CLASSES[kind]
        loss = cls() if kind == "huber" else cls(from_logits=from_logits)
        return loss(y_true, y_pred)

    fn.__name__ = kind
    fn._pynn_loss = kind
    return fn


mean_squared_error = mse = _function("mean_squared_error")
mean_absolute_error = mae = _function("mean_absolute_error")
huber = _function("huber")
binary_crossentropy = _function("binary_crossentropy")
categorical_crossentropy = _function("categorical_crossentropy")
sparse_categorical_crossentropy = _function("sparse_categorical_crossentropy")
