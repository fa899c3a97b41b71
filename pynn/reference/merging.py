"""Merge and shape ops of the graph, forward and backward, in NumPy.

Every array here carries the batch axis first: x has shape (batch, *sample_shape). Axes given
as in Keras count that batch axis as 0, so "per-sample axis 1" is the first axis of a sample;
negative axes count from the end. The batch axis itself can never be merged or moved.

Each op has a ``*_forward`` and a ``*_backward``; a backward takes the upstream gradient
``dy`` (shaped like the output) and returns the gradient of every input (shaped like it).

    merge (add, subtract, multiply, average, maximum, minimum)   n inputs of one shape -> it
    concatenate(axis)                    inputs equal except on `axis` -> joined on `axis`
    reshape / flatten / identity         the same numbers, another shape
    permute(dims)                        (b, *s) -> (b, *s[dims - 1]), dims 1-based
    repeat_vector(n)                     (b, d) -> (b, n, d)
    dot(axes, normalize)                 Keras's layers.Dot on rank-1 or rank-2 samples
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MERGE_OPS = ("add", "subtract", "multiply", "average", "maximum", "minimum")

# Lower bound of the sum of squares in dot(normalize=True), as tf.nn.l2_normalize (and the
# compiled core) have it: u = x / sqrt(max(sum x^2, SQUARE_SUM_FLOOR)). Keras 3's own
# normalize floors the norm at 1e-7 instead; the two differ only for vectors of norm < 1e-6.
SQUARE_SUM_FLOOR = 1e-12


def sample_axis(axis: int, ndim: int):
    """The axis of an array of `ndim` dimensions (batch included) that `axis` names.

    Keras numbering: 1 is the first per-sample axis, -1 the last axis; 0 (the batch) is refused.
    """
    axis = int(axis)
    full = axis + ndim if axis < 0 else axis
    if not 1 <= full < ndim:
        raise ValueError(f"axis {axis}: expected a per-sample axis of a rank-{ndim - 1} sample "
                         f"(1..{ndim - 1}, or -{ndim - 1}..-1)")
    return full


# --- element-wise merges -------------------------------------------------------------------
def merge_forward(op: str, xs: Sequence[np.ndarray]):
    """y = op(x_1, ..., x_n) element-wise; every x_i (b, *s), y (b, *s).

    add: sum x_i, subtract: x_1 - x_2, multiply: prod x_i, average: sum x_i / n,
    maximum / minimum: the element-wise max / min.
    """
    xs = [np.asarray(x) for x in xs]
    _check_merge(op, xs)
    if op == "add":
        return _sum(xs)
    if op == "subtract":
        return xs[0] - xs[1]
    if op == "multiply":
        return _product(xs)
    if op == "average":
        return _sum(xs) / len(xs)
    if op == "maximum":
        return np.maximum.reduce(xs)
    return np.minimum.reduce(xs)  # minimum


def merge_backward(op: str, xs: Sequence[np.ndarray], dy: np.ndarray):
    """[dx_1, ..., dx_n] for the upstream gradient dy (b, *s).

    add: dx_i = dy; subtract: dx_1 = dy, dx_2 = -dy; average: dx_i = dy / n;
    multiply: dx_i = dy * prod_{j != i} x_j (a product of the others, not y / x_i, so that a
    zero input is no problem); maximum / minimum: dy goes to the input that attains the
    extreme, and on a tie to the first of them only (the others get 0).
    """
    xs = [np.asarray(x) for x in xs]
    dy = np.asarray(dy)
    _check_merge(op, xs)
    n = len(xs)
    if op == "add":
        return [dy.copy() for _ in xs]
    if op == "subtract":
        return [dy.copy(), -dy]
    if op == "average":
        return [dy / n for _ in xs]
    if op == "multiply":
        return [dy * _product(xs[:i] + xs[i + 1:]) for i in range(n)]
    # maximum / minimum: np.argmax / np.argmin return the first index on a tie
    pick = np.argmax if op == "maximum" else np.argmin
    winner = pick(np.stack(xs), axis=0)
    return [np.where(winner == i, dy, 0.0).astype(dy.dtype) for i in range(n)]


def _check_merge(op, xs):
    if op not in MERGE_OPS:
        raise ValueError(f"unknown merge op {op!r}; expected one of {list(MERGE_OPS)}")
    if op == "subtract" and len(xs) != 2:
        raise ValueError(f"subtract: expected exactly 2 inputs, got {len(xs)}")
    if len(xs) < 1:
        raise ValueError(f"{op}: expected at least one input")
    shapes = {x.shape for x in xs}
    if len(shapes) != 1:
        raise ValueError(f"{op}: expected inputs of one shape, got {[x.shape for x in xs]}")


def _sum(xs):
    total = xs[0].copy()
    for x in xs[1:]:
        total = total + x
    return total


def _product(xs):
    if not xs:
        return 1.0
    total = xs[0].copy()
    for x in xs[1:]:
        total = total * x
    return total


# --- concatenate -----------------------------------------------------------------------------
def concatenate_forward(xs: Sequence[np.ndarray], axis: int = -1):
    """Joins the inputs along `axis` (Keras numbering, see `sample_axis`)."""
    xs = [np.asarray(x) for x in xs]
    return np.concatenate(xs, axis=sample_axis(axis, xs[0].ndim))


def concatenate_backward(xs: Sequence[np.ndarray], dy: np.ndarray, axis: int = -1):
    """Cuts dy along `axis` back into pieces as wide as the inputs were."""
    xs = [np.asarray(x) for x in xs]
    ax = sample_axis(axis, xs[0].ndim)
    ends = np.cumsum([x.shape[ax] for x in xs])[:-1]
    return [piece.copy() for piece in np.split(np.asarray(dy), ends, axis=ax)]


# --- reshape, flatten, identity --------------------------------------------------------------
def reshape_forward(x: np.ndarray, target_shape: Sequence[int]):
    """(b, *s) -> (b, *target_shape), the same numbers in the same (row-major) order."""
    x = np.asarray(x)
    target_shape = tuple(int(s) for s in target_shape)
    if math.prod(target_shape) != math.prod(x.shape[1:]):
        raise ValueError(f"reshape: cannot reshape a sample of shape {x.shape[1:]} to "
                         f"{target_shape}")
    return x.reshape((x.shape[0],) + target_shape)


def reshape_backward(x: np.ndarray, dy: np.ndarray):
    """The gradient of a reshape is dy with the input's shape."""
    return np.asarray(dy).reshape(np.shape(x))


