"""ONNX export: the model's inference graph written with the `onnx` package's helper API.

The exporter walks the flat `GraphSpec` the engine runs (nested models are already inlined
there) and writes each node as ONNX operators, in inference mode: dropout and the noise layers
are the identity, batch normalisation uses its moving statistics, rrelu its mean slope. pynn is
channels-last and ONNX's Conv and pooling are channels-first, so those are wrapped in two
Transposes.
Inputs and outputs keep pynn's shapes with a symbolic batch axis ("batch").

Recurrent layers become ONNX's RNN / LSTM / GRU, go_backwards direction "reverse"; a
Bidirectional layer is its two directions as two such nodes and its merge mode's own op
(merge_mode=None: two outputs); return_state adds Y_h (and Y_c). A mask (Embedding with
mask_zero=True, Masking) is computed inside the graph: each sample's unmasked steps are
gathered to the front and their count is the node's sequence_lens, then the outputs are
spread back over the masked steps (see `_masked_rnn`). That is exactly what pynn computes for
any mask: right padding (where sequence_lens alone would do), left padding and holes alike.

To support another op, add a function to `_OPS`: it receives the exporter, the node and the
names of its input tensors, and returns the name of its output tensor.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pynn.layers.ops_layer import is_scalar_sample

if TYPE_CHECKING:
    from pynn.models.model import Model

OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("export(format='onnx') needs the onnx package: pip install "
                          "'pynn[onnx]' (or pip install onnx)") from None
    return onnx


class _Writer:
    """Collects ONNX nodes and initializers with unique names."""

    def __init__(self, spec):
        self.onnx = _onnx()
        self.h = self.onnx.helper
        self.spec = spec
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._count = 0
        self._used: set[str] = set()

    def fresh(self, hint: str) -> str:
        # the counter alone could repeat a name ("ln" + "_3" and a layer named "ln_3")
        while True:
            self._count += 1
            name = f"{hint}_{self._count}"
            if name not in self._used:
                self._used.add(name)
                return name

    def const(self, value: Any, hint: str, dtype: Any = np.float32) -> str:
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype),
                                                            name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(self.h.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def param(self, node, k: int) -> np.ndarray:
        return self.spec.params[node.params[k]].value

    def rank(self, tid: int) -> int:
        return len(self.spec.shapes[tid]) + 1   # with the batch axis


# --- activations ------------------------------------------------------------------------------
def _act(w: _Writer, x: str, name: str, params: list[float], hint: str) -> str:
    """`name` applied to x (`params` in the core's order, see pynn.activations)."""
    p = list(params)
    if name == "linear":
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softsign": "Softsign",
              "selu": "Selu", "exponential": "Exp", "arctan": "Atan",
              "hard_silu": "HardSwish", "hard_swish": "HardSwish"}
    if name in simple:
        return w.op(simple[name], [x], hint)
    if name == "softmax":
        return w.op("Softmax", [x], hint, axis=-1)
    if name == "leaky_relu":
        return w.op("LeakyRelu", [x], hint, alpha=float(p[0]))
    if name == "rrelu":   # inference: the mean of U(lower, upper)
        return w.op("LeakyRelu", [x], hint, alpha=float((p[0] + p[1]) / 2))
    if name == "elu":
        return w.op("Elu", [x], hint, alpha=float(p[0]))
    if name == "hard_sigmoid":   # relu6(x + 3) / 6
        return w.op("HardSigmoid", [x], hint, alpha=1.0 / 6.0, beta=0.5)
    if name == "hard_tanh":
        return w.op("Clip", [x, w.const(p[0], "min"), w.const(p[1], "max")], hint)
    if name in ("soft_shrink", "hard_shrink"):
        return w.op("Shrink", [x], hint, lambd=float(p[0]),
                    bias=float(p[0]) if name == "soft_shrink" else 0.0)
    if name == "softplus":
        beta = float(p[0]) if p else 1.0
        if beta == 1.0:
            return w.op("Softplus", [x], hint)
        b = w.const(beta, "beta")
        return w.op("Div", [w.op("Softplus", [w.op("Mul", [x, b], hint)], hint), b], hint)
    if name in ("silu", "swish"):
        return w.op("Mul", [x, w.op("Sigmoid", [x], hint)], hint)
    if name == "mish":
        return w.op("Mul", [x, w.op("Tanh", [w.op("Softplus", [x], hint)], hint)], hint)
    if name == "tanh_shrink":
        return w.op("Sub", [x, w.op("Tanh", [x], hint)], hint)
    if name == "binary_step":
        ge = w.op("GreaterOrEqual", [x, w.const(0.0, "zero")], hint)
        return w.op("Cast", [ge], hint, to=w.onnx.TensorProto.FLOAT)
    if name == "gelu":
        half = w.const(0.5, "half")
        one = w.const(1.0, "one")
        if p and p[0]:   # tanh approximation
            cube = w.op("Mul", [w.op("Mul", [x, x], hint), x], hint)
            inner = w.op("Add", [x, w.op("Mul", [cube, w.const(0.044715, "c")], hint)], hint)
            t = w.op("Tanh", [w.op("Mul", [inner, w.const(math.sqrt(2 / math.pi), "k")], hint)],
                     hint)
        else:
            t = w.op("Erf", [w.op("Mul", [x, w.const(1 / math.sqrt(2), "k")], hint)], hint)
        return w.op("Mul", [w.op("Mul", [x, half], hint), w.op("Add", [t, one], hint)], hint)
    raise ValueError(f"activation {name!r} has no ONNX counterpart in pynn's exporter")


