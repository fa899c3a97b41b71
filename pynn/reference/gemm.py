"""GEMM with the fused epilogue, in NumPy."""
from __future__ import annotations

import numpy as np


def _activation(z, name):
    if name in (None, "linear"):
        return z
    from pynn.reference import activations

    return activations.get(name).fn(z)


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, bias=None,
         activation=None, dtype=np.float64):
    """``act(alpha * op(a) @ op(b) + beta * out + bias)`` computed in `dtype`.

    Shapes: op(a) (M, K), op(b) (K, N), out (M, N), bias (N,). With ``beta == 0`` `out` is
    ignored, even if it holds NaN.
    """
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    z = alpha * (a @ b)
    if beta != 0.0:
        z = z + beta * np.asarray(out, dtype=dtype)
    if bias is not None:
        z = z + np.asarray(bias, dtype=dtype)
    return _activation(z, activation)