def flatten_forward(x: np.ndarray):
    """(b, *s) -> (b, prod(s))."""
    x = np.asarray(x)
    return reshape_forward(x, (math.prod(x.shape[1:]),))


def identity_forward(x: np.ndarray):
    return np.asarray(x)


# flatten and identity are reshapes: their backward is reshape_backward.
flatten_backward = reshape_backward
identity_backward = reshape_backward


# --- permute ---------------------------------------------------------------------------------
def permute_order(dims: Sequence[int], ndim: int):
    """The np.transpose order of an array of `ndim` dims (batch included) for Keras `dims`."""
    dims = tuple(int(d) for d in dims)
    if sorted(dims) != list(range(1, ndim)):
        raise ValueError(f"permute: dims {dims} must be a permutation of 1..{ndim - 1}")
    return (0,) + dims


def permute_forward(x: np.ndarray, dims: Sequence[int]):
    """y[b, i_1, .., i_k] with y's axis j being x's axis dims[j-1]: e.g. dims=(2, 1) swaps
    the two axes of rank-2 samples, (b, p, q) -> (b, q, p)."""
    x = np.asarray(x)
    return np.transpose(x, permute_order(dims, x.ndim)).copy()


def permute_backward(dy: np.ndarray, dims: Sequence[int]):
    """Undoes the permutation: dy transposed by the inverse order."""
    dy = np.asarray(dy)
    order = permute_order(dims, dy.ndim)
    return np.transpose(dy, np.argsort(order)).copy()


# --- repeat_vector ---------------------------------------------------------------------------
def repeat_vector_forward(x: np.ndarray, n: int):
    """(b, d) -> (b, n, d): every sample repeated n times."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"repeat_vector: expected rank-1 samples (b, d), got {x.shape}")
    return np.repeat(x[:, None, :], int(n), axis=1)


def repeat_vector_backward(dy: np.ndarray):
    """Each copy passed the same x on: dx = sum of dy over the n copies, (b, n, d) -> (b, d)."""
    return np.asarray(dy).sum(axis=1)


# --- dot -------------------------------------------------------------------------------------
def dot_axes(axes: Any, x_ndim: int, y_ndim: int):
    """(axis of x, axis of y) for Keras's `axes` (an int for both, or a pair)."""
    if isinstance(axes, (int, np.integer)):
        axes = (axes, axes)
    axes = tuple(axes)
    if len(axes) != 2:
        raise ValueError(f"dot: axes must be an int or a pair, got {axes}")
    return sample_axis(axes[0], x_ndim), sample_axis(axes[1], y_ndim)


