"""Low-level operations of the compiled core with NumPy-style arguments."""
from __future__ import annotations

import numpy as np

from pynn import _core, activations
from pynn._validation import as_float32_array, check_real_scalar

__all__ = ["gemm", "activation_names"]

_F32 = np.dtype(np.float32)


def activation_names() -> list[str]:
    """The names of the element-wise activations the core implements."""
    return list(_core.activation_names())


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, bias=None,
         activation=None, activation_params=None):
    """Single-precision matrix product with a fused epilogue.

    Computes ``act(alpha * op(a) @ op(b) + beta * out + bias)`` in float32, where
    ``op(x)`` is ``x.T`` when the matching ``trans_*`` flag is set.

    Args:
        a: 2-D array (M, K), or (K, M) with ``trans_a``. Any memory order or strides; a
            transposed view is read in place. Integer and float64 inputs are converted.
        b: 2-D array (K, N), or (N, K) with ``trans_b``.
        alpha: scale of the product.
        beta: scale of ``out``'s previous contents. With ``beta == 0`` ``out`` is never read
            (it may hold NaN).
        out: optional float32 (M, N) array written in place (any strides; must be writeable).
        bias: optional length-N vector added to every row before the activation.
        activation: None/"linear", "relu", "sigmoid", "tanh", ... (see `activation_names()`).
        activation_params: the activation's parameters by name (e.g. ``{"negative_slope":
            0.1}`` for leaky_relu); defaults as in Keras.

    Returns:
        The float32 (M, N) result (``out`` itself when given).

    Example:
        >>> import numpy as np, pynn
        >>> pynn.ops.gemm(np.eye(2), np.ones((2, 3)), activation="relu").shape
        (2, 3)
    """
    if not (type(a) is np.ndarray and a.dtype == _F32 and a.ndim == 2
            and not (a.strides[0] | a.strides[1]) & 3):
        a = as_float32_array(a, "a", ndim=2)
    if not (type(b) is np.ndarray and b.dtype == _F32 and b.ndim == 2
            and not (b.strides[0] | b.strides[1]) & 3):
        b = as_float32_array(b, "b", ndim=2)
    if type(alpha) is not float:
        alpha = check_real_scalar(alpha, "alpha")
    if type(beta) is not float:
        beta = check_real_scalar(beta, "beta")
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    m, k = a.shape
    k2, n = b.shape
    if k != k2:
        raise ValueError(
            f"a, b: inner dimensions differ: op(a) is {a.shape} and op(b) is {b.shape} "
            f"(trans_a={bool(trans_a)}, trans_b={bool(trans_b)})")
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation: expected a string or None, got {type(activation).__name__}")
    if activation == "softmax":
        raise ValueError("activation: softmax is row-wise, not an epilogue stage; apply "
                         "pynn.activations.softmax to the result")
    if activation_params is not None and not isinstance(activation_params, dict):
        raise TypeError("activation_params: expected a dict of parameter values")
    act_name, act_values = activations.resolve(activation, **(activation_params or {}))
    if bias is not None:
        bias = np.ascontiguousarray(as_float32_array(bias, "bias", ndim=1))
        if bias.shape[0] != n:
            raise ValueError(f"bias: expected length {n} (columns of the result), got "
                             f"{bias.shape[0]}")
    target = None
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
        if out.dtype != np.float32:
            raise TypeError(f"out: expected dtype float32, got {out.dtype}")
        if out.shape != (m, n):
            raise ValueError(f"out: expected shape {(m, n)}, got {out.shape}")
        if not out.flags.writeable:
            raise ValueError("out: array is read-only")
        if out.flags.c_contiguous:
            c = out
        else:
            target = out
            c = np.ascontiguousarray(out) if beta != 0.0 else np.empty((m, n), np.float32)
    else:
        if beta != 0.0:
            raise ValueError("beta: a non-zero beta needs `out` to scale")
        c = np.empty((m, n), dtype=np.float32)
    _core.gemm(a, b, c, alpha, beta, bias, act_name, act_values)
    if target is not None:
        target[...] = c
        return target
    return c
