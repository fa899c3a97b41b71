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


def gemm_skip_zeros(a, b, *, kc, alpha=1.0, beta=0.0, out=None):
    """Twin of the portable sparse-A kernel (``csrc/gemm/sparse_a_impl.h`` with PYNN_ARCH=generic).

    ``alpha * a @ b + beta * out`` in float32 the way that kernel rounds it: per K panel of
    depth `kc` an accumulator starts at +0 and takes ``acc = acc + a[i, p] * b[p]`` (the
    product rounded, then the sum: the portable kernels have no fused multiply-add) for the
    p with ``a[i, p] != 0`` only, in increasing p; the panel then stores ``alpha * acc`` (first
    panel, ``beta == 0``: `out` unread) or ``beta_p * out + alpha * acc`` with ``beta_p`` equal
    to `beta` on the first panel and 1 after. For finite `b` this is also the dense sum's
    result, the kernel's whole point (a zero term leaves the sum unchanged; the kernel redoes
    the rare row whose sum ended at -0, which this twin's test data never reaches).
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), np.float32) if out is None else np.array(out, np.float32)
    alpha32, beta32 = np.float32(alpha), np.float32(beta)
    for pc in range(0, max(k, 1), kc):
        if k == 0:
            break
        acc = np.zeros((m, n), np.float32)
        for p in range(pc, min(pc + kc, k)):
            rows = a[:, p] != 0  # NaN is nonzero
            acc[rows] = acc[rows] + a[rows, p, None] * b[p]
        beta_p = beta32 if pc == 0 else np.float32(1.0)
        c = alpha32 * acc if beta_p == 0 else beta_p * c + alpha32 * acc
    if k == 0:
        c = np.zeros((m, n), np.float32) if beta32 == 0 else beta32 * c
    return c
