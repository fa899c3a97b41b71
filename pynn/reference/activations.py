"""Activation functions and their derivatives, in NumPy.

Each activation is an object with ``fn(z)`` (the function) and ``grad(z)`` (its derivative
f'(z), element-wise), computed in the dtype of `z`.
"""
from __future__ import annotations

import numpy as np


class Activation:
    name = ""

    def fn(self, z):
        raise NotImplementedError

    def grad(self, z):
        raise NotImplementedError


class Linear(Activation):
    """f(z) = z, f'(z) = 1."""

    name = "linear"

    def fn(self, z):
        return np.asarray(z)

    def grad(self, z):
        return np.ones_like(z)


class ReLU(Activation):
    """f(z) = max(z, 0), f'(z) = 1 for z > 0 else 0."""

    name = "relu"

    def fn(self, z):
        return np.maximum(z, 0)

    def grad(self, z):
        return (np.asarray(z) > 0).astype(np.result_type(z, np.float32))


class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z), f'(z) = f(1 - f); evaluated without overflow."""

    name = "sigmoid"

    def fn(self, z):
        z = np.asarray(z)
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))

    def grad(self, z):
        f = self.fn(z)
        return f * (1 - f)


class Tanh(Activation):
    """f(z) = tanh z, f'(z) = 1 - f^2."""

    name = "tanh"

    def fn(self, z):
        return np.tanh(z)

    def grad(self, z):
        return 1 - np.tanh(z) ** 2


_REGISTRY = {cls.name: cls for cls in (Linear, ReLU, Sigmoid, Tanh)}


def get(name: str, **params) -> Activation:
    """The activation called `name`, built with its parameters."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_REGISTRY)}") from None
    return cls(**params)
