"""The base of every streaming metric: `Metric` (Keras 3's API) and its state variables."""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np


class MetricVariable(np.lib.mixins.NDArrayOperatorsMixin):
    """A metric's state: a float32 array with Keras's ``assign`` / ``assign_add`` /
    ``assign_sub``; arithmetic with it gives plain NumPy arrays."""

    def __init__(self, value, name=None):
        self._value = np.array(value, dtype=np.float32)
        self._initial = self._value.copy()
        self.name = name

    @property
    def shape(self) -> tuple:
        return self._value.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._value.dtype

    @property
    def value(self) -> np.ndarray:
        return self._value.copy()

    def numpy(self) -> np.ndarray:
        return self._value.copy()

    def _checked(self, value, what):
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape != self._value.shape:
            try:
                arr = np.broadcast_to(arr, self._value.shape)
            except ValueError:
                raise ValueError(f"{what}: expected shape {self._value.shape} for metric "
                                 f"variable {self.name!r}, got {arr.shape}") from None
        return arr

    def assign(self, value) -> MetricVariable:
        self._value[...] = self._checked(value, "assign")
        return self

    def assign_add(self, value) -> MetricVariable:
        self._value += self._checked(value, "assign_add")
        return self

    def assign_sub(self, value) -> MetricVariable:
        self._value -= self._checked(value, "assign_sub")
        return self

    def __array__(self, dtype=None, copy=None):
        return self._value.copy() if dtype is None else self._value.astype(dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        args = [x._value if isinstance(x, MetricVariable) else x for x in inputs]
        return getattr(ufunc, method)(*args, **kwargs)

    def __float__(self) -> float:
        return float(self._value)

    def __repr__(self) -> str:
        return f"<MetricVariable {self.name!r} shape={self.shape} value={self._value}>"


class Metric:
    """Base class of a streaming metric, as Keras 3's: state in variables made with
    `add_variable` in ``__init__``, ``update_state(y_true, y_pred, sample_weight=None)``
    accumulating a batch (written with `pynn.ops` or NumPy, on arrays), ``result()``, and
    ``reset_state()`` (by default every variable back to its initial value).

    Passed to ``compile(metrics=[...])``, it is reset at the start of every epoch and of every
    evaluation, updated with each batch's targets and predictions, and logged under its name.
    """

    def __init__(self, name=None, dtype=None):
        from pynn.losses import _snake

        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a str, got {name!r}")
        self.name = name or _snake(type(self).__name__)
        if dtype is not None and not isinstance(dtype, str):
            dtype = getattr(dtype, "name", None) or str(dtype)
        self.dtype = dtype or "float32"
        self._variables: list[MetricVariable] = []

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum",
                     name=None) -> MetricVariable:
        """A new state variable of `shape`, initialized with "zeros", "ones" or a number."""
        shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        if initializer in ("zeros", None):
            value = np.zeros(shape, np.float32)
        elif initializer == "ones":
            value = np.ones(shape, np.float32)
        elif isinstance(initializer, numbers.Real) and not isinstance(initializer, bool):
            value = np.full(shape, float(initializer), np.float32)
        else:
            raise ValueError(f"initializer: expected 'zeros', 'ones' or a number, got "
                             f"{initializer!r}")
        var = MetricVariable(value, name)
        if not hasattr(self, "_variables"):
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before "
                               f"add_variable")
        self._variables.append(var)
        return var

    add_weight = add_variable

    @property
    def variables(self) -> list[MetricVariable]:
        return list(self._variables)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        raise NotImplementedError(f"{type(self).__name__}: a Metric subclass must define "
                                  f"update_state(y_true, y_pred, sample_weight=None)")

    def result(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: a Metric subclass must define "
                                  f"result()")

    def reset_state(self) -> None:
        for v in getattr(self, "_variables", []):
            v.assign(v._initial)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Updates the state with this batch and returns the result so far."""
        self.update_state(y_true, y_pred, sample_weight=sample_weight)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": getattr(self, "dtype", "float32")}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Metric:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"