# --- ops --------------------------------------------------------------------------------------
def _dense(w, node, xs):
    kernel = w.const(w.param(node, 0), "kernel")
    bias = w.const(w.param(node, 1), "bias") if node.attrs.get("use_bias", True) else None
    if w.rank(node.inputs[0]) == 2:
        y = w.op("Gemm", [xs[0], kernel] + ([bias] if bias else []), node.name)
    else:
        y = w.op("MatMul", [xs[0], kernel], node.name)
        if bias:
            y = w.op("Add", [y, bias], node.name)
    return _act(w, y, node.attrs.get("activation", "linear"), node.attrs.get("act_params", []),
                node.name)


def _activation(w, node, xs):
    return _act(w, xs[0], node.attrs["activation"], node.attrs.get("act_params", []), node.name)


def _identity(w, node, xs):
    return w.op("Identity", [xs[0]], node.name)


def _to_channels_first(w, x, rank, hint):
    return w.op("Transpose", [x], hint, perm=[0, rank - 1, *range(1, rank - 1)])


def _to_channels_last(w, x, rank, hint):
    return w.op("Transpose", [x], hint, perm=[0, *range(2, rank), 1])


def _batchnorm(w, node, xs):
    a = node.attrs
    c = w.spec.shapes[node.inputs[0]][-1]
    k = 0
    gamma = beta = None
    if a.get("scale", True):
        gamma, k = w.param(node, k), k + 1
    if a.get("center", True):
        beta, k = w.param(node, k), k + 1
    mean, var = w.param(node, k), w.param(node, k + 1)
    ins = [w.const(gamma if gamma is not None else np.ones(c), "gamma"),
           w.const(beta if beta is not None else np.zeros(c), "beta"),
           w.const(mean, "moving_mean"), w.const(var, "moving_variance")]
    rank = w.rank(node.inputs[0])
    x = xs[0] if rank == 2 else _to_channels_first(w, xs[0], rank, node.name)
    y = w.op("BatchNormalization", [x, *ins], node.name, epsilon=float(a["epsilon"]))
    return y if rank == 2 else _to_channels_last(w, y, rank, node.name)


def _affine(w, node, shape):
    """(gamma, beta) of a layer/group normalization node as constants of `shape` (None when
    the layer has no scale / no center)."""
    k = 0
    out: list[str | None] = []
    for flag, hint in (("scale", "gamma"), ("center", "beta")):
        if node.attrs.get(flag, True):
            out.append(w.const(np.reshape(w.param(node, k), shape), hint))
            k += 1
        else:
            out.append(None)
    return out[0], out[1]


def _standardise(w, x, axes, eps, hint):
    """(x - mean) / sqrt(var + eps), the statistics taken over `axes` (with the batch axis),
    the variance the biased one as Keras computes it."""
    d = w.op("Sub", [x, w.op("ReduceMean", [x], hint, axes=axes, keepdims=1)], hint)
    var = w.op("ReduceMean", [w.op("Mul", [d, d], hint)], hint, axes=axes, keepdims=1)
    return w.op("Div", [d, w.op("Sqrt", [w.op("Add", [var, w.const(eps, "eps")], hint)], hint)],
                hint)


def _scale_shift(w, y, gamma, beta, hint):
    y = y if gamma is None else w.op("Mul", [y, gamma], hint)
    return y if beta is None else w.op("Add", [y, beta], hint)


def _layer_norm(w, node, xs):
    """ONNX LayerNormalization when the axes are the trailing ones (its only form); other
    axes through ReduceMean."""
    shape = list(w.spec.shapes[node.inputs[0]])
    red = sorted(int(a) % len(shape) + 1 for a in node.attrs["axes"])
    eps = float(node.attrs.get("epsilon", 1e-3))
    if red == list(range(red[0], len(shape) + 1)):
        gamma, beta = _affine(w, node, shape[red[0] - 1:])
        if gamma is None:
            gamma = w.const(np.ones(shape[red[0] - 1:]), "gamma")
        return w.op("LayerNormalization", [xs[0], gamma] + ([beta] if beta else []),
                    node.name, axis=red[0], epsilon=eps)
    bshape = [1] + [shape[a - 1] if a in red else 1 for a in range(1, len(shape) + 1)]
    gamma, beta = _affine(w, node, bshape)
    return _scale_shift(w, _standardise(w, xs[0], red, eps, node.name), gamma, beta,
                        node.name)


