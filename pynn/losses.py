"""Losses (Keras 3 names): a class per loss plus the function form.

The compiled model evaluates losses in C++ (fused with the output activation where that is
stable); these objects carry the configuration, and calling one computes the loss on arrays.
Names, aliases, class names and defaults come from the core's loss table
(``_core.loss_descriptors()``); the classes below are thin wrappers over its entries.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from pynn import _core
from pynn import _loss_functions as F

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


_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {list(_REDUCTIONS)}, got {reduction!r}")
    return reduction


def reduce_weighted_values(values: Any, sample_weight: Any = None,
                           reduction: str | None = "sum_over_batch_size") -> Any:
    """Keras 3's reduction of per-sample loss values: weighted by `sample_weight` (broadcast
    from the batch axis), then "sum", a mean over every value ("sum_over_batch_size" and
    "mean"; "mean_with_sample_weight" divides by the sum of the weights instead), or the
    weighted values themselves ("none" / None). Scalars come back as floats."""
    from pynn._loss_functions import same_rank

    reduction = _check_reduction(reduction)
    values = np.asarray(values, dtype=np.float32)
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float32)
        values, sw = same_rank(values, sw)
        values = np.asarray(values * sw, dtype=np.float32)
    if reduction in (None, "none") or values.shape in ((), (0,)):
        return float(values) if values.shape == () else values
    total = values.sum(dtype=np.float64)
    if reduction == "sum":
        return float(np.float32(total))
    divisor = float(values.size)
    if reduction == "mean_with_sample_weight" and sw is not None:
        divisor = float(np.sum(sw, dtype=np.float64))
    return float(np.float32(total / divisor)) if divisor else 0.0


class Loss:
    """A loss. pynn's own losses run in C++ (``kind`` names the core's entry) or, for those
    without a kernel, are traced from `pynn.ops`; a subclass that overrides ``call(y_true,
    y_pred)`` (returning the loss of each sample, written with `pynn.ops`) is traced into the
    training graph as Keras 3's custom losses are, and its gradient comes from the ops.
    Calling a loss on arrays gives Keras's value: per-sample losses reduced by `reduction`."""

    name = ""
    kind: str | None = None

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None,
                 dtype=None):
        if isinstance(from_logits, str) and name is None:
            # Keras 3's base signature is Loss(name=None, reduction=..., dtype=None)
            from_logits, name = False, from_logits
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits: expected a bool, got {from_logits!r}")
        self.from_logits = bool(from_logits)
        self.reduction = _check_reduction(reduction)
        self.dtype = dtype or "float32"
        if name is not None:
            self.name = name
        elif not self.name:
            self.name = _snake(type(self).__name__)

    delta = 1.0
    label_smoothing = 0.0

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """The loss of each sample (user-defined losses override this)."""
        raise NotImplementedError(f"{type(self).__name__}: a custom Loss subclass must "
                                  f"define call(y_true, y_pred) returning per-sample losses")

    @property
    def is_custom(self) -> bool:
        """True for a loss computed by traced `pynn.ops` (not one of the C++ losses)."""
        return getattr(type(self), "kind", None) is None

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, dtype=np.float32)
        y_true = np.asarray(y_true)
        if y_true.dtype.kind != "f" or y_true.dtype != np.float32:
            y_true = y_true.astype(np.float32)
        return reduce_weighted_values(self.call(y_true, y_pred), sample_weight, self.reduction)

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


class MeanSquaredError(Loss):
    """Mean of the squared errors (C++)."""

    kind = "mean_squared_error"
    name = "mean_squared_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(False, reduction, name, dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return F.mean_squared_error(y_true, y_pred)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


class MeanAbsoluteError(MeanSquaredError):
    """Mean of the absolute errors (C++)."""

    kind = "mean_absolute_error"
    name = "mean_absolute_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(reduction, name, dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return F.mean_absolute_error(y_true, y_pred)


