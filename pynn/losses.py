"""Losses (Keras 3 names): a class per loss plus the function form.

The compiled model evaluates losses in C++ (fused with the output activation where that is
stable); these objects carry the configuration, and calling one computes the loss on arrays.
Names, aliases, class names and defaults come from the core's loss table
(``_core.loss_descriptors()``); the classes below are thin wrappers over its entries.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    """A loss. pynn's own losses run in C++; a subclass that overrides ``call(y_true,
    y_pred)`` (returning the loss of each sample, written with `pynn.ops`) is traced into the
    training graph as Keras 3's custom losses are, and its gradient comes from the ops."""

    name = ""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None,
                 dtype=None):
        if isinstance(from_logits, str) and name is None:
            # Keras 3's base signature is Loss(name=None, reduction=..., dtype=None)
            from_logits, name = False, from_logits
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits: expected a bool, got {from_logits!r}")
        if reduction != "sum_over_batch_size":
            raise ValueError(f"reduction: only 'sum_over_batch_size' (Keras's default) is "
                             f"supported, got {reduction!r}")
        self.from_logits = bool(from_logits)
        self.reduction = reduction
        if name is not None:
            self.name = name
        elif not self.name:
            self.name = _snake(type(self).__name__)

    delta = 1.0

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """The loss of each sample (user-defined losses override this)."""
        raise NotImplementedError(f"{type(self).__name__}: a custom Loss subclass must "
                                  f"define call(y_true, y_pred) returning per-sample losses")

    @property
    def is_custom(self) -> bool:
        """True for a loss computed by traced `pynn.ops` (not one of the C++ losses)."""
        return getattr(type(self), "kind", None) is None

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.is_custom:
            return _eager_custom(self.call, y_true, y_pred, sample_weight)
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

    def get_config(self) -> dict:
        if self.is_custom:   # Keras 3's base config; a subclass with arguments extends it
            return {"name": self.name, "reduction": self.reduction}
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Loss:
        return cls(**config)


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper()
                                   or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _eager_custom(fn, y_true, y_pred, sample_weight):
    """A custom loss on arrays: Keras's sum_over_batch_size reduction of fn's values."""
    values = np.asarray(fn(np.asarray(y_true, dtype=np.float32),
                           np.asarray(y_pred, dtype=np.float32)), dtype=np.float64)
    if values.ndim == 0:
        return float(values)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64).reshape(
            (values.shape[0],) + (1,) * (values.ndim - 1))
        values = values * sw
    return float(values.mean()) if values.size else 0.0


class LossFunctionWrapper(Loss):
    """A loss from a function ``fn(y_true, y_pred)`` returning per-sample losses written with
    `pynn.ops` (what `compile(loss=my_function)` makes, as in Keras)."""

    kind = None

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"fn: expected a function (y_true, y_pred) -> loss, got {fn!r}")
        super().__init__(False, reduction, name or getattr(fn, "__name__", None))
        self.fn = fn
        self.fn_kwargs = kwargs

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.fn(y_true, y_pred, **self.fn_kwargs)

    def get_config(self) -> dict:
        from pynn.saving import registered_name

        return {"name": self.name, "reduction": self.reduction,
                "fn": registered_name(self.fn) or getattr(self.fn, "__name__", repr(self.fn)),
                **self.fn_kwargs}


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

    # The default is read from the loss table once, at import (an immutable float).
    def __init__(self, delta=_default("huber", "delta"),  # noqa: B008
                 reduction="sum_over_batch_size",
                 name=None):
        super().__init__(False, reduction, name)
        self.delta = _core.loss_config("huber", {"delta": delta})["delta"]  # checked by the table

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction, "delta": self.delta}


_CLASSES = {cls.kind: cls for cls in (MeanSquaredError, MeanAbsoluteError, Huber,
                                      BinaryCrossentropy, CategoricalCrossentropy,
                                      SparseCategoricalCrossentropy)}
if set(_CLASSES) != set(_PUBLIC):  # a new public kind in the table needs its class here
    raise ImportError(f"pynn.losses: classes {sorted(_CLASSES)} do not match the core's loss "
                      f"table {sorted(_PUBLIC)}; rebuild pynn._core")
_BY_CLASS_NAME = {cls.__name__: cls for cls in _CLASSES.values()}


def get(identifier, custom_objects=None) -> Loss:
    """A loss object from a name ("categorical_crossentropy", "mse", ...), an instance, a
    function ``fn(y_true, y_pred)`` written with `pynn.ops`, or a serialized config."""
    if isinstance(identifier, Loss):
        return identifier
    if callable(identifier) and getattr(identifier, "_pynn_loss", None):
        return _CLASSES[identifier._pynn_loss]()
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and not isinstance(identifier, type):
        return LossFunctionWrapper(identifier)
    if isinstance(identifier, dict) and identifier.get("class_name") not in _BY_CLASS_NAME:
        return _custom_from_config(identifier, custom_objects)
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


def _custom_from_config(config, custom_objects):
    from pynn.saving import lookup

    name = config.get("class_name")
    conf = dict(config.get("config") or {})
    if name == "LossFunctionWrapper":
        fn_name = conf.pop("fn", None)
        fn = lookup(fn_name, custom_objects)
        if fn is None or not callable(fn):
            raise ValueError(f"loss: the custom loss function {fn_name!r} is not registered; "
                             f"decorate it with @pynn.saving.register_serializable() or pass "
                             f"custom_objects={{{str(fn_name).split('>')[-1]!r}: fn}}")
        return LossFunctionWrapper(fn, **conf)
    cls = lookup(name, custom_objects)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, Loss)):
        raise ValueError(f"loss: unknown loss class {name!r}; register it with "
                         f"@pynn.saving.register_serializable() or pass it in custom_objects")
    return cls.from_config(conf)


def serialize(loss: Loss) -> dict:
    if loss.is_custom and not isinstance(loss, LossFunctionWrapper):
        from pynn.saving import registered_name

        return {"class_name": registered_name(type(loss)) or type(loss).__name__,
                "config": loss.get_config()}
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