def _group_norm(w, node, xs):
    """The channels split into groups by a Reshape, standardised per sample and group, and
    scaled per channel (ONNX's GroupNormalization needs opset 18 and changed in 21)."""
    shape = list(w.spec.shapes[node.inputs[0]])
    ax = int(node.attrs.get("axis", -1)) % len(shape)
    groups = int(node.attrs["groups"])
    grouped = [0, *shape[:ax], groups, shape[ax] // groups, *shape[ax + 1:]]
    x = w.op("Reshape", [xs[0], w.const(grouped, "shape", np.int64)], node.name)
    red = [a for a in range(1, len(grouped)) if a != ax + 1]
    y = _standardise(w, x, red, float(node.attrs.get("epsilon", 1e-3)), node.name)
    y = w.op("Reshape", [y, w.const([0, *shape], "shape", np.int64)], node.name)
    bshape = [1] * (len(shape) + 1)
    bshape[ax + 1] = shape[ax]
    gamma, beta = _affine(w, node, bshape)
    return _scale_shift(w, y, gamma, beta, node.name)


def _prelu(w, node, xs):
    return w.op("PRelu", [xs[0], w.const(w.param(node, 0), "alpha")], node.name)


def _same_pads(in_sizes, kernel, strides, dilations):
    before, after = [], []
    for n, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


def _pads(node, in_sizes, kernel, strides, dilations):
    padding = node.attrs.get("padding", "valid")
    if padding == "same":
        return _same_pads(in_sizes, kernel, strides, dilations)
    if padding == "causal":
        return [(kernel[0] - 1) * dilations[0], 0]
    return [0] * (2 * len(kernel))


def _conv(w, node, xs):
    a = node.attrs
    kernel = w.param(node, 0)
    nsp = kernel.ndim - 2
    in_shape = w.spec.shapes[node.inputs[0]]
    ksize = list(kernel.shape[:nsp])
    strides = [int(s) for s in a.get("strides", [1] * nsp)]
    dil = [int(d) for d in a.get("dilation_rate", [1] * nsp)]
    # (k..., c/groups, f) -> (f, c/groups, k...)
    onnx_kernel = np.transpose(kernel, (nsp + 1, nsp, *range(nsp)))
    ins = [_to_channels_first(w, xs[0], nsp + 2, node.name), w.const(onnx_kernel, "kernel")]
    if a.get("use_bias", True):
        ins.append(w.const(w.param(node, 1), "bias"))
    y = w.op("Conv", ins, node.name, kernel_shape=ksize, strides=strides, dilations=dil,
             group=int(a.get("groups", 1)),
             pads=_pads(node, list(in_shape[:nsp]), ksize, strides, dil))
    y = _to_channels_last(w, y, nsp + 2, node.name)
    return _act(w, y, a.get("activation", "linear"), a.get("act_params", []), node.name)


def _pool(w, node, xs):
    a = node.attrs
    in_shape = w.spec.shapes[node.inputs[0]]
    nsp = len(in_shape) - 1
    size = [int(s) for s in a["pool_size"]]
    strides = [int(s) for s in (a.get("strides") or size)]
    kind = "MaxPool" if node.op == "max_pool" else "AveragePool"
    y = w.op(kind, [_to_channels_first(w, xs[0], nsp + 2, node.name)], node.name,
             kernel_shape=size, strides=strides,
             pads=_pads(node, list(in_shape[:nsp]), size, strides, [1] * nsp))
    return _to_channels_last(w, y, nsp + 2, node.name)


def _global_pool(w, node, xs):
    rank = w.rank(node.inputs[0])
    fn = "ReduceMean" if node.attrs.get("fn", "avg") == "avg" else "ReduceMax"
    return w.op(fn, [xs[0]], node.name, axes=list(range(1, rank - 1)),
                keepdims=int(bool(node.attrs.get("keepdims", False))))


def _merge(w, node, xs):
    kind = {"add": "Sum", "average": "Mean", "maximum": "Max", "minimum": "Min"}.get(node.op)
    if kind is not None:
        return w.op(kind, xs, node.name)
    if node.op == "subtract":
        return w.op("Sub", xs, node.name)
    y = xs[0]
    for x in xs[1:]:
        y = w.op("Mul", [y, x], node.name)
    return y


def _concatenate(w, node, xs):
    axis = int(node.attrs.get("axis", -1))
    return w.op("Concat", xs, node.name, axis=axis if axis < 0 else axis + 1)


def _reshape(w, node, xs):
    shape = [0, *w.spec.shapes[node.outputs[0]]]
    return w.op("Reshape", [xs[0], w.const(shape, "shape", np.int64)], node.name)


def _flatten(w, node, xs):
    return w.op("Flatten", [xs[0]], node.name, axis=1)


def _permute(w, node, xs):
    return w.op("Transpose", [xs[0]], node.name, perm=[0, *[int(d) for d in node.attrs["dims"]]])


def _repeat_vector(w, node, xs):
    y = w.op("Unsqueeze", [xs[0], w.const([1], "axes", np.int64)], node.name)
    return w.op("Tile", [y, w.const([1, int(node.attrs["n"]), 1], "repeats", np.int64)],
                node.name)


def _pad_crop(w, node, xs):
    """Slice for the cropped ends, then Pad (zeros) for the padded ones; batch axis untouched."""
    before = [int(v) for v in node.attrs["before"]]
    after = [int(v) for v in node.attrs["after"]]
    shape = w.spec.shapes[node.inputs[0]]
    y = xs[0]
    if any(v < 0 for v in before + after):
        starts = [max(0, -b) for b in before]
        ends = [n - max(0, -a) for n, a in zip(shape, after)]
        y = w.op("Slice", [y, w.const(starts, "starts", np.int64),
                           w.const(ends, "ends", np.int64),
                           w.const(list(range(1, len(shape) + 1)), "axes", np.int64)], node.name)
    if any(v > 0 for v in before + after):
        pads = [0, *[max(0, b) for b in before], 0, *[max(0, a) for a in after]]
        y = w.op("Pad", [y, w.const(pads, "pads", np.int64)], node.name)
    return y if y != xs[0] else _identity(w, node, xs)


def _dot(w, node, xs):
    a_ax, b_ax = (int(v) for v in node.attrs["axes"])
    ra, rb = w.rank(node.inputs[0]), w.rank(node.inputs[1])
    ins = list(xs)
    if node.attrs.get("normalize"):
        ins = [w.op("LpNormalization", [ins[0]], node.name, axis=a_ax, p=2),
               w.op("LpNormalization", [ins[1]], node.name, axis=b_ax, p=2)]
    letters = iter("abcdefghijklm")
    la = ["n"] + [next(letters) for _ in range(ra - 1)]
    lb = ["n"] + [next(letters) for _ in range(rb - 1)]
    lb[b_ax] = la[a_ax]
    out = [x for i, x in enumerate(la) if i != a_ax] + [x for i, x in enumerate(lb)
                                                          if i not in (0, b_ax)]
    y = w.op("Einsum", ins, node.name, equation=f"{''.join(la)},{''.join(lb)}->{''.join(out)}")
    if len(out) == 1:   # Keras keeps a feature axis: (batch, 1)
        y = w.op("Unsqueeze", [y, w.const([1], "axes", np.int64)], node.name)
    return y


# --- pynn.ops (custom layers and traced code) --------------------------------------------------
def _aligned(w, node, xs):
    """The operands with 1-axes inserted after the batch axis so that all have the output's
    rank (pynn broadcasts per-sample shapes; ONNX aligns whole tensors from the right)."""
    rank = w.rank(node.outputs[0])
    out = []
    for tid, x in zip(node.inputs, xs):
        extra = rank - w.rank(tid)
        out.append(x if extra <= 0 else w.op(
            "Unsqueeze", [x, w.const(list(range(1, 1 + extra)), "axes", np.int64)], node.name))
    return out


def _as_spec_shape(w, node, y):
    return w.op("Reshape", [y, w.const([0, *w.spec.shapes[node.outputs[0]]], "shape", np.int64)],
                node.name)


_UNARY = {"negative": "Neg", "sqrt": "Sqrt", "exp": "Exp", "log": "Log", "abs": "Abs",
          "sign": "Sign", "reciprocal": "Reciprocal"}
_BINARY = {"add": "Add", "subtract": "Sub", "multiply": "Mul", "divide": "Div",
           "maximum": "Max", "minimum": "Min", "power": "Pow"}
_COMPARE = {"equal": "Equal", "greater": "Greater", "greater_equal": "GreaterOrEqual",
            "less": "Less", "less_equal": "LessOrEqual"}


def _unary(w, node, xs):
    a, x = node.attrs, xs[0]
    fn = a["fn"]
    if fn in _UNARY:
        return w.op(_UNARY[fn], [x], node.name)
    if fn == "square":
        return w.op("Mul", [x, x], node.name)
    if fn == "clip":
        lo = "" if a.get("min") is None else w.const(a["min"], "min")
        hi = "" if a.get("max") is None else w.const(a["max"], "max")
        return w.op("Clip", [x, lo, hi], node.name)
    if fn == "power":
        return w.op("Pow", [x, w.const(a["exponent"], "exponent")], node.name)
    raise ValueError(f"unary {fn!r} has no ONNX counterpart in pynn's exporter")


def _apply(w, fn, a, b, hint):
    if fn in _BINARY:
        return w.op(_BINARY[fn], [a, b], hint)
    if fn in _COMPARE or fn == "not_equal":
        y = w.op(_COMPARE.get(fn, "Equal"), [a, b], hint)
        if fn == "not_equal":
            y = w.op("Not", [y], hint)
        return w.op("Cast", [y], hint, to=w.onnx.TensorProto.FLOAT)   # pynn's 0.0 / 1.0
    raise ValueError(f"binary {fn!r} has no ONNX counterpart in pynn's exporter")


def _binary(w, node, xs):
    a, b = _aligned(w, node, xs)
    return _apply(w, node.attrs["fn"], a, b, node.name)


def _binary_scalar(w, node, xs):
    c = w.const(node.attrs["scalar"], "scalar")
    a, b = (c, xs[0]) if node.attrs.get("reverse") else (xs[0], c)
    return _apply(w, node.attrs["fn"], a, b, node.name)


def _reduce(w, node, xs):
    a = node.attrs
    rank = w.rank(node.inputs[0]) - 1
    axes = sorted({(ax + rank if ax < 0 else ax) + 1 for ax in a["axes"]})
    if not axes:
        return _as_spec_shape(w, node, xs[0])
    kind = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax",
            "min": "ReduceMin"}[a["fn"]]
    keep = int(bool(a.get("keepdims", False)))
    if kind == "ReduceSum":   # its axes are an input from opset 13 on
        y = w.op(kind, [xs[0], w.const(axes, "axes", np.int64)], node.name, keepdims=keep)
    else:
        y = w.op(kind, [xs[0]], node.name, axes=axes, keepdims=keep)
    return _as_spec_shape(w, node, y)   # a value per sample is (batch, 1) in pynn