class BinaryCrossentropy(Loss):
    """Binary cross-entropy of probabilities (or logits) per output unit (C++, fused with a
    sigmoid output). `label_smoothing` moves the targets towards 0.5 by that fraction."""

    kind = "binary_crossentropy"
    name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(from_logits, reduction, name, dtype)
        self.label_smoothing = F._check_smoothing(label_smoothing)
        if axis != -1:
            raise ValueError(f"axis: only -1 (the last axis) is supported, got {axis!r}")
        self.axis = -1

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return F.binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class CategoricalCrossentropy(BinaryCrossentropy):
    """Cross-entropy against one-hot (or soft) targets (C++, fused with a softmax output).
    `label_smoothing` mixes the targets with the uniform distribution by that fraction."""

    kind = "categorical_crossentropy"
    name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return F.categorical_crossentropy(y_true, y_pred, self.from_logits,
                                          self.label_smoothing)


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy against integer class labels (C++, fused with a softmax output).
    Labels equal to `ignore_class` count 0 (on arrays; not in compile)."""

    kind = "sparse_categorical_crossentropy"
    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name="sparse_categorical_crossentropy",
                 dtype=None):
        super().__init__(from_logits, reduction, name, dtype)
        if ignore_class is not None and (isinstance(ignore_class, bool)
                                         or not isinstance(ignore_class, (int, np.integer))):
            raise TypeError(f"ignore_class: expected an integer or None, got {ignore_class!r}")
        if axis != -1:
            raise ValueError(f"axis: only -1 (the last axis) is supported, got {axis!r}")
        self.ignore_class = ignore_class
        self.axis = -1

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return F.sparse_categorical_crossentropy(y_true, y_pred, self.from_logits,
                                                 self.ignore_class)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.ignore_class is None:
            return super().__call__(y_true, y_pred, sample_weight)
        # Keras masks the ignored labels: a mean then runs over the others only
        labels = np.asarray(y_true)
        pred = np.asarray(y_pred, dtype=np.float32)
        if labels.ndim == pred.ndim and labels.shape[-1] == 1:
            labels = labels[..., 0]
        keep = (labels != self.ignore_class).astype(np.float32)
        if self.reduction in ("sum_over_batch_size", "mean"):
            valid = keep.sum()
            keep = keep * (keep.size / valid if valid else 0.0)
        if sample_weight is not None:
            from pynn._loss_functions import same_rank

            keep, sw = same_rank(keep, np.asarray(sample_weight, dtype=np.float32))
            keep = keep * sw
        return reduce_weighted_values(self.call(labels, pred), keep, self.reduction)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits,
                "ignore_class": self.ignore_class, "axis": self.axis}


class Huber(Loss):
    """Huber loss: quadratic within `delta` of the target, linear beyond (C++)."""

    kind = "huber"
    name = "huber"

    # The default is read from the loss table once, at import (an immutable float).
    def __init__(self, delta=_default("huber", "delta"),  # noqa: B008
                 reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(False, reduction, name, dtype)
        self.delta = _core.loss_config("huber", {"delta": delta})["delta"]  # checked by the table

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return F.huber(y_true, y_pred, self.delta)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction, "delta": self.delta}


# --- losses without a kernel of their own: traced from pynn.ops into the training graph ------
class _Traced(Loss):
    """A Keras loss written with `pynn.ops` (``_fn``): trained through the traced-loss path."""

    _fn: Any = None

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(False, reduction, name or _snake(type(self).__name__), dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return type(self)._fn(y_true, y_pred)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


def _traced(class_name, fn, default_name, doc):
    def __init__(self, reduction="sum_over_batch_size", name=default_name, dtype=None):
        _Traced.__init__(self, reduction, name, dtype)

    ns = {"_fn": staticmethod(fn), "__init__": __init__, "__doc__": doc, "name": default_name,
          "__module__": __name__}
    return type(class_name, (_Traced,), ns)


KLDivergence = _traced("KLDivergence", F.kl_divergence, "kl_divergence",
                       "Kullback-Leibler divergence sum(y_true log(y_true / y_pred)).")
Poisson = _traced("Poisson", F.poisson, "poisson", "Poisson loss mean(y_pred - y_true log y_pred).")
LogCosh = _traced("LogCosh", F.log_cosh, "log_cosh", "mean(log(cosh(y_pred - y_true))).")
Hinge = _traced("Hinge", F.hinge, "hinge",
                "mean(max(1 - y_true y_pred, 0)); labels -1/+1 (0/1 are converted).")
SquaredHinge = _traced("SquaredHinge", F.squared_hinge, "squared_hinge",
                       "mean(max(1 - y_true y_pred, 0)**2); labels -1/+1 (0/1 are converted).")
CategoricalHinge = _traced("CategoricalHinge", F.categorical_hinge, "categorical_hinge",
                           "max(0, 1 + max((1 - y_true) y_pred) - sum(y_true y_pred)).")
MeanAbsolutePercentageError = _traced(
    "MeanAbsolutePercentageError", F.mean_absolute_percentage_error,
    "mean_absolute_percentage_error", "100 mean(|y_true - y_pred| / |y_true|).")
MeanSquaredLogarithmicError = _traced(
    "MeanSquaredLogarithmicError", F.mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error", "mean((log(1 + y_pred) - log(1 + y_true))**2).")


class CosineSimilarity(_Traced):
    """Minus the cosine similarity of y_true and y_pred along `axis` (-1 at best)."""

    name = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity",
                 dtype=None):
        super().__init__(reduction, name, dtype)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis: expected an integer, got {axis!r}")
        self.axis = int(axis)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return F.cosine_similarity(y_true, y_pred, self.axis)

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction, "axis": self.axis}


_TRACED = {cls.__name__: cls for cls in (
    KLDivergence, Poisson, LogCosh, Hinge, SquaredHinge, CategoricalHinge, CosineSimilarity,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError)}
_CLASSES = {cls.kind: cls for cls in (MeanSquaredError, MeanAbsoluteError, Huber,
                                      BinaryCrossentropy, CategoricalCrossentropy,
                                      SparseCategoricalCrossentropy)}
if set(_CLASSES) != set(_PUBLIC):  # a new public kind in the table needs its class here
    raise ImportError(f"pynn.losses: classes {sorted(_CLASSES)} do not match the core's loss "
                      f"table {sorted(_PUBLIC)}; rebuild pynn._core")
_BY_CLASS_NAME: dict[str, type[Loss]] = {cls.__name__: cls for cls in _CLASSES.values()}
_BY_CLASS_NAME.update(_TRACED)
# names of the traced losses (their function names and Keras's short aliases)
_TRACED_NAMES = {_snake(name): cls for name, cls in _TRACED.items()}
_TRACED_NAMES.update({"kld": KLDivergence, "kullback_leibler_divergence": KLDivergence,
                      "logcosh": LogCosh, "log_cosh": LogCosh,
                      "mape": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError})


def get(identifier, custom_objects=None) -> Loss:
    """A loss object from a name ("categorical_crossentropy", "mse", ...), an instance, a
    function ``fn(y_true, y_pred)`` written with `pynn.ops`, or a serialized config."""
    if isinstance(identifier, Loss):
        return identifier
    if callable(identifier) and getattr(identifier, "_pynn_loss", None):
        kind = identifier._pynn_loss
        return _CLASSES[kind]() if kind in _CLASSES else _TRACED[kind]()
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and not isinstance(identifier, type):
        return LossFunctionWrapper(identifier)
    if isinstance(identifier, dict) and identifier.get("class_name") not in _BY_CLASS_NAME:
        return _custom_from_config(identifier, custom_objects)
    if isinstance(identifier, str):
        key = _ALIASES.get(identifier, identifier)
        cls = (_CLASSES.get(key) or _BY_CLASS_NAME.get(identifier)
               or _TRACED_NAMES.get(identifier.lower()))
        if cls is None:
            raise ValueError(f"loss: unknown name {identifier!r}; expected one of "
                             f"{sorted(_CLASSES) + sorted(_ALIASES) + sorted(_TRACED_NAMES)}")
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS_NAME:
        cls = _BY_CLASS_NAME[identifier["class_name"]]
        config = dict(identifier.get("config") or {})
        if config.get("from_logits") is False and \
                "from_logits" not in inspect.signature(cls).parameters:
            # files written before these classes had Keras's own signatures carry it
            del config["from_logits"]
        return cls.from_config(config)
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


def deserialize(config: Mapping[str, Any],
                custom_objects: Mapping[str, Any] | None = None) -> Loss:
    """The loss object of a `serialize` dict."""
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise ValueError(f"loss: expected a dict with 'class_name' and 'config', got {config!r}")
    return get(dict(config), custom_objects)


def _function(fn, kind):
    """The function form ``keras.losses.<name>(y_true, y_pred, ...)``: per-sample values (on
    arrays, float32). Given to compile, it stands for its loss class."""
    fn._pynn_loss = kind
    return fn


mean_squared_error = mse = MSE = _function(F.mean_squared_error, "mean_squared_error")
mean_absolute_error = mae = MAE = _function(F.mean_absolute_error, "mean_absolute_error")
huber = _function(F.huber, "huber")
binary_crossentropy = _function(F.binary_crossentropy, "binary_crossentropy")
categorical_crossentropy = _function(F.categorical_crossentropy, "categorical_crossentropy")
sparse_categorical_crossentropy = _function(F.sparse_categorical_crossentropy,
                                            "sparse_categorical_crossentropy")
kl_divergence = kld = KLD = _function(F.kl_divergence, "KLDivergence")
poisson = _function(F.poisson, "Poisson")
log_cosh = logcosh = _function(F.log_cosh, "LogCosh")
hinge = _function(F.hinge, "Hinge")
squared_hinge = _function(F.squared_hinge, "SquaredHinge")
categorical_hinge = _function(F.categorical_hinge, "CategoricalHinge")
cosine_similarity = _function(F.cosine_similarity, "CosineSimilarity")
mean_absolute_percentage_error = mape = MAPE = _function(F.mean_absolute_percentage_error,
                                                         "MeanAbsolutePercentageError")
mean_squared_logarithmic_error = msle = MSLE = _function(F.mean_squared_logarithmic_error,
                                                         "MeanSquaredLogarithmicError")
