"""The dense layer, in NumPy.

Shapes: x (n, in), W (in, out) as Keras stores a kernel, b (out,), everything else (n, out).

    forward:   z = x W + b,   y = act(z)
    backward:  dz = dy * act'(z),   dW = x^T dz,   db = sum_rows dz,   dx = dz W^T
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pynn.reference import activations


def dense_forward(x, W, b=None, activation="linear", dtype=np.float64):
    """Returns ``(y, z)``: the output and the pre-activation the backward pass needs."""
    x = np.asarray(x, dtype=dtype)
    W = np.asarray(W, dtype=dtype)
    z = x @ W
    if b is not None:
        z = z + np.asarray(b, dtype=dtype)
    y = activations.get(activation).fn(z)
    return y, z


def dense_backward(x, W, z, dy, activation="linear", compute_dx=True, dtype=np.float64):
    """Returns ``(dx, dW, db)`` for the upstream gradient `dy`; dx is None unless compute_dx."""
    x = np.asarray(x, dtype=dtype)
    W = np.asarray(W, dtype=dtype)
    dz = np.asarray(dy, dtype=dtype) * activations.get(activation).grad(np.asarray(z, dtype=dtype))
    dW = x.T @ dz
    db = dz.sum(axis=0)
    dx = dz @ W.T if compute_dx else None
    return dx, dW, db


def column_sums(x: np.ndarray, dtype: Any = np.float64):
    """Sums of the columns of a 2-D array."""
    return np.asarray(x, dtype=dtype).sum(axis=0)