def _matmul(w, node, xs):
    a, b = xs
    if w.rank(node.inputs[0]) == 2:
        a = w.op("Unsqueeze", [a, w.const([1], "axes", np.int64)], node.name)
    if w.rank(node.inputs[1]) == 2:
        b = w.op("Unsqueeze", [b, w.const([2], "axes", np.int64)], node.name)
    return _as_spec_shape(w, node, w.op("MatMul", [a, b], node.name))


def _where(w, node, xs):
    cond, a, b = _aligned(w, node, xs)
    cond = w.op("Cast", [cond], node.name, to=w.onnx.TensorProto.BOOL)
    return w.op("Where", [cond, a, b], node.name)


def _per_sample(w, node, xs, value):
    """`value` (one sample's tensor) repeated over the batch of the node's input."""
    shape = list(w.spec.shapes[node.outputs[0]])
    v = w.const(np.asarray(value, dtype=np.float32).reshape(shape), "value")
    batch = w.op("Shape", [xs[0]], node.name, start=0, end=1)
    full = w.op("Concat", [batch, w.const(shape, "shape", np.int64)], node.name, axis=0)
    return w.op("Expand", [v, full], node.name)


def _variable(w, node, xs):
    return _per_sample(w, node, xs, w.param(node, 0))


def _constant(w, node, xs):
    return _per_sample(w, node, xs, node.attrs["value"])