def _l2_norm(x, axis):
    """The divisor of the normalisation: sqrt(max(sum x^2, SQUARE_SUM_FLOOR)) along `axis`."""
    return np.sqrt(np.maximum((x * x).sum(axis=axis, keepdims=True), SQUARE_SUM_FLOOR))


def l2_normalize_forward(x: np.ndarray, axis: int):
    """u = x / ||x|| along `axis` (an axis of the full array), ||x|| floored as above."""
    return x / _l2_norm(x, axis)


def l2_normalize_backward(x: np.ndarray, du: np.ndarray, axis: int):
    """dx of u = x / ||x||: (du - u (u . du)) / ||x||, du with its component along u removed.
    Where the floor is active the divisor is a constant, so there dx = du / sqrt(floor)."""
    sum_sq = (x * x).sum(axis=axis, keepdims=True)
    norm = _l2_norm(x, axis)
    u = x / norm
    on_sphere = (du - u * (u * du).sum(axis=axis, keepdims=True)) / norm
    return np.where(sum_sq > SQUARE_SUM_FLOOR, on_sphere, du / norm)


def _dot_core(x, y, ax, ay):
    """Moves x's dot axis last and y's first (after the batch), flattened to matrices:
    xm (b, X, k), ym (b, k, Y), with X, Y the products of the remaining axes."""
    xt = np.moveaxis(x, ax, -1)
    yt = np.moveaxis(y, ay, 1)
    b, k = x.shape[0], x.shape[ax]
    if y.shape[ay] != k:
        raise ValueError(f"dot: the dot axes differ in length: {x.shape[ax]} (x axis {ax}) and "
                         f"{y.shape[ay]} (y axis {ay})")
    x_rest, y_rest = xt.shape[1:-1], yt.shape[2:]
    xm = xt.reshape(b, math.prod(x_rest), k)
    ym = yt.reshape(b, k, math.prod(y_rest))
    return xm, ym, x_rest, y_rest


def dot_forward(x: np.ndarray, y: np.ndarray, axes: Any, normalize: bool = False):
    """Keras's layers.Dot for samples of rank 1 or 2: the sum of x * y over one axis of each.

    x (b, *xs), y (b, *ys), `axes` per-sample and 1-based (see `dot_axes`). The output holds
    x's remaining axes then y's: (b, d) . (b, d) -> (b, 1); (b, p, k) . (b, k, q) with
    axes=(2, 1) -> (b, p, q); (b, k, p) . (b, k) with axes=1 -> (b, p).
    normalize=True first L2-normalises each input along its dot axis (cosine similarity).
    """
    x, y = np.asarray(x), np.asarray(y)
    if not (2 <= x.ndim <= 3 and 2 <= y.ndim <= 3):
        raise ValueError(f"dot: expected samples of rank 1 or 2, got {x.shape} and {y.shape}")
    ax, ay = dot_axes(axes, x.ndim, y.ndim)
    if normalize:
        x, y = l2_normalize_forward(x, ax), l2_normalize_forward(y, ay)
    xm, ym, x_rest, y_rest = _dot_core(x, y, ax, ay)
    out = (xm @ ym).reshape((x.shape[0],) + x_rest + y_rest)
    if out.ndim == 1:               # two vectors: one number per sample, kept as (b, 1)
        out = out[:, None]
    return out


def dot_backward(x: np.ndarray, y: np.ndarray, dout: np.ndarray, axes: Any,
                 normalize: bool = False):
    """(dx, dy) of `dot_forward` for the upstream gradient dout.

    With out = xm @ ym per sample: dxm = dout @ ym^T and dym = xm^T @ dout; then undo the
    reshapes and axis moves, and the normalisation if any.
    """
    x0, y0 = np.asarray(x), np.asarray(y)
    ax, ay = dot_axes(axes, x0.ndim, y0.ndim)
    x, y = x0, y0
    if normalize:
        x, y = l2_normalize_forward(x0, ax), l2_normalize_forward(y0, ay)
    xm, ym, x_rest, y_rest = _dot_core(x, y, ax, ay)
    b = x.shape[0]
    g = np.asarray(dout).reshape(b, xm.shape[1], ym.shape[2])
    dxm = g @ np.swapaxes(ym, 1, 2)                       # (b, X, k)
    dym = np.swapaxes(xm, 1, 2) @ g                       # (b, k, Y)
    dx = np.moveaxis(dxm.reshape((b,) + x_rest + (x.shape[ax],)), -1, ax)
    dy = np.moveaxis(dym.reshape((b, y.shape[ay]) + y_rest), 1, ay)
    if normalize:
        dx, dy = l2_normalize_backward(x0, dx, ax), l2_normalize_backward(y0, dy, ay)
    return dx, dy
