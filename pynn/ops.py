"""Keras-style operations (``keras.ops``), and low-level calls into the compiled core.

Every op takes NumPy arrays, Python numbers or symbolic tensors (`pynn.Input` and layer
outputs, `KerasTensor`):

* On arrays and numbers it computes eagerly with NumPy and returns a float32 array (argmax:
  int32), with Keras semantics.
* On symbolic tensors it adds a node to the graph (through a small internal layer,
  `pynn.layers.ops_layer.OpLayer`) and returns a new symbolic tensor, so ops work inside
  functional models, the ``call`` of subclassed models, nested models, `pynn.layers.Lambda`
  and (traced) custom losses. Arrays and numbers mixed with symbolic tensors are constants.

Symbolic tensors carry an implicit batch axis (axis 0), which an op cannot touch: axes count
it as Keras does (1 is a sample's first axis; negative axes count from the end), and an axis
that names the batch is a ValueError. Two symbolic operands pair their batch rows and
broadcast their per-sample shapes as NumPy shapes; a constant broadcasts against the whole
tensor, as in Keras (its leading axes beyond a sample's rank must be 1). A reduction with
``axis=None`` on a symbolic tensor reduces every per-sample axis (one value per sample: the
batch is reduced later, by the loss); ``argmax`` with ``axis=None`` returns the index in the
flattened sample. A symbolic result with no per-sample axis left (Keras's shape (None,)) has
shape (None, 1): the engine stores one value per sample as a length-1 axis.

Gradients follow TensorFlow's conventions: maximum/minimum and max/min reductions send the
gradient to the first extreme element, clip passes it inside [min, max] (bounds included),
and sign, where's condition, one_hot and argmax pass none.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pynn import _core, activations
from pynn._validation import as_float32_array, check_real_scalar
from pynn.layers import ops_layer as _ol
from pynn.layers.layer import KerasTensor, Weight

# What the ops take and return: NumPy arrays (or anything np.asarray accepts; the op runs at
# once) or symbolic tensors (pynn.Input, a layer's output; the op becomes a layer of the
# model). Any: the result's kind follows the arguments', which a plain union cannot say.
Tensor = Any

__all__ = [
    "convert_to_numpy",
    "gemm", "activation_names",
    # arithmetic
    "add", "subtract", "multiply", "divide", "true_divide", "negative", "square", "sqrt", "exp",
    "log", "abs", "absolute", "sign", "reciprocal", "maximum", "minimum", "clip", "power",
    "where",
    # comparisons
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
    "logical_or", "logical_not",
    # reductions
    "sum", "mean", "max", "min", "argmax",
    # shapes and products
    "matmul", "transpose", "reshape", "expand_dims", "squeeze", "concatenate", "one_hot", "cast",
    "convert_to_tensor",
    # activations
    "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "softplus", "softsign", "silu",
    "swish", "leaky_relu", "hard_sigmoid", "hard_silu", "hard_swish", "mish",
]

_F32 = np.dtype(np.float32)


def activation_names() -> list[str]:
    """The names of the element-wise activations the core implements."""
    return list(_core.activation_names())


def gemm(a: Any, b: Any, *, trans_a: bool = False, trans_b: bool = False,  # a, b: 2-D arrays
         alpha: float = 1.0, beta: float = 0.0, out: np.ndarray | None = None,
         bias: ArrayLike | None = None, activation: str | None = None,
         activation_params: Sequence[float] | Mapping[str, float] | None = None) -> np.ndarray:
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


# =============================================================================================
# Keras ops
# =============================================================================================
import builtins as _builtins  # noqa: E402  (sum, max, min, abs are ops in this module)


def _symbolic(*xs):
    """Some operand is symbolic: a KerasTensor, or a layer's weight while a custom layer's
    call() is being traced (then the weight is a graph parameter, not a constant)."""
    return _builtins.any(isinstance(x, KerasTensor) or (isinstance(x, Weight) and _ol.tracing())
                         for x in xs)


def _weight_operand(w, ref, what):
    """A weight next to symbolic tensor `ref` (or the traced call's input): its per-sample
    shape drops leading 1-axes that would meet the batch axis."""
    rank = len(ref.sample_shape) if ref is not None else w.value.ndim
    shape = w.shape
    extra = len(shape) - rank
    if extra > 0:
        if _builtins.any(d != 1 for d in shape[:extra]):
            raise ValueError(f"{what}: weight {w.path} of shape {shape} cannot broadcast against "
                             f"a symbolic tensor of shape {ref.shape}: its leading axes would "
                             f"meet the batch axis, which must stay first")
        shape = shape[extra:]
    return _ol.WeightOperand(w, shape or (1,))


def _value(x, name):
    """An eager operand as a float32 array (bools and integers converted)."""
    if isinstance(x, KerasTensor):
        raise TypeError(f"{name}: unexpected symbolic tensor")
    if isinstance(x, Weight):
        return x.value.copy()
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name}: expected numbers, got {type(x).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _f32(x):
    return np.asarray(x, dtype=np.float32)


def _scalar_of(x):
    """The float of a Python number or a one-element 0-d array; None for anything else."""
    if isinstance(x, KerasTensor) or isinstance(x, bool):
        return float(x) if isinstance(x, bool) else None
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "biuf":
        return float(x)
    if isinstance(x, np.generic) and np.asarray(x).dtype.kind in "biuf":
        return float(x)
    return None


def _constant(c, ref, what):
    """A constant operand next to symbolic tensor `ref`: its array in per-sample form (leading
    axes beyond a sample's rank are the batch's and must be 1)."""
    arr = _value(c, what)
    rank = len(ref.sample_shape)
    extra = arr.ndim - rank
    if extra > 0:
        if _builtins.any(d != 1 for d in arr.shape[:extra]):
            raise ValueError(f"{what}: a constant of shape {arr.shape} cannot broadcast against "
                             f"a symbolic tensor of shape {ref.shape}: its leading axes would "
                             f"meet the batch axis, which must stay first")
        arr = arr.reshape(arr.shape[extra:])
    return np.ascontiguousarray(arr, dtype=np.float32)


def _node(op, attrs, args, rule, label):
    """Calls a new OpLayer on the symbolic entries of `args` (constants stay in the layer)."""
    tensors, operands = [], []
    ref = next((a for a in args if isinstance(a, KerasTensor)), None)
    if ref is None:      # only weights (inside a traced call): hang them off the call's input
        ref = _ol.trace_anchor()
        tensors.append(ref)
    for a in args:
        if isinstance(a, KerasTensor):
            operands.append(len(tensors))
            tensors.append(a)
        elif isinstance(a, Weight):
            operands.append(_weight_operand(a, ref, f"ops.{label}"))
        else:
            operands.append(_constant(a, ref, f"ops.{label}"))
    layer = _ol.OpLayer(op, attrs, operands, rule, label)
    return layer(tensors if len(tensors) > 1 else tensors[0])


# --- element-wise ------------------------------------------------------------------------------
_NUMPY_BINARY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
                 "divide": np.divide, "maximum": np.maximum, "minimum": np.minimum,
                 "power": np.power}


def _binary(fn, x1, x2):
    if not _symbolic(x1, x2):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _f32(_NUMPY_BINARY[fn](_value(x1, "x1"), _value(x2, "x2")))
    c1, c2 = _scalar_of(x1), _scalar_of(x2)
    if c2 is not None and isinstance(x1, KerasTensor):
        if fn == "power":
            return _node("unary", {"fn": "power", "exponent": c2}, [x1], _ol.same_shape, fn)
        return _node("binary_scalar", {"fn": fn, "scalar": c2, "reverse": False}, [x1],
                     _ol.same_shape, fn)
    if c1 is not None and isinstance(x2, KerasTensor):
        return _node("binary_scalar", {"fn": fn, "scalar": c1, "reverse": True}, [x2],
                     _ol.same_shape, fn)
    return _node("binary", {"fn": fn}, [x1, x2], _ol.broadcast_rule, fn)


def _comparison(fn, x1, x2):
    if not _symbolic(x1, x2):
        return getattr(np, fn)(_value(x1, "x1"), _value(x2, "x2"))   # bool, as NumPy / Keras
    return _binary(fn, x1, x2)   # symbolic tensors are float32: 1.0 where it holds, 0.0 not


def _comparison_op(fn, symbol):
    def op(x1, x2):
        return _comparison(fn, x1, x2)

    op.__name__ = op.__qualname__ = fn
    op.__doc__ = f"x1 {symbol} x2 element-wise (symbolic: 1.0 / 0.0 as float32, no gradient)."
    return op


equal = _comparison_op("equal", "==")
not_equal = _comparison_op("not_equal", "!=")
greater = _comparison_op("greater", ">")
greater_equal = _comparison_op("greater_equal", ">=")
less = _comparison_op("less", "<")
less_equal = _comparison_op("less_equal", "<=")


def logical_and(x1: Tensor, x2: Tensor) -> Tensor:
    """Both non-zero (symbolic: 1.0 / 0.0 as float32, no gradient)."""
    if not _symbolic(x1, x2):
        return np.logical_and(_value(x1, "x1"), _value(x2, "x2"))
    return multiply(not_equal(x1, 0.0), not_equal(x2, 0.0))


def logical_or(x1: Tensor, x2: Tensor) -> Tensor:
    """Either non-zero (symbolic: 1.0 / 0.0 as float32, no gradient)."""
    if not _symbolic(x1, x2):
        return np.logical_or(_value(x1, "x1"), _value(x2, "x2"))
    return maximum(not_equal(x1, 0.0), not_equal(x2, 0.0))


def logical_not(x: Tensor) -> Tensor:
    """x is zero (symbolic: 1.0 / 0.0 as float32, no gradient)."""
    if not _symbolic(x):
        return np.logical_not(_value(x, "x"))
    return equal(x, 0.0)


def add(x1: Tensor, x2: Tensor) -> Tensor:
    """x1 + x2, broadcasting."""
    return _binary("add", x1, x2)


def subtract(x1: Tensor, x2: Tensor) -> Tensor:
    """x1 - x2, broadcasting."""
    return _binary("subtract", x1, x2)


def multiply(x1: Tensor, x2: Tensor) -> Tensor:
    """x1 * x2, broadcasting."""
    return _binary("multiply", x1, x2)


def divide(x1: Tensor, x2: Tensor) -> Tensor:
    """x1 / x2, broadcasting."""
    return _binary("divide", x1, x2)


true_divide = divide


def maximum(x1: Tensor, x2: Tensor) -> Tensor:
    """Element-wise maximum (NaN propagates); the gradient goes to x1 on a tie."""
    return _binary("maximum", x1, x2)


def minimum(x1: Tensor, x2: Tensor) -> Tensor:
    """Element-wise minimum (NaN propagates); the gradient goes to x1 on a tie."""
    return _binary("minimum", x1, x2)


def power(x1: Tensor, x2: Tensor) -> Tensor:
    """x1 ** x2, broadcasting."""
    return _binary("power", x1, x2)


_NUMPY_UNARY = {"negative": np.negative, "square": np.square, "sqrt": np.sqrt, "exp": np.exp,
                "log": np.log, "abs": np.abs, "sign": np.sign,
                "reciprocal": lambda v: 1.0 / v}


def _unary(fn, x, **attrs):
    if _symbolic(x):
        return _node("unary", {"fn": fn, **attrs}, [x], _ol.same_shape, fn)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _f32(_NUMPY_UNARY[fn](_value(x, "x")))


def negative(x: Tensor) -> Tensor:
    """-x."""
    return _unary("negative", x)


def square(x: Tensor) -> Tensor:
    """x * x."""
    return _unary("square", x)


def sqrt(x: Tensor) -> Tensor:
    """Square root (NaN below 0)."""
    return _unary("sqrt", x)


def exp(x: Tensor) -> Tensor:
    """e ** x."""
    return _unary("exp", x)


def log(x: Tensor) -> Tensor:
    """Natural logarithm (-inf at 0, NaN below)."""
    return _unary("log", x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 (Keras's name)
    """|x|."""
    return _unary("abs", x)


absolute = abs


def sign(x: Tensor) -> Tensor:
    """-1, 0 or 1 (no gradient)."""
    return _unary("sign", x)


def reciprocal(x: Tensor) -> Tensor:
    """1 / x."""
    return _unary("reciprocal", x)


def clip(x: Tensor, x_min: Tensor, x_max: Tensor) -> Tensor:
    """min(max(x, x_min), x_max) with number bounds; the gradient passes where
    x_min <= x <= x_max."""
    lo, hi = _scalar_of(x_min), _scalar_of(x_max)
    if lo is None or hi is None:
        raise TypeError(f"ops.clip: x_min and x_max must be numbers, got {x_min!r} and "
                        f"{x_max!r}")
    if isinstance(x, KerasTensor):
        if np.isnan(lo) or np.isnan(hi):
            raise ValueError("ops.clip: the bounds must not be NaN")
        return _unary("clip", x, min=lo, max=hi)
    return _f32(np.minimum(np.maximum(_value(x, "x"), np.float32(lo)), np.float32(hi)))


def where(condition: Tensor, x1: Tensor = None, x2: Tensor = None) -> Tensor:
    """x1 where condition is true (non-zero), else x2; the three broadcast together."""
    if x1 is None or x2 is None:
        raise ValueError("ops.where: give both x1 and x2 (the one-argument form, the indices "
                         "of non-zero elements, has no fixed shape)")
    if not _symbolic(condition, x1, x2):
        return _f32(np.where(_value(condition, "condition") != 0, _value(x1, "x1"),
                             _value(x2, "x2")))
    return _node("where", {}, [condition, x1, x2], _ol.broadcast_rule, "where")


# --- reductions --------------------------------------------------------------------------------
def _axes(x, axis, label):
    """Keras axes (the batch is axis 0) of symbolic x -> per-sample axes counted from the end;
    None -> every per-sample axis."""
    rank = len(x.sample_shape)
    if axis is None:
        return [d - rank for d in range(rank)]
    many = isinstance(axis, (list, tuple))
    items = list(axis) if many else [axis]
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"ops.{label}: axis must be an integer or a tuple of integers, got "
                            f"{axis!r}")
        a = int(a)
        full = a + rank + 1 if a < 0 else a
        if full == 0:
            raise ValueError(f"ops.{label}: axis {a} is the batch axis of a tensor of shape "
                             f"{x.shape}; inside a model only per-sample axes (1..{rank}) can "
                             f"be used")
        if not 1 <= full <= rank:
            raise ValueError(f"ops.{label}: axis {a} is out of range for a tensor of shape "
                             f"{x.shape}")
        p = full - 1 - rank
        if p in out:
            raise ValueError(f"ops.{label}: axis {a} is repeated in {axis!r}")
        out.append(p)
    return sorted(out)


def _reduce(fn, x, axis, keepdims):
    if isinstance(x, KerasTensor):
        return _node("reduce", {"fn": fn, "axes": _axes(x, axis, fn), "keepdims": bool(keepdims)},
                     [x], _ol.reduce_rule, fn)
    arr = _value(x, "x")
    ax = tuple(axis) if isinstance(axis, list) else axis
    return _f32(getattr(np, fn)(arr, axis=ax, keepdims=keepdims))


def sum(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over `axis` (symbolic, axis=None: over each sample)."""
    return _reduce("sum", x, axis, keepdims)


def mean(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """Mean over `axis` (symbolic, axis=None: over each sample)."""
    return _reduce("mean", x, axis, keepdims)


def max(x: Tensor, axis: int | Sequence[int] | None = None,  # noqa: A001
        keepdims: bool = False, initial: float | None = None) -> Tensor:
    """Maximum over `axis`; the gradient goes to the first maximal element."""
    if initial is not None:
        if isinstance(x, KerasTensor):
            raise ValueError("ops.max: initial is not supported on symbolic tensors")
        return _f32(np.max(_value(x, "x"), axis=axis, keepdims=keepdims, initial=initial))
    return _reduce("max", x, axis, keepdims)


def min(x: Tensor, axis: int | Sequence[int] | None = None,  # noqa: A001
        keepdims: bool = False, initial: float | None = None) -> Tensor:
    """Minimum over `axis`; the gradient goes to the first minimal element."""
    if initial is not None:
        if isinstance(x, KerasTensor):
            raise ValueError("ops.min: initial is not supported on symbolic tensors")
        return _f32(np.min(_value(x, "x"), axis=axis, keepdims=keepdims, initial=initial))
    return _reduce("min", x, axis, keepdims)


def argmax(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the first maximum along `axis` (int32 eagerly; float in a graph, where it
    passes no gradient). Symbolic with axis=None: the index in the flattened sample."""
    if not isinstance(x, KerasTensor):
        return np.argmax(_value(x, "x"), axis=axis, keepdims=keepdims).astype(np.int32)
    if axis is not None and isinstance(axis, (list, tuple)):
        raise TypeError(f"ops.argmax: axis must be one integer, got {axis!r}")
    attrs = {"keepdims": bool(keepdims)}
    if axis is not None:
        attrs["axis"] = _axes(x, axis, "argmax")[0]
    return _node("argmax", attrs, [x], _ol.argmax_rule, "argmax")


# --- shapes and products ---------------------------------------------------------------------
def matmul(x1: Tensor, x2: Tensor) -> Tensor:
    """Matrix product. Symbolic: per sample, samples of rank 1 or 2 (NumPy's rules: a vector
    operand loses its axis); a constant operand is the same matrix for every sample."""
    if not _symbolic(x1, x2):
        return _f32(np.matmul(_value(x1, "x1"), _value(x2, "x2")))
    args: list[Any] = []   # KerasTensor, WeightOperand or a constant array
    for k, x in enumerate((x1, x2)):
        if isinstance(x, KerasTensor):
            args.append(x)
            continue
        if isinstance(x, Weight):
            shape = x.shape
            while len(shape) > 2 and shape[0] == 1:
                shape = shape[1:]
            if len(shape) not in (1, 2):
                raise ValueError(f"ops.matmul: a weight operand must be a vector or a matrix, "
                                 f"got {x.path} of shape {x.shape}")
            args.append(_ol.WeightOperand(x, shape))
            continue
        arr = _value(x, f"x{k + 1}")
        while arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim not in (1, 2):
            raise ValueError(f"ops.matmul: a constant operand must be a vector or a matrix, got "
                             f"shape {arr.shape}")
        args.append(np.ascontiguousarray(arr))
    tensors = [a for a in args if isinstance(a, KerasTensor)]
    operands = [tensors.index(a) if isinstance(a, KerasTensor) else a for a in args]
    if len(tensors) == 2 and tensors[0] is tensors[1]:
        operands = [0, 0]
        tensors = tensors[:1]
    if not tensors:
        tensors = [_ol.trace_anchor()]
    layer = _ol.OpLayer("matmul", {}, operands, _ol.matmul_rule, "matmul")
    return layer(tensors if len(tensors) > 1 else tensors[0])


def transpose(x: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Permutes the axes. Symbolic: `axes` must keep the batch axis first, e.g. (0, 2, 1)."""
    if not isinstance(x, KerasTensor):
        return _f32(np.transpose(_value(x, "x"), axes))
    rank = len(x.shape)
    if axes is None:
        raise ValueError(f"ops.transpose: axes=None reverses every axis, the batch axis too; "
                         f"give axes that keep it first (e.g. (0, 2, 1)) for a tensor of shape "
                         f"{x.shape}")
    try:
        perm = [int(a) + rank if int(a) < 0 else int(a) for a in axes]
    except (TypeError, ValueError):
        raise TypeError(f"ops.transpose: axes must be integers, got {axes!r}") from None
    if sorted(perm) != list(range(rank)):
        raise ValueError(f"ops.transpose: axes {tuple(axes)} is not a permutation of the "
                         f"{rank} axes of a tensor of shape {x.shape}")
    if perm[0] != 0:
        raise ValueError(f"ops.transpose: axes {tuple(axes)} moves the batch axis of a tensor "
                         f"of shape {x.shape}; it must stay first")
    return _node("permute", {"dims": perm[1:]}, [x], _ol.permute_rule, "transpose")


def reshape(x: Tensor, newshape: Any) -> Tensor:   # an int or a sequence of ints (and None)
    """Reshapes. Symbolic: the first entry of `newshape` is the batch (-1 or None); the rest
    is the per-sample shape, where one entry may be -1."""
    if not isinstance(x, KerasTensor):
        return _f32(np.reshape(_value(x, "x"), newshape))
    if isinstance(newshape, numbers.Integral):
        newshape = (newshape,)
    newshape = tuple(newshape)
    if not newshape or newshape[0] not in (-1, None):
        raise ValueError(f"ops.reshape: newshape {newshape} must start with the batch axis as "
                         f"-1 or None (e.g. (-1, 4, 4)) for a tensor of shape {x.shape}")
    target = [int(d) if d is not None else -1 for d in newshape[1:]]
    size = int(np.prod(x.sample_shape))
    if target.count(-1) > 1 or _builtins.any(d == 0 or d < -1 for d in target):
        raise ValueError(f"ops.reshape: newshape {newshape} may have one -1 besides the batch "
                         f"and positive sizes otherwise")
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        if known == 0 or size % known:
            raise ValueError(f"ops.reshape: cannot reshape a tensor of shape {x.shape} to "
                             f"{newshape}")
        target[target.index(-1)] = size // known
    if int(np.prod(target)) != size:
        raise ValueError(f"ops.reshape: cannot reshape a tensor of shape {x.shape} "
                         f"({size} values per sample) to {newshape}")
    if not target:   # one value per sample: Keras's (None,), stored as (None, 1)
        return _ol.OpLayer("reshape", {"target_shape": [1]}, [0], _ol.reshape_rule, "reshape",
                           scalar_out=True)(x)
    return _node("reshape", {"target_shape": target}, [x], _ol.reshape_rule, "reshape")


def expand_dims(x: Tensor, axis: int) -> Tensor:
    """Inserts an axis of size 1 at `axis`."""
    if not isinstance(x, KerasTensor):
        return _f32(np.expand_dims(_value(x, "x"), axis))
    rank = len(x.shape)
    a = int(axis)
    full = a + rank + 1 if a < 0 else a
    if not 1 <= full <= rank:
        raise ValueError(f"ops.expand_dims: axis {axis} is out of range (or the batch axis) "
                         f"for a tensor of shape {x.shape}")
    s = [] if _ol.is_scalar_sample(x) else list(x.sample_shape)   # (None,): no sample axes
    s.insert(full - 1, 1)
    return reshape(x, [-1] + s)


def squeeze(x: Tensor, axis: int | Sequence[int] | None = None) -> Tensor:
    """Removes axes of size 1 (symbolic: never the batch axis)."""
    if not isinstance(x, KerasTensor):
        return _f32(np.squeeze(_value(x, "x"), axis))
    s = list(x.sample_shape)
    if axis is None:
        drop = [d for d, n in enumerate(s) if n == 1]
    else:
        drop = [p + len(s) for p in _axes(x, axis, "squeeze")]
        bad = [d for d in drop if s[d] != 1]
        if bad:
            raise ValueError(f"ops.squeeze: axis {bad[0] + 1} of a tensor of shape {x.shape} "
                             f"does not have size 1")
    return reshape(x, [-1] + [n for d, n in enumerate(s) if d not in drop])


def concatenate(xs: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Joins tensors along `axis` (symbolic: a per-sample axis; the default 0 is the batch)."""
    xs = list(xs)
    if not xs:
        raise ValueError("ops.concatenate: expected at least one tensor")
    if not _symbolic(*xs):
        return _f32(np.concatenate([_value(x, f"xs[{k}]") for k, x in enumerate(xs)], axis=axis))
    if not _builtins.all(isinstance(x, KerasTensor) for x in xs):
        raise TypeError("ops.concatenate: mixes symbolic tensors with arrays; make every entry "
                        "symbolic")
    ax = _axes(xs[0], axis, "concatenate")[0]
    if len(xs) == 1:
        return xs[0]
    return _node("concatenate", {"axis": ax}, xs, _ol.concatenate_rule, "concatenate")


def one_hot(x: Tensor, num_classes: int, axis: int = -1, dtype: Any = None,
            sparse: bool = False) -> Tensor:
    """One-hot rows of integer class indices (values out of [0, num_classes): zeros);
    passes no gradient."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes < 1:
        raise ValueError(f"ops.one_hot: num_classes must be a positive integer, got "
                         f"{num_classes!r}")
    if sparse:
        raise ValueError("ops.one_hot: sparse=True is not supported")
    if dtype not in (None, "float32", np.float32):
        raise ValueError(f"ops.one_hot: pynn computes in float32, got dtype={dtype!r}")
    if not isinstance(x, KerasTensor):
        from pynn.reference.ops import one_hot_forward

        arr = np.asarray(_value(x, "x"))
        out = one_hot_forward(arr.reshape((1,) + arr.shape), int(num_classes), np.float32)[0]
        return np.moveaxis(out, -1, axis) if axis != -1 else out
    if axis != -1:
        raise ValueError(f"ops.one_hot: on symbolic tensors the class axis must be the last "
                         f"(axis=-1), got axis={axis!r}")
    y = _node("one_hot", {"num_classes": int(num_classes)}, [x], _ol.one_hot_rule, "one_hot")
    if _ol.is_scalar_sample(x):   # one index per sample: (None, C) as in Keras, not (None, 1, C)
        y = reshape(y, (-1, int(num_classes)))
    return y


def cast(x: Tensor, dtype: Any) -> Tensor:
    """pynn computes in float32: a symbolic tensor is returned unchanged (float dtypes only)."""
    if isinstance(x, KerasTensor):
        if np.dtype(dtype).kind != "f":
            raise ValueError(f"ops.cast: symbolic tensors are float32; cannot cast to {dtype!r}")
        return x
    return np.asarray(x).astype(dtype)


def convert_to_tensor(x: Tensor, dtype: Any = None) -> Tensor:
    """A float32 array (a symbolic tensor is returned unchanged)."""
    if isinstance(x, KerasTensor):
        return x
    return _f32(x) if dtype is None else np.asarray(x, dtype=dtype)


def convert_to_numpy(x: Any) -> np.ndarray:
    """A NumPy array of `x` (Keras's ``ops.convert_to_numpy``); a weight gives a copy of its
    value. A symbolic tensor has no value yet: TypeError."""
    if isinstance(x, KerasTensor):
        raise TypeError("ops.convert_to_numpy: a symbolic tensor (from pynn.Input or a layer "
                        "call) has no value; build a pynn.Model from it and call predict")
    if isinstance(x, Weight):
        return x.value.copy()
    return np.asarray(x)


# --- activations -------------------------------------------------------------------------------
def _activation(name, x, **params):
    act, values = activations.resolve(name, **params)
    if isinstance(x, KerasTensor):
        return _node("activation", {"activation": act, "act_params": list(values)}, [x],
                     _ol.activation_rule, name)
    return activations.apply(_value(x, "x"), act, **params)


def relu(x: Tensor) -> Tensor:
    return _activation("relu", x)


def sigmoid(x: Tensor) -> Tensor:
    return _activation("sigmoid", x)


def tanh(x: Tensor) -> Tensor:
    return _activation("tanh", x)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    return _activation("elu", x, alpha=alpha)


def selu(x: Tensor) -> Tensor:
    return _activation("selu", x)


def gelu(x: Tensor, approximate: bool = True) -> Tensor:
    """Keras's ops.gelu: the tanh approximation by default."""
    return _activation("gelu", x, approximate=approximate)


def softplus(x: Tensor) -> Tensor:
    return _activation("softplus", x)


def softsign(x: Tensor) -> Tensor:
    return _activation("softsign", x)


def silu(x: Tensor) -> Tensor:
    return _activation("silu", x)


swish = silu


def leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    return _activation("leaky_relu", x, negative_slope=negative_slope)


def hard_sigmoid(x: Tensor) -> Tensor:
    return _activation("hard_sigmoid", x)


def hard_silu(x: Tensor) -> Tensor:
    return _activation("hard_silu", x)


hard_swish = hard_silu


def mish(x: Tensor) -> Tensor:
    return _activation("mish", x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along `axis` (symbolic: a per-sample axis; other than the last, it is moved
    last and back)."""
    if not isinstance(x, KerasTensor):
        arr = _value(x, "x")
        moved = np.moveaxis(arr, axis, -1)
        return np.ascontiguousarray(np.moveaxis(activations.apply(moved, "softmax"), -1, axis))
    if isinstance(axis, (list, tuple)):
        raise ValueError(f"ops.softmax: axis must be one integer, got {axis!r}")
    rank = len(x.sample_shape)
    if rank == 0:
        raise ValueError(f"ops.softmax: needs a per-sample axis; the tensor has shape {x.shape}")
    p = _axes(x, axis, "softmax")[0] + rank
    if p == rank - 1:
        return _activation("softmax", x)
    perm = [0] + [d + 1 for d in range(rank) if d != p] + [p + 1]
    back = [0] + [int(i) for i in np.argsort(perm[1:]) + 1]
    return transpose(_activation("softmax", transpose(x, perm)), back)


# --- operators on symbolic tensors -----------------------------------------------------------
def _same_shape_tensor(a, b):
    return isinstance(b, KerasTensor) and a.sample_shape == b.sample_shape


def _kt_add(self, other):
    if _same_shape_tensor(self, other):   # as before: the Add merge layer
        from pynn.layers.merging import Add

        return Add()([self, other])
    return add(self, other)


def _kt_sub(self, other):
    if _same_shape_tensor(self, other):
        from pynn.layers.merging import Subtract

        return Subtract()([self, other])
    return subtract(self, other)


def _kt_mul(self, other):
    if _same_shape_tensor(self, other):
        from pynn.layers.merging import Multiply

        return Multiply()([self, other])
    return multiply(self, other)


# (installed with setattr: their types are declared on KerasTensor itself)
_KT_OPERATORS: dict[str, Callable[..., Any]] = {
    "__add__": _kt_add,
    "__radd__": lambda self, other: add(other, self),
    "__sub__": _kt_sub,
    "__rsub__": lambda self, other: subtract(other, self),
    "__mul__": _kt_mul,
    "__rmul__": lambda self, other: multiply(other, self),
    "__truediv__": lambda self, other: divide(self, other),
    "__rtruediv__": lambda self, other: divide(other, self),
    "__neg__": lambda self: negative(self),
    "__pos__": lambda self: self,
    "__abs__": lambda self: abs(self),
    "__pow__": lambda self, other: power(self, other),
    "__rpow__": lambda self, other: power(other, self),
    "__matmul__": lambda self, other: matmul(self, other),
    "__rmatmul__": lambda self, other: matmul(other, self),
    "__gt__": lambda self, other: greater(self, other),
    "__ge__": lambda self, other: greater_equal(self, other),
    "__lt__": lambda self, other: less(self, other),
    "__le__": lambda self, other: less_equal(self, other),
}
for _name, _fn in _KT_OPERATORS.items():
    setattr(KerasTensor, _name, _fn)
del _name, _fn
# (== and != keep Python's identity meaning: tensors are used as dict keys and in lists)