def _embedding(w, node, xs):
    # pynn feeds indices as float32; ONNX's Gather takes integers
    idx = w.op("Cast", [xs[0]], node.name, to=w.onnx.TensorProto.INT64)
    return w.op("Gather", [w.const(w.param(node, 0), "embeddings"), idx], node.name, axis=0)


_RNN_ACTS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}


def _gate_blocks(a, order, units):
    """The gate blocks of a Keras (…, k*units) array taken in ONNX's `order`."""
    return np.concatenate([a[..., g * units:(g + 1) * units] for g in order], axis=-1)


def _rnn(w, node, xs):
    """SimpleRNN / LSTM / GRU as ONNX's RNN / LSTM / GRU (time-major layout). Keras's LSTM
    gates are i, f, c, o and ONNX's i, o, f, c; GRU's z, r, h agree; a GRU with reset_after
    is ONNX's linear_before_reset. go_backwards is direction "reverse" (a Bidirectional
    layer's two directions are two such nodes, merged by the merge's own op); return_state
    appends Y_h (and Y_c) as pynn's rnn op appends them, for its "slice" nodes to split.
    A mask (node.inputs[1]) is read with `_masked_rnn`."""
    a = node.attrs
    acts = [a.get("recurrent_activation"), a["activation"]] if a["cell"] != "simple" \
        else [a["activation"]]
    if a["cell"] == "lstm":
        acts.append(a["activation"])
    if any(act not in _RNN_ACTS for act in acts):
        raise ValueError(f"recurrent activations {acts} have no ONNX counterpart (ONNX takes "
                         f"{sorted(_RNN_ACTS)} here)")
    u = int(a["units"])
    kernel, rec = w.param(node, 0), w.param(node, 1)
    bias = w.param(node, 2) if a.get("use_bias", True) else None
    kind, order, extra = {"simple": ("RNN", [0], {}), "lstm": ("LSTM", [0, 3, 1, 2], {}),
                          "gru": ("GRU", [0, 1, 2], {})}[a["cell"]]
    gates = len(order)
    wb = np.zeros(gates * u, np.float32)
    rb = np.zeros(gates * u, np.float32)
    if bias is not None and bias.ndim == 2:   # GRU reset_after: input and recurrent biases
        wb, rb = _gate_blocks(bias[0], order, u), _gate_blocks(bias[1], order, u)
    elif bias is not None:
        wb = _gate_blocks(bias, order, u)
    if a["cell"] == "gru":
        extra = {"linear_before_reset": int(bool(a.get("reset_after", True)))}
    weights = [w.const(_gate_blocks(kernel, order, u).T[None], "W"),
               w.const(_gate_blocks(rec, order, u).T[None], "R"),
               w.const(np.concatenate([wb, rb])[None], "B")]

    def run(x, lens, direction):
        """The ONNX node on x (batch, steps, features): Y as (batch, steps, units) in time
        order, Y_h (and Y_c) as (batch, units)."""
        ins = [w.op("Transpose", [x], node.name, perm=[1, 0, 2]), *weights]
        if lens is not None:
            ins.append(lens)
        ys = [w.fresh(f"{node.name}_Y"), w.fresh(f"{node.name}_Y_h")]
        if kind == "LSTM":
            ys.append(w.fresh(f"{node.name}_Y_c"))
        w.nodes.append(w.h.make_node(kind, ins, ys, name=w.fresh(node.name), hidden_size=u,
                                     direction=direction,
                                     activations=[_RNN_ACTS[act] for act in acts], **extra))
        y = w.op("Squeeze", [ys[0], w.const([1], "axes", np.int64)], node.name)
        return (w.op("Transpose", [y], node.name, perm=[1, 0, 2]),
                *[w.op("Squeeze", [s, w.const([0], "axes", np.int64)], node.name)
                  for s in ys[1:]])

    backwards = bool(a.get("go_backwards"))
    if len(node.inputs) > 1:
        seq, *states = _masked_rnn(w, node, xs, run)
    else:
        seq, *states = run(xs[0], None, "reverse" if backwards else "forward")
        if backwards and not a.get("time_order"):   # pynn: in the order the steps were read
            seq = _reverse_steps(w, seq, node)
    if not a.get("return_sequences"):
        seq = states[0]
    if not a.get("return_state"):
        return seq
    parts = [seq if a.get("return_sequences") else _steps_axis(w, seq, node)]
    parts += [_steps_axis(w, s, node) for s in states]
    return w.op("Concat", parts, node.name, axis=1)


