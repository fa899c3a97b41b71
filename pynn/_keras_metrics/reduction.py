"""Mean, Sum and MeanMetricWrapper: the streaming averages most of Keras's metrics are."""
from __future__ import annotations

from typing import Any

import numpy as np

from pynn._keras_metrics.base import Metric
from pynn._loss_functions import same_rank


def as_float32(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def samplewise(values, sample_weight, reduce_fn):
    """Keras's reduce_to_samplewise_values: `values` weighted by `sample_weight` (broadcast
    from the leading axes) and reduced with `reduce_fn` to one value per sample; returns
    (values, the weights per sample or None)."""
    values = as_float32(values, "values")
    sw = None
    if sample_weight is not None:
        sw = as_float32(sample_weight, "sample_weight")
        values, sw = same_rank(values, sw)
        w_ndim = sw.ndim
        if values.ndim > w_ndim:
            values = reduce_fn(values, axis=tuple(range(w_ndim, values.ndim)))
        try:
            sw = np.broadcast_to(sw, values.shape)
        except ValueError:
            raise ValueError(f"sample_weight: shape {sw.shape} does not broadcast to the "
                             f"values' shape {values.shape}") from None
        values = values * sw
        if w_ndim > 1:
            sw = reduce_fn(sw, axis=tuple(range(1, w_ndim)))
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sw


class Sum(Metric):
    """The (weighted) sum of the values given to ``update_state(values, sample_weight)``.

    Example:
        >>> m = Sum()
        >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
        >>> float(m.result())
        4.0
    """

    def __init__(self, name: str = "sum", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), name="total")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        values, _ = samplewise(values, sample_weight, np.sum)
        self.total.assign_add(np.sum(values, dtype=np.float32))

    def result(self) -> np.float32:
        return np.float32(self.total.numpy())


class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state(values, sample_weight)``:
    each sample's values are averaged first, then samples are weighted.

    Example:
        >>> m = Mean()
        >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
        >>> float(m.result())
        2.0
    """

    def __init__(self, name: str = "mean", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), name="total")
        self.count = self.add_variable((), name="count")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        values, sw = samplewise(values, sample_weight, np.mean)
        self.total.assign_add(np.sum(values, dtype=np.float32))
        n: Any
        if sw is not None:
            n = np.sum(sw, dtype=np.float32)
        else:
            n = values.shape[0] if values.ndim >= 1 else 1
        self.count.assign_add(n)

    def result(self) -> np.float32:
        count = float(self.count)
        return np.float32(self.total.numpy() / np.float32(count)) if count else np.float32(0.0)


class MeanMetricWrapper(Mean):
    """The mean of ``fn(y_true, y_pred, **kwargs)`` (values per sample) over everything seen:
    how a function such as `pynn.losses.mean_squared_error` becomes a streaming metric."""

    def __init__(self, fn: Any, name: str | None = None, dtype: Any = None,
                 **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"fn: expected a function (y_true, y_pred) -> values, got {fn!r}")
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper",
                         dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        values = self._fn(np.asarray(y_true), as_float32(y_pred, "y_pred"), **self._fn_kwargs)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        from pynn.saving import registered_name

        fn = registered_name(self._fn) or getattr(self._fn, "__name__", repr(self._fn))
        return {"name": self.name, "dtype": self.dtype, "fn": fn, **self._fn_kwargs}

    @classmethod
    def from_config(cls, config: Any) -> MeanMetricWrapper:
        from pynn._keras_metrics import function_by_name

        config = dict(config)
        fn = function_by_name(config.pop("fn"))
        return cls(fn, **config)


def wrapper_class(class_name: str, fn: Any, default_name: str, doc: str,
                  params: dict[str, Any] | None = None) -> type[MeanMetricWrapper]:
    """A MeanMetricWrapper subclass over `fn` with Keras's constructor
    ``(name=default_name, dtype=None, **params)`` and config."""
    params = dict(params or {})

    def __init__(self, name=default_name, dtype=None, **kwargs):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(f"{class_name}: unexpected argument(s) {unknown}")
        values = {**params, **kwargs}
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **values)
        for key, value in values.items():
            setattr(self, key, value)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype,
                **{key: getattr(self, key) for key in params}}

    def from_config(cls, config):
        return cls(**config)

    ns = {"__init__": __init__, "get_config": get_config, "from_config": classmethod(from_config),
          "__doc__": doc, "__module__": "pynn.metrics"}
    return type(class_name, (MeanMetricWrapper,), ns)
