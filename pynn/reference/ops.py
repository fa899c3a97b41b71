"""The graph ops behind `pynn.ops` on symbolic tensors, forward and backward, in NumPy.

The twins of csrc/nn/ops/{unary,binary,reduce,matmul,where,one_hot,argmax,constant,
variable}.cpp.
Every array carries the batch axis first, (batch, *sample_shape); axes in attributes are
per-sample axes (0 is a sample's first axis, negative counts from the end), never the batch.

    unary(fn)            y = fn(x): negative, square, sqrt, exp, log, abs, sign, reciprocal,
                         clip (attrs min, max), power (attr exponent)
    binary(fn)           y = a fn b, per-sample shapes broadcast as NumPy shapes (the batch
                         axes pair up): add, subtract, multiply, divide, maximum, minimum, power,
                         and the comparisons equal, not_equal, greater, greater_equal, less,
                         less_equal (1.0 where they hold, else 0.0)
    binary_scalar(fn)    y = x fn c, or c fn x with reverse (attrs scalar, reverse)
    reduce(fn)           sum, mean, max, min over `axes`, with `keepdims`
    matmul               per-sample a @ b, samples of rank 1 or 2 (NumPy's matmul rules)
    where                x where cond != 0 else z, the three broadcast together
    one_hot              (*s) -> (*s, num_classes); indices truncated, out of range: zeros
    argmax               index of the first maximum along `axis` (none: the flat sample)
    constant             attrs value, shape: the same tensor for every sample of its input
    variable             a parameter (a custom layer's weight used in pynn.ops) as the same
                         tensor for every sample; its gradient is dy summed over the batch

Gradient rules (the core's, see the C++ files): maximum / minimum send dy to the first
operand attaining the extreme (a on a tie); reduce max / min to the first extreme element
(a NaN counts as the extreme, as NumPy's argmax has it); power's exponent gets y log(a) where
a > 0, else 0; clip passes dy where min <= x <= max; sign, the comparisons, one_hot, argmax,
constant and the condition of where pass no gradient. A stretched (broadcast) operand gets the sum
of the gradients of its copies.

A per-sample scalar (a full reduction, a vector-vector matmul, a scalar constant) has the
per-sample shape (1,), as the engine stores it (see pynn/layers/ops_layer.py).

Each op has ``*_forward`` and ``*_backward`` functions on plain arrays, and an entry in `OPS`
(op name -> (forward, backward) in the form of `pynn.reference.graph`, which merges it).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

UNARY_FNS = ("negative", "square", "sqrt", "exp", "log", "abs", "sign", "reciprocal", "clip",
             "power")
COMPARISONS = {"equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
               "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal}
BINARY_FNS = ("add", "subtract", "multiply", "divide", "maximum", "minimum", "power",
              *COMPARISONS)
REDUCE_FNS = ("sum", "mean", "max", "min")


# --- shapes ----------------------------------------------------------------------------------
def broadcast_shapes(*shapes):
    """NumPy's broadcast of per-sample shapes, or None when they do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        return None


def _align(x, rank):
    """x (b, *s) as (b, 1, ..., 1, *s) with `rank` per-sample axes (NumPy's alignment)."""
    extra = rank - (x.ndim - 1)
    return x.reshape((x.shape[0],) + (1,) * extra + x.shape[1:])