def _steps_axis(w, x, node):
    return w.op("Unsqueeze", [x, w.const([1], "axes", np.int64)], node.name)


def _reverse_steps(w, x, node):
    """x (batch, steps, ...) with its steps in reverse order."""
    return w.op("Slice", [x, w.const([-1], "starts", np.int64),
                          w.const([-(2**62)], "ends", np.int64),
                          w.const([1], "axes", np.int64), w.const([-1], "steps", np.int64)],
                node.name)


def _gather_steps(w, x, idx, node):
    """x (batch, steps, n) with the steps of each sample taken at idx (batch, steps)."""
    full = w.op("Expand", [_unsqueeze_last(w, idx, node), w.op("Shape", [x], node.name)],
                node.name)
    return w.op("GatherElements", [x, full], node.name, axis=1)


def _unsqueeze_last(w, x, node):
    return w.op("Unsqueeze", [x, w.const([2], "axes", np.int64)], node.name)


def _masked_rnn(w, node, xs, run):
    """A masked recurrent layer. pynn skips a masked step (the state carries over), which is
    running the cell over the unmasked steps alone: the graph moves each sample's unmasked
    steps to the front (in order), runs the ONNX node with sequence_lens = their count, and
    spreads the outputs back (a masked step shows the last state, or 0 with
    zero_output_for_mask). This holds for any mask, not only right padding. go_backwards
    reverses the steps (and the mask) first and runs forward."""
    a = node.attrs
    x, m = xs
    steps = int(w.spec.shapes[node.inputs[0]][0])
    m = w.op("Cast", [w.op("Cast", [m], node.name, to=w.onnx.TensorProto.BOOL)], node.name,
             to=w.onnx.TensorProto.FLOAT)   # any non-zero value keeps the step, as in pynn
    if a.get("go_backwards"):
        x, m = _reverse_steps(w, x, node), _reverse_steps(w, m, node)
    # sort key: the unmasked steps first, each group in step order (TopK, smallest first)
    late = w.op("Mul", [w.op("Sub", [w.const(1.0, "one"), m], node.name),
                        w.const(float(steps), "steps")], node.name)
    key = w.op("Add", [late, w.const(np.arange(steps, dtype=np.float32), "t")], node.name)
    _, order = _topk(w, key, steps, node)
    x = _gather_steps(w, x, order, node)
    count = w.op("ReduceSum", [m, w.const([1], "axes", np.int64)], node.name, keepdims=0)
    lens = w.op("Cast", [w.op("Max", [count, w.const(1.0, "one")], node.name)], node.name,
                to=w.onnx.TensorProto.INT32)   # ONNX runs at least one step
    seq, *states = run(x, lens, "forward")
    seen = w.op("Cast", [w.op("Greater", [count, w.const(0.0, "zero")], node.name)],
                node.name, to=w.onnx.TensorProto.FLOAT)
    seen = w.op("Unsqueeze", [seen, w.const([1], "axes", np.int64)], node.name)
    states = [w.op("Mul", [s, seen], node.name) for s in states]   # all masked: zero state
    if a.get("return_sequences"):
        done = w.op("CumSum", [m, w.const(1, "axis", np.int64)], node.name)
        at = w.op("Max", [w.op("Sub", [done, w.const(1.0, "one")], node.name),
                          w.const(0.0, "zero")], node.name)
        seq = _gather_steps(w, seq, w.op("Cast", [at], node.name,
                                          to=w.onnx.TensorProto.INT64), node)
        keep = m if a.get("zero_output_for_mask") else w.op(
            "Cast", [w.op("Greater", [done, w.const(0.0, "zero")], node.name)], node.name,
            to=w.onnx.TensorProto.FLOAT)
        seq = w.op("Mul", [seq, _unsqueeze_last(w, keep, node)], node.name)
        if a.get("go_backwards") and a.get("time_order"):
            seq = _reverse_steps(w, seq, node)
    return (seq, *states)


