"""Weight penalties added to the loss: ``l1 * sum|w| + l2 * sum w^2`` (Keras 3 defaults)."""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def _coef(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a non-negative real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a non-negative finite number, got {value}")
    return value


class Regularizer:
    l1 = 0.0
    l2 = 0.0

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        return float(self.l1 * np.abs(x).sum() + self.l2 * np.square(x).sum())

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Regularizer:
        return cls(**config)


class L1(Regularizer):
    """``l1 * sum(|w|)``; default l1=0.01."""

    def __init__(self, l1=0.01):
        self.l1 = _coef(l1, "l1")

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w**2)``; default l2=0.01."""

    def __init__(self, l2=0.01):
        self.l2 = _coef(l2, "l2")

    def get_config(self) -> dict:
        return {"l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)``; defaults 0.0 (Keras's class) ."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _coef(l1, "l1")
        self.l2 = _coef(l2, "l2")

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


l1 = L1
l2 = L2
l1_l2 = L1L2
_BY_NAME: dict[str, Callable[[], Regularizer]] = {
    "l1": L1, "l2": L2, "l1_l2": lambda: L1L2(l1=0.01, l2=0.01)}
_BY_CLASS = {"L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier: Any, what: str = "regularizer") -> Regularizer | None:
    """None, "l1", "l2", "l1_l2" (0.01 each, as Keras's strings), a Regularizer or a config.
    `what` names the argument in errors."""
    if identifier is None:
        return None
    if isinstance(identifier, Regularizer):
        # The kernels compute l1 * sum|w| + l2 * sum w^2 from the coefficients alone, so a
        # subclass with a __call__ of its own would be silently ignored: refuse it.
        if type(identifier).__call__ is not Regularizer.__call__:
            raise TypeError(f"{what}: a Regularizer subclass with its own __call__ is not "
                            f"supported (pynn computes l1 * sum|x| + l2 * sum x^2 from its "
                            f"l1 and l2); got {type(identifier).__name__}")
        return identifier
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"{what}: unknown name {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return _BY_CLASS[identifier["class_name"]](**identifier.get("config", {}))
    raise TypeError(f"{what}: expected None, a name, a config or a pynn.regularizers "
                    f"L1, L2 or L1L2, got {identifier!r}")


def serialize(reg: Regularizer | None) -> dict[str, Any] | None:
    if reg is None:
        return None
    return {"class_name": type(reg).__name__, "config": reg.get_config()}
