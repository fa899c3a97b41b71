"""Losses (Keras 3 names): a class per loss plus the function form.

The compiled model evaluates losses in C++ (fused with the output activation where that is
stable); these objects carry the configuration, and calling one computes the loss on arrays.
Names, aliases, class names and defaults come from the core's loss table
(``_core.loss_descriptors()``); the classes below are thin wrappers over its entries.
"""
from __future__ import annotations

import numpy as np

from pynn import _core

# The core's loss table. Internal kinds (mean_of_output, the end of a traced custom loss) are
# the engine's own: they have no class here and are not compile() names.
_DESCRIPTORS = {d["name"]: d for d in _core.loss_descriptors()}
_PUBLIC = {name: d for name, d in _DESCRIPTORS.items() if not d["internal"]}
_ALIASES = {alias: name for name, d in _PUBLIC.items() for alias in d["aliases"]}
# The losses for which the engine counts correct rows (accuracy by argmax or threshold).
CLASSIFICATION_KINDS = tuple(name for name, d in _PUBLIC.items() if d["classification"])


def _default(kind, param):
    for p in _DESCRIPTORS[kind]["params"]:
        if p["name"] == param:
            return p["default"]
    raise KeyError(f"the loss table has no parameter {param!r} for {kind!r}")


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


def _define(kind):
    """The class of a loss whose only parameter is from_logits (Loss's constructor)."""
    d = _PUBLIC[kind]
    ns = {"kind": kind, "name": kind, "__doc__": f"The `{kind}` loss.",
          "__module__": __name__}
    return type(d["class_name"], (Loss,), ns)


MeanSquaredError = _define("mean_squared_error")
MeanAbsoluteError = _define("mean_absolute_error")
BinaryCrossentropy = _define("binary_crossentropy")
CategoricalCrossentropy = _define("categorical_crossentropy")
SparseCategoricalCrossentropy = _define("sparse_categorical_crossentropy")


class Huber(Loss):
    """Huber loss: quadratic within `delta` of the target, linear beyond."""

    kind = "huber"
    name = "huber"

    def __init__(self, delta=_default("huber", "delta"), reduction="sum_over_batch_size",
                 name=None):
        super().__init__(False, reduction, name)
        self.delta = _core.loss_config("huber", {"delta": delta})["delta"]  # checked by the table

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "delta": self.delta}


_CLASSES = {cls.kind: cls for cls in (MeanSquaredError, MeanAbsoluteError, Huber,
                                      BinaryCrossentropy, CategoricalCrossentropy,
                                      SparseCategoricalCrossentropy)}
if set(_CLASSES) != set(_PUBLIC):  # a new public kind in the table needs its class here
    raise ImportError(f"pynn.losses: classes {sorted(_CLASSES)} do not match the core's loss "
                      f"table {sorted(_PUBLIC)}; rebuild pynn._core")
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
