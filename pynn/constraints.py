"""Weight constraints (Keras 3): projections applied to a weight after every optimizer step.

``MaxNorm``, ``UnitNorm`` and ``MinMaxNorm`` rescale the slices of a weight along `axis`
(default 0: for a Dense kernel (in, units) each unit's incoming weights; for a Conv2D kernel
pass ``axis=[0, 1, 2]`` to constrain each filter); ``NonNeg`` clips at 0. The arithmetic is
Keras's, in float32, with its epsilon 1e-7 added to the norms.

Example:
    >>> Dense(8, kernel_constraint=pynn.constraints.MaxNorm(2.0))
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

EPSILON = np.float32(1e-7)   # keras.backend.epsilon()


def _real(value: Any, name: str, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= lo:
        raise ValueError(f"{name}: expected a real number >= {lo}. Received: {name}={value!r}")
    return float(value)


def _axis(axis: Any) -> Any:
    items = axis if isinstance(axis, (list, tuple)) else [axis]
    for a in items:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"axis: expected an int or a list of ints. Received: axis={axis!r}")
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)


class Constraint:
    """Base class: ``constraint(w)`` returns the projected weight (a new float32 array)."""

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(w, np.float32)

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Constraint:
        return cls(**config)

    def _norms(self, w):
        axis = self.axis
        ax = tuple(axis) if isinstance(axis, list) else axis
        if w.ndim == 0:
            raise ValueError(f"{type(self).__name__}: cannot take norms of a scalar weight")
        return np.sqrt(np.sum(np.square(w), axis=ax, keepdims=True, dtype=np.float32))

    def apply(self, value: np.ndarray) -> None:
        """Projects the float32 array `value` in place."""
        np.copyto(value, self(value), casting="same_kind")

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class MaxNorm(Constraint):
    """Rescales slices whose L2 norm exceeds `max_value` down to it."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = _real(max_value, "max_value")
        self.axis = _axis(axis)

    def __call__(self, w):
        w = np.asarray(w, np.float32)
        norms = self._norms(w)
        desired = np.clip(norms, np.float32(0), np.float32(self.max_value))
        return w * (desired / (EPSILON + norms))

    def get_config(self) -> dict:
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Negative weights become 0."""

    def __call__(self, w):
        return np.maximum(np.asarray(w, np.float32), np.float32(0))


class UnitNorm(Constraint):
    """Rescales every slice to L2 norm 1."""

    def __init__(self, axis=0):
        self.axis = _axis(axis)

    def __call__(self, w):
        w = np.asarray(w, np.float32)
        return w / (EPSILON + self._norms(w))

    def get_config(self) -> dict:
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves every slice's L2 norm towards [min_value, max_value]: the new norm is
    ``rate * clip(norm, min_value, max_value) + (1 - rate) * norm``."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _real(min_value, "min_value")
        self.max_value = _real(max_value, "max_value")
        if self.max_value < self.min_value:
            raise ValueError(f"max_value: expected >= min_value ({self.min_value}). "
                             f"Received: max_value={max_value!r}")
        self.rate = _real(rate, "rate")
        self.axis = _axis(axis)

    def __call__(self, w):
        w = np.asarray(w, np.float32)
        norms = self._norms(w)
        desired = (np.float32(self.rate) * np.clip(norms, np.float32(self.min_value),
                                                   np.float32(self.max_value))
                   + np.float32(1 - self.rate) * norms)
        return w * (desired / (EPSILON + norms))

    def get_config(self) -> dict:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm
_BY_NAME: dict[str, type[Constraint]] = {
    "max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm}
_BY_CLASS: dict[str, type[Constraint]] = {
    "MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm}


def get(identifier: Any, what: str = "constraint") -> Constraint | None:
    """None, a name ("max_norm", "non_neg", "unit_norm", "min_max_norm", or a class name), a
    Constraint, or a ``{"class_name", "config"}`` dict; `what` names the argument in errors."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _BY_CLASS.get(identifier)
        if cls is None:
            raise ValueError(f"{what}: unknown constraint {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return _BY_CLASS[identifier["class_name"]].from_config(identifier.get("config") or {})
    raise TypeError(f"{what}: expected None, a constraint name or a pynn.constraints "
                    f"Constraint, got {identifier!r}")


def serialize(constraint: Constraint | None) -> dict[str, Any] | None:
    if constraint is None:
        return None
    return {"module": "keras.constraints", "class_name": type(constraint).__name__,
            "config": constraint.get_config(), "registered_name": None}


__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get", "max_norm",
           "min_max_norm", "non_neg", "serialize", "unit_norm"]