def _topk(w, key, k, node):
    vals, idx = w.fresh(f"{node.name}_order_v"), w.fresh(f"{node.name}_order")
    w.nodes.append(w.h.make_node("TopK", [key, w.const([k], "k", np.int64)], [vals, idx],
                                 name=w.fresh(node.name), axis=1, largest=0, sorted=1))
    return vals, idx


def _slice(w, node, xs):
    b, n = int(node.attrs["begin"]), int(node.attrs["size"])
    return w.op("Slice", [xs[0], w.const([b], "starts", np.int64),
                          w.const([b + n], "ends", np.int64), w.const([1], "axes", np.int64)],
                node.name)


def _argmax(w, node, xs):
    """Index of the first maximum (ONNX's ArgMax also takes the first), as float32."""
    a, x = node.attrs, xs[0]
    if a.get("axis") is None:   # over the whole sample
        x = w.op("Reshape", [x, w.const([0, -1], "shape", np.int64)], node.name)
        axis = 1
    else:
        axis = a["axis"] + w.rank(node.inputs[0])
    y = w.op("ArgMax", [x], node.name, axis=axis, keepdims=int(bool(a.get("keepdims"))))
    y = w.op("Cast", [y], node.name, to=w.onnx.TensorProto.FLOAT)
    return _as_spec_shape(w, node, y)


def _one_hot(w, node, xs):
    """pynn's one_hot: the index truncated toward 0; out of range (or NaN): a row of zeros.
    Written as a comparison with 0..n-1 rather than ONNX's OneHot, whose negative indices
    count from the end."""
    x = xs[0]
    t = w.op("Mul", [w.op("Sign", [x], node.name),
                     w.op("Floor", [w.op("Abs", [x], node.name)], node.name)], node.name)
    t = w.op("Unsqueeze", [t, w.const([-1], "axes", np.int64)], node.name)
    n = int(node.attrs["num_classes"])
    hit = w.op("Equal", [t, w.const(np.arange(n, dtype=np.float32), "classes")], node.name)
    return _as_spec_shape(w, node, w.op("Cast", [hit], node.name, to=w.onnx.TensorProto.FLOAT))


_Op = Callable[[_Writer, Any, list[str]], str]
_OPS: dict[str, _Op] = {
    "dense": _dense, "activation": _activation, "dropout": _identity,
    "identity": _identity, "batchnorm": _batchnorm, "prelu": _prelu, "conv": _conv,
    "max_pool": _pool, "avg_pool": _pool, "global_pool": _global_pool,
    "add": _merge, "subtract": _merge, "multiply": _merge, "average": _merge,
    "maximum": _merge, "minimum": _merge, "concatenate": _concatenate, "reshape": _reshape,
    "flatten": _flatten, "permute": _permute, "repeat_vector": _repeat_vector, "dot": _dot,
    "unary": _unary, "binary": _binary, "binary_scalar": _binary_scalar, "reduce": _reduce,
    "matmul": _matmul, "where": _where, "variable": _variable, "constant": _constant,
    "embedding": _embedding, "rnn": _rnn, "slice": _slice,
    "argmax": _argmax, "one_hot": _one_hot,
    # at inference the noise layers and the activity penalty leave x as it is
    "noise": _identity, "activity_regularization": _identity,
    "layer_norm": _layer_norm, "group_norm": _group_norm,
    "pad_crop": _pad_crop,
}


def _image_augment(w: _Writer, node: Any, xs: list[str]) -> str:
    # RandomFlip/Translation/Rotation/Zoom are the identity at inference; the plain affine
    # resampling (kind "affine") has no ONNX counterpart here
    if node.attrs.get("kind") == "affine":
        raise ValueError(f"{node.name}: the affine image transform cannot be exported to ONNX")
    return _identity(w, node, xs)


_OPS["image_augment"] = _image_augment