def unbroadcast(g: np.ndarray, shape: Sequence[int]):
    """Sums g (b, *out) over the axes an operand of per-sample `shape` was stretched along;
    returns (b, *shape)."""
    rank = g.ndim - 1
    full = (1,) * (rank - len(shape)) + tuple(shape)
    axes = tuple(d + 1 for d in range(rank) if full[d] == 1 and g.shape[d + 1] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape((g.shape[0],) + tuple(shape))


def per_sample_axes(axes: Any, rank: int):
    """Per-sample axes (negative from the end) -> sorted non-negative ones; refuses out of
    range and repeated axes."""
    out = []
    for a in axes:
        r = a + rank if a < 0 else a
        if not 0 <= r < rank:
            raise ValueError(f"axis {a} is out of range for a per-sample rank of {rank}")
        if r in out:
            raise ValueError(f"axis {a} is given twice in {list(axes)}")
        out.append(r)
    return sorted(out)


# --- unary -----------------------------------------------------------------------------------
def unary_forward(fn: str, x: np.ndarray, lo: Any = None, hi: Any = None,
                  exponent: Any = None):
    if fn == "negative":
        return -x
    if fn == "square":
        return x * x
    if fn == "sqrt":
        return np.sqrt(x)
    if fn == "exp":
        return np.exp(x)
    if fn == "log":
        return np.log(x)
    if fn == "abs":
        return np.abs(x)
    if fn == "sign":
        return np.sign(x)
    if fn == "reciprocal":
        return 1.0 / x
    if fn == "clip":
        return np.minimum(np.maximum(x, lo), hi)
    if fn == "power":
        return np.power(x, exponent)
    raise ValueError(f"unary: unknown fn {fn!r}; expected one of {list(UNARY_FNS)}")


def unary_backward(fn: str, x: np.ndarray, y: np.ndarray, dy: np.ndarray, lo: Any = None,
                   hi: Any = None, exponent: Any = None):
    """d loss / d x from dy, with the forward's x and y."""
    if fn == "negative":
        return -dy
    if fn == "square":
        return dy * 2 * x
    if fn == "sqrt":
        return dy * 0.5 / y
    if fn == "exp":
        return dy * y
    if fn == "log":
        return dy / x
    if fn == "abs":
        return dy * np.sign(x)
    if fn == "sign":
        return np.zeros_like(dy)
    if fn == "reciprocal":
        return -dy * y * y
    if fn == "clip":
        return np.where((x >= lo) & (x <= hi), dy, 0.0)
    if fn == "power":
        if exponent == 0:
            return np.zeros_like(dy)
        return dy * exponent * np.power(x, exponent - 1)
    raise ValueError(f"unary: unknown fn {fn!r}; expected one of {list(UNARY_FNS)}")


# --- binary ----------------------------------------------------------------------------------
def _apply(fn, a, b):
    if fn == "add":
        return a + b
    if fn == "subtract":
        return a - b
    if fn == "multiply":
        return a * b
    if fn == "divide":
        return a / b
    if fn == "maximum":
        return np.maximum(a, b)
    if fn == "minimum":
        return np.minimum(a, b)
    if fn == "power":
        return np.power(a, b)
    if fn in COMPARISONS:
        return COMPARISONS[fn](a, b).astype(np.result_type(a, b, np.float32))
    raise ValueError(f"binary: unknown fn {fn!r}; expected one of {list(BINARY_FNS)}")


def _partials(fn, a, b, dy):
    """(dy * d y/d a, dy * d y/d b), broadcast to the output."""
    one = np.ones_like(dy)
    if fn == "add":
        return dy * one, dy * one
    if fn == "subtract":
        return dy * one, -dy * one
    if fn == "multiply":
        return dy * b, dy * a
    if fn == "divide":
        return dy / b, -dy * a / (b * b)
    if fn in ("maximum", "minimum"):
        first = (a >= b) if fn == "maximum" else (a <= b)
        first = np.broadcast_to(first, dy.shape)
        return np.where(first, dy, 0.0), np.where(first, 0.0, dy)
    if fn == "power":
        with np.errstate(divide="ignore", invalid="ignore"):
            da = np.where(b == 0, 0.0, dy * b * np.power(a, b - 1))
            y = np.power(a, b)
            db = np.where(a > 0, dy * y * np.log(np.where(a > 0, a, 1.0)), 0.0)
        return da, db
    if fn in COMPARISONS:
        return np.zeros_like(dy), np.zeros_like(dy)
    raise ValueError(f"binary: unknown fn {fn!r}; expected one of {list(BINARY_FNS)}")


def binary_forward(fn: str, a: np.ndarray, b: np.ndarray):
    """a (n, *sa) fn b (n, *sb) -> (n, *broadcast(sa, sb))."""
    rank = max(a.ndim, b.ndim) - 1
    if broadcast_shapes(a.shape[1:], b.shape[1:]) is None:
        raise ValueError(f"binary {fn}: shapes {a.shape[1:]} and {b.shape[1:]} do not broadcast")
    return _apply(fn, _align(a, rank), _align(b, rank))


def binary_backward(fn: str, a: np.ndarray, b: np.ndarray, dy: np.ndarray):
    """[da, db] for dy shaped like the output."""
    rank = dy.ndim - 1
    da, db = _partials(fn, _align(a, rank), _align(b, rank), dy)
    return [unbroadcast(np.broadcast_to(da, dy.shape), a.shape[1:]),
            unbroadcast(np.broadcast_to(db, dy.shape), b.shape[1:])]


def binary_scalar_forward(fn: str, x: np.ndarray, c: float | np.ndarray, reverse: bool = False):
    return _apply(fn, c, x) if reverse else _apply(fn, x, c)


def binary_scalar_backward(fn: str, x: np.ndarray, c: float | np.ndarray, dy: np.ndarray,
                           reverse: bool = False):
    c = np.asarray(c, dtype=dy.dtype)
    if reverse:
        return _partials(fn, np.broadcast_to(c, x.shape), x, dy)[1]
    return _partials(fn, x, np.broadcast_to(c, x.shape), dy)[0]


# --- reduce ----------------------------------------------------------------------------------
def _extreme_mask(fn, x, axes):
    """A 0/1 array like x marking, for each output, its first max (min) element in row-major
    order over the reduced axes (the first NaN if any, as np.argmax / np.argmin pick it)."""
    full = [a + 1 for a in axes]
    keep = [d for d in range(x.ndim) if d not in full]
    moved = np.transpose(x, keep + full)
    flat = moved.reshape(moved.shape[:len(keep)] + (-1,))
    idx = (np.argmax if fn == "max" else np.argmin)(flat, axis=-1)
    mask = np.zeros_like(flat)
    np.put_along_axis(mask, idx[..., None], 1.0, axis=-1)
    mask = mask.reshape(moved.shape)
    return np.transpose(mask, np.argsort(keep + full))


def reduce_forward(fn: str, x: np.ndarray, axes: Any, keepdims: bool = False):
    """x (n, *s) reduced over per-sample `axes`."""
    axes = per_sample_axes(axes, x.ndim - 1)
    full = tuple(a + 1 for a in axes)
    if fn in ("sum", "mean"):
        y = getattr(np, fn)(x, axis=full, keepdims=True) if full else x.copy()
    elif fn in ("max", "min"):   # NaN propagates, as in the core
        y = getattr(np, fn)(x, axis=full, keepdims=True) if full else x.copy()
    else:
        raise ValueError(f"reduce: unknown fn {fn!r}; expected one of {list(REDUCE_FNS)}")
    return y if keepdims else y.reshape((x.shape[0],) + tuple(
        s for d, s in enumerate(x.shape[1:]) if d not in axes))


def reduce_backward(fn: str, x: np.ndarray, dy: np.ndarray, axes: Any, keepdims: bool = False):
    axes = per_sample_axes(axes, x.ndim - 1)
    kept = (x.shape[0],) + tuple(1 if d in axes else s for d, s in enumerate(x.shape[1:]))
    g = dy.reshape(kept)
    if fn == "sum":
        return np.broadcast_to(g, x.shape).copy()
    if fn == "mean":
        count = int(np.prod([x.shape[a + 1] for a in axes])) if axes else 1
        return np.broadcast_to(g / count, x.shape).copy()
    if not axes:
        return g.copy()
    return _extreme_mask(fn, x, axes) * g


# --- matmul ----------------------------------------------------------------------------------
def _matrices(a, b):
    """(n, m, k) and (n, k, p) views of per-sample a and b, vectors made matrices."""
    A = a[:, None, :] if a.ndim == 2 else a
    B = b[:, :, None] if b.ndim == 2 else b
    return A, B


def matmul_forward(a: np.ndarray, b: np.ndarray):
    """Per-sample a @ b; samples of rank 1 or 2."""
    if not (2 <= a.ndim <= 3 and 2 <= b.ndim <= 3):
        raise ValueError(f"matmul: samples must have rank 1 or 2, got {a.shape[1:]} and "
                         f"{b.shape[1:]}")
    A, B = _matrices(a, b)
    if A.shape[2] != B.shape[1]:
        raise ValueError(f"matmul: shapes {a.shape[1:]} and {b.shape[1:]} do not match")
    y = A @ B
    out = (a.shape[0],) + ((A.shape[1],) if a.ndim == 3 else ()) + \
        ((B.shape[2],) if b.ndim == 3 else ())
    return y.reshape(out)


def matmul_backward(a: np.ndarray, b: np.ndarray, dy: np.ndarray):
    A, B = _matrices(a, b)
    G = dy.reshape(A.shape[0], A.shape[1], B.shape[2])
    da = G @ np.swapaxes(B, 1, 2)
    db = np.swapaxes(A, 1, 2) @ G
    return [da.reshape(a.shape), db.reshape(b.shape)]


# --- where -----------------------------------------------------------------------------------
def where_forward(cond: np.ndarray, x: np.ndarray, z: np.ndarray):
    rank = max(cond.ndim, x.ndim, z.ndim) - 1
    if broadcast_shapes(cond.shape[1:], x.shape[1:], z.shape[1:]) is None:
        raise ValueError(f"where: shapes {cond.shape[1:]}, {x.shape[1:]} and {z.shape[1:]} "
                         f"do not broadcast")
    return np.where(_align(cond, rank) != 0, _align(x, rank), _align(z, rank))


def where_backward(cond: np.ndarray, x: np.ndarray, z: np.ndarray, dy: np.ndarray):
    """[0 for the condition, dx, dz]."""
    rank = dy.ndim - 1
    take = np.broadcast_to(_align(cond, rank) != 0, dy.shape)
    return [np.zeros(cond.shape, dy.dtype),
            unbroadcast(np.where(take, dy, 0.0), x.shape[1:]),
            unbroadcast(np.where(take, 0.0, dy), z.shape[1:])]


# --- one_hot, argmax, constant ---------------------------------------------------------------
def one_hot_forward(x: np.ndarray, num_classes: int, dtype: Any = None):
    """(n, *s) indices -> (n, *s, num_classes); truncated toward 0; out of range: zeros."""
    dtype = dtype or (x.dtype if x.dtype.kind == "f" else np.float32)
    with np.errstate(invalid="ignore"):
        t = np.trunc(x)
        ok = np.isfinite(t) & (t >= 0) & (t < num_classes)
    idx = np.where(ok, t, -1).astype(np.int64)
    return (idx[..., None] == np.arange(num_classes)).astype(dtype)


def argmax_forward(x: np.ndarray, axis: int | None = None, keepdims: bool = False):
    """Float indices of the first maximum along per-sample `axis` (None: the flat sample)."""
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        idx = np.argmax(flat, axis=1).astype(x.dtype)
        return idx.reshape((x.shape[0],) + (1,) * (x.ndim - 1)) if keepdims else idx
    a = per_sample_axes([axis], x.ndim - 1)[0]
    return np.argmax(x, axis=a + 1, keepdims=keepdims).astype(x.dtype)


def constant_forward(x: np.ndarray, value: ArrayLike, shape: Sequence[int],
                     dtype: Any = np.float64):
    v = np.asarray(value, dtype=dtype).reshape(tuple(shape))
    return np.broadcast_to(v, (x.shape[0],) + tuple(shape)).copy()


def variable_forward(x: np.ndarray, value: ArrayLike):
    v = np.asarray(value)
    return np.broadcast_to(v, (x.shape[0],) + v.shape).copy()


def variable_backward(dy: np.ndarray):
    """The parameter's gradient: dy summed over the batch (the input gets none)."""
    return dy.sum(axis=0)


def _samples(y):
    """(n,) per-sample scalars as (n, 1), the graph's form."""
    return y.reshape(y.shape[0], 1) if y.ndim == 1 else y


# --- the executor's table: forward(node, xs, ps, run) -> (y, saved), backward(node, saved, dy)
def _unary_args(attrs):
    return {"lo": attrs.get("min"), "hi": attrs.get("max"), "exponent": attrs.get("exponent")}


def _unary_f(node, xs, ps, run):
    y = unary_forward(node.attrs["fn"], xs[0], **_unary_args(node.attrs))
    return y, (xs[0], y)


def _unary_b(node, saved, dy):
    x, y = saved
    return [unary_backward(node.attrs["fn"], x, y, dy, **_unary_args(node.attrs))], []


def _binary_f(node, xs, ps, run):
    return binary_forward(node.attrs["fn"], xs[0], xs[1]), xs


def _binary_b(node, xs, dy):
    return binary_backward(node.attrs["fn"], xs[0], xs[1], dy), []


def _scalar_f(node, xs, ps, run):
    a = node.attrs
    return binary_scalar_forward(a["fn"], xs[0], a["scalar"], a.get("reverse", False)), xs[0]


def _scalar_b(node, x, dy):
    a = node.attrs
    return [binary_scalar_backward(a["fn"], x, a["scalar"], dy, a.get("reverse", False))], []


def _reduce_f(node, xs, ps, run):
    a = node.attrs
    return _samples(reduce_forward(a["fn"], xs[0], a["axes"], a.get("keepdims", False))), xs[0]


def _reduce_b(node, x, dy):
    a = node.attrs
    return [reduce_backward(a["fn"], x, dy, a["axes"], a.get("keepdims", False))], []


def _matmul_f(node, xs, ps, run):
    return _samples(matmul_forward(xs[0], xs[1])), xs


def _matmul_b(node, xs, dy):
    return matmul_backward(xs[0], xs[1], dy), []


def _where_f(node, xs, ps, run):
    return where_forward(*xs), xs


def _where_b(node, xs, dy):
    return where_backward(*xs, dy), []


def _no_grad(node, saved, dy):
    return [], []     # nothing flows back: the input gets no contribution


def _one_hot_f(node, xs, ps, run):
    return one_hot_forward(xs[0], node.attrs["num_classes"], run.dtype), None


def _argmax_f(node, xs, ps, run):
    a = node.attrs
    return _samples(argmax_forward(xs[0], a.get("axis"), a.get("keepdims", False))), None


def _constant_f(node, xs, ps, run):
    a = node.attrs
    return _samples(constant_forward(xs[0], a["value"], a.get("shape", ()), run.dtype)), None


def _variable_f(node, xs, ps, run):
    shape = node.attrs.get("shape", np.shape(ps[0]))
    return variable_forward(xs[0], np.reshape(ps[0], shape)), np.shape(ps[0])


def _variable_b(node, saved, dy):
    return [], [variable_backward(dy).reshape(saved)]


OPS = {
    "variable": (_variable_f, _variable_b),
    "unary": (_unary_f, _unary_b),
    "binary": (_binary_f, _binary_b),
    "binary_scalar": (_scalar_f, _scalar_b),
    "reduce": (_reduce_f, _reduce_b),
    "matmul": (_matmul_f, _matmul_b),
    "where": (_where_f, _where_b),
    "one_hot": (_one_hot_f, _no_grad),
    "argmax": (_argmax_f, _no_grad),
    "constant": (_constant_f, _no_grad),
}