def export_onnx(model: Model, filepath: str | os.PathLike[str], verbose: bool = False,
                opset_version: int | None = None) -> None:
    """Writes `model` as an ONNX file (opset `OPSET`) that ONNX Runtime runs, computing what
    `model.predict` computes. A layer whose op has no ONNX counterpart here is refused with a
    ValueError naming it. The file is written atomically."""
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"filepath: expected a str or os.PathLike, got {type(filepath).__name__}")
    path = os.fspath(filepath)
    opset = OPSET if opset_version is None else int(opset_version)
    if opset < OPSET:
        raise ValueError(f"opset_version: pynn writes opset {OPSET} or newer, got {opset}")
    model._require_built("export")
    spec = model._build_spec()
    w = _Writer(spec)
    onnx = w.onnx
    names: dict[int, str] = {}
    graph_inputs: list[Any] = []
    in_names = getattr(model, "input_names", None) or []
    for i, tid in enumerate(spec.inputs):
        name = in_names[i] if i < len(in_names) else f"input_{i}"
        names[tid] = name
        graph_inputs.append(onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, ["batch", *spec.shapes[tid]]))
    out_names = getattr(model, "output_names", None) or []
    w._used.update(names.values(), out_names)   # no inner tensor takes a graph's name
    for node in spec.nodes:
        fn = _OPS.get(node.op)
        if fn is None:
            raise ValueError(f"export: layer {node.name!r} (op {node.op!r}) has no ONNX "
                             f"counterpart in pynn's exporter; it exports "
                             f"{sorted(_OPS)}")
        try:
            out = fn(w, node, [names[t] for t in node.inputs])
        except ValueError as exc:
            raise ValueError(f"export: layer {node.name!r}: {exc}") from None
        names[node.outputs[0]] = out
    graph_outputs: list[Any] = []
    for j, tid in enumerate(spec.outputs):
        name = out_names[j] if j < len(out_names) else f"output_{j}"
        if name in {v.name for v in graph_inputs} or any(name == g.name for g in graph_outputs):
            name = f"output_{j}"
        shape = ["batch", *spec.shapes[tid]]
        if j < len(model._outputs) and is_scalar_sample(model._outputs[j]):
            # a value per sample: (batch,) as predict returns it, not the engine's (batch, 1)
            shape = ["batch"]
            w.nodes.append(onnx.helper.make_node(
                "Reshape", [names[tid], w.const([-1], "shape", np.int64)], [name],
                name=f"{name}_out"))
        else:
            w.nodes.append(onnx.helper.make_node("Identity", [names[tid]], [name],
                                                 name=f"{name}_out"))
        graph_outputs.append(onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, shape))
    graph = onnx.helper.make_graph(w.nodes, model.name, graph_inputs, graph_outputs, w.inits)
    proto = onnx.helper.make_model(graph, producer_name="pynn",
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    proto.ir_version = min(proto.ir_version, 8)   # readable by ONNX Runtime releases of 2023 on
    onnx.checker.check_model(proto)
    from pynn.models.keras_format import _atomic_write, _check_target

    _check_target(path, ".onnx", True)
    data = proto.SerializeToString()
    _atomic_write(path, lambda fh: fh.write(data))
    if verbose:
        print(f"Saved ONNX model to {path} ({len(spec.nodes)} pynn ops, {len(w.nodes)} ONNX "
              f"nodes, opset {opset})")


def _conv_transpose(w, node, xs):
    """ConvTranspose between two Transposes. ONNX pads crop the full output ((L - 1) s +
    span per axis); where pynn's output reaches past it (Keras's output_padding, or "same"
    with a stride larger than the kernel) ONNX's output_padding adds the zeros at the end."""
    from pynn.layers.conv_transpose import transposed_crop

    a = node.attrs
    kernel = w.param(node, 0)
    nsp = kernel.ndim - 2
    in_sizes = w.spec.shapes[node.inputs[0]][:nsp]
    out_sizes = w.spec.shapes[node.outputs[0]][:nsp]
    ksize = list(kernel.shape[:nsp])
    strides = [int(s) for s in a.get("strides", [1] * nsp)]
    dil = [int(d) for d in a.get("dilation_rate", [1] * nsp)]
    opad = list(a.get("output_padding") or [None] * nsp)
    before, after, extra = [], [], []
    for n, o, k, s, d, p in zip(in_sizes, out_sizes, ksize, strides, dil, opad):
        full = (n - 1) * s + (k - 1) * d + 1
        crop = transposed_crop(k, s, d, a.get("padding", "valid"), p)
        before.append(crop)
        after.append(max(full - crop - o, 0))
        extra.append(max(o - (full - crop), 0))
    # (k..., f, c) -> (c, f, k...): ONNX's (C, M / group, k...)
    onnx_kernel = np.transpose(kernel, (nsp + 1, nsp, *range(nsp)))
    ins = [_to_channels_first(w, xs[0], nsp + 2, node.name), w.const(onnx_kernel, "kernel")]
    if a.get("use_bias", True):
        ins.append(w.const(w.param(node, 1), "bias"))
    y = w.op("ConvTranspose", ins, node.name, kernel_shape=ksize, strides=strides,
             dilations=dil, pads=before + after, output_padding=extra)
    y = _to_channels_last(w, y, nsp + 2, node.name)
    return _act(w, y, a.get("activation", "linear"), a.get("act_params", []), node.name)


_OPS["conv_transpose"] = _conv_transpose
