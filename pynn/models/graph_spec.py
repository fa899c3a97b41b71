"""The flat graph every model compiles to: the contract between the Python face, the C++
engine (`pynn._core.Graph`) and the NumPy executor (`pynn.reference.graph`).

A model (Sequential, functional, nested, or traced from a subclass) is lowered to a
`GraphSpec`: a list of primitive nodes in topological order over numbered tensors. Nested
models are inlined; a layer called twice gives two nodes that name the same parameters.

Tensors have a per-sample shape (the batch axis is implicit and always first, channels
last). Parameters are float32 NumPy arrays owned by the layers (`Weight.value`); the engine
reads and writes them in place, so every model that contains a layer sees the same weights.

Node ops and their attributes (``attrs``). "x" is the first input; shapes exclude the batch.

================  ==========================================  ==================================
op                attrs                                       params / shapes
================  ==========================================  ==================================
dense             units, activation, act_params, use_bias      [kernel (in, units), bias (units)]
                  (activation may be "softmax")                x (..., in) -> (..., units)
                  compute_dtype: "float32" (default) or "bfloat16" (products on the bf16 GEMM)
activation        activation, act_params, seed                 x -> same shape; "softmax" is
                  (rrelu draws slopes from seed in training)   over the last axis
dropout           rate, seed                                   x -> same (identity at inference)
batchnorm         momentum, epsilon, center, scale             [gamma?, beta?, moving_mean,
                                                               moving_variance] (c,), axis -1
prelu             -                                            [alpha (shape of x)]
conv              strides, padding (valid, same, causal),      [kernel (kw, c/groups, f) or
                  dilation_rate, groups, activation,           (kh, kw, c/groups, f), bias (f)]
                  act_params, use_bias, compute_dtype (as      (w, c) -> (ow, f),
                  dense: forward, dx and dW in bf16)           (h, w, c) -> (oh, ow, f)
conv_transpose    strides, padding (valid, same),              [kernel (kw, f, c) or
                  output_padding ([] for Keras's None),        (kh, kw, f, c), bias (f)]
                  dilation_rate, activation, act_params,       (w, c) -> (ow, f); twin in
                  use_bias                                     reference/conv_transpose.py
max_pool,         pool_size, strides (default pool_size),      (w, c) -> (ow, c),
avg_pool          padding (valid, same)                        (h, w, c) -> (oh, ow, c)
global_pool       fn (avg, max), keepdims                      (..., c) -> (c,) or (1, .., 1, c)
add, subtract,    -                                            n inputs of one shape -> that
multiply,                                                      shape (subtract: exactly 2)
average, maximum,
minimum
concatenate       axis (per-sample axis, negative from end)    inputs equal but on axis
reshape           target_shape (per-sample, no -1 left)        a view of x
flatten           -                                            a view of x: (prod(shape),)
identity          -                                            a view of x
permute           dims (per-sample axes, 1-based as Keras)     a copy of x with axes permuted
repeat_vector     n                                            (d,) -> (n, d)
dot               axes (two per-sample axes, 1-based),         rank-1 or rank-2 samples
                  normalize
unary             fn (negative, square, sqrt, exp, log, abs,   x -> same shape
                  sign, reciprocal, clip, power), min, max,
                  exponent
binary            fn (add, subtract, multiply, divide,         a, b broadcast as NumPy ->
                  maximum, minimum, power, equal, not_equal,   the broadcast shape
                  greater(_equal), less(_equal))
binary_scalar     fn, scalar, reverse                          x -> same shape
reduce            fn (sum, mean, max, min), axes, keepdims     x -> x without (or 1 on) axes
matmul            -                                            rank-1 or rank-2 samples
where             -                                            cond, a, b broadcast -> shape
one_hot           num_classes                                  (*s) -> (*s, num_classes)
argmax            axis, keepdims                               x -> x without axis
constant          value, shape                                 the same tensor for every sample
variable          shape (optional)                             [w]: w as every sample's tensor
embedding         input_dim, output_dim                        [embeddings (V, D)]: (*s) -> (*s, D)
rnn               cell (simple, lstm, gru), units,             [kernel (F, G u), recurrent_kernel
                  activation, recurrent_activation, use_bias,  (u, G u), bias (G u) or (2, 3 u)]
                  return_sequences, return_state,              x (T, F) [, mask (T,)] -> (T, u),
                  go_backwards, reset_after, time_order,       (u,) or with return_state
                  zero_output_for_mask, dropout,               (rows + states, u)
                  recurrent_dropout, seed, compute_dtype (as
                  dense: every product, forward and BPTT)
slice             begin, size                                  rows of the first axis
pad_crop          before, after (one int per per-sample axis;  x (*s) -> (*(s + before +
                  > 0 pads zeros, < 0 crops)                   after)); twin reference/pad_crop
layer_norm        axes (per-sample), epsilon, center, scale    [gamma?, beta?] of the sizes on
                                                               axes; x -> same shape
group_norm        groups, axis, epsilon, center, scale         [gamma?, beta?] (channels,)
noise             kind (gaussian_noise, gaussian_dropout,      x -> same (identity at inference)
                  alpha_dropout), value (stddev/rate), seed
activity_         l1, l2 (adds (l1 sum|x| + l2 sum x^2) /     x -> same
regularization    batch to the loss)
image_augment     kind (flip, translation, rotation, zoom:     x (h, w, c) -> same (random kinds:
                  random per sample and step, training only;   identity at inference);
                  affine: input 1 gives the transforms),       affine: [x, transform (8,)];
                  lower, upper, mode, same_zoom, fill_mode,    twin reference/augment
                  interpolation, fill_value, seed,
                  channels_first, force_training
================  ==========================================  ==================================

The ops under `pynn.ops` (unary ... variable) are written out in pynn/reference/ops.py, their
NumPy twins; conv and the pooling ops (channels_last, Keras's padding rules) in
pynn/reference/conv.py. Losses are attached per output: ``(kind, from_logits, delta,
weight)`` with the kinds of `pynn.losses` (mean_squared_error, mean_absolute_error, huber,
binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy) or
``mean_of_output``, the mean of the output itself (the per-sample values of a traced custom
loss; no target); the total loss is the weighted sum plus the L1/L2 penalties of trainable
weights. A fifth entry, ``mask_output``, names another output (without a loss) holding one
value per loss row of a sample: the loss then counts only the rows whose value is nonzero,
as Keras weighs a loss by the mask of y_pred (see pynn.layers.masks); accuracy likewise. A
sixth, ``mask_rescale`` (default True), weighs the kept rows by rows / kept (Keras's mean
reductions) or, False, by 1 (its "sum" reduction).
The twins of embedding, rnn and slice are in pynn/reference/rnn.py.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pynn import _core

ALIAS_OPS = ("reshape", "flatten", "identity")
MERGE_OPS = ("add", "subtract", "multiply", "average", "maximum", "minimum")


@dataclass
class ParamRef:
    """A parameter of the graph: the layer's array itself (not a copy)."""

    value: np.ndarray           # float32, C-contiguous; written in place by training
    name: str                   # "dense_1/kernel"
    trainable: bool = True      # the weight can train (False for moving statistics)
    frozen: bool = False        # its layer is frozen now (Keras trainable=False); may change
    l1: float = 0.0
    l2: float = 0.0
    owner: object = None        # the Weight it came from (for trainable flags and saving)


@dataclass
class Node:
    op: str
    inputs: list[int]
    outputs: list[int]
    params: list[int] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    name: str = ""              # the layer's name, for error messages and summaries


class GraphSpec:
    """Builds the flat graph: tensors by id, parameters by id, nodes in topological order."""

    def __init__(self):
        self.shapes: list[tuple[int, ...]] = []   # tensor id -> per-sample shape
        self.params: list[ParamRef] = []
        self.nodes: list[Node] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self._param_index: dict[int, int] = {}     # id(array) -> param id (shared layers)

    # --- building ---------------------------------------------------------------------------
    def add_input(self, shape) -> int:
        tid = self._new_tensor(shape)
        self.inputs.append(tid)
        return tid

    def add_param(self, ref: ParamRef) -> int:
        """The id of `ref`'s array, adding it once however many nodes use it."""
        key = id(ref.value)
        if key in self._param_index:
            return self._param_index[key]
        self.params.append(ref)
        pid = len(self.params) - 1
        self._param_index[key] = pid
        return pid

    def add_node(self, op, inputs, out_shapes, params=(), attrs=None, name="") -> list[int]:
        for t in inputs:
            if not 0 <= t < len(self.shapes):
                raise ValueError(f"{name or op}: unknown input tensor {t}")
        outs = [self._new_tensor(s) for s in out_shapes]
        self.nodes.append(Node(op, list(inputs), outs, list(params), dict(attrs or {}), name))
        return outs

    def _new_tensor(self, shape) -> int:
        self.shapes.append(tuple(int(s) for s in shape))
        return len(self.shapes) - 1

    # --- reading ----------------------------------------------------------------------------
    def size(self, tid: int) -> int:
        return math.prod(self.shapes[tid])

    def consumers(self, tid: int) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if tid in n.inputs]

    def state_params(self) -> set[int]:
        """Ids of the params that are state updated by forward (batch normalisation's moving
        statistics), as opposed to weights: their engine flag follows their layer's."""
        state = set()
        for n in self.nodes:
            if n.op == "batchnorm":
                first = (int(bool(n.attrs.get("scale", True)))
                         + int(bool(n.attrs.get("center", True))))
                state.update(n.params[first:])
        return state

    def __repr__(self):
        lines = [f"GraphSpec(inputs={self.inputs}, outputs={self.outputs})"]
        for n in self.nodes:
            lines.append(f"  {n.name or '?'}: {n.op}{n.inputs} -> {n.outputs} params={n.params} "
                         f"{n.attrs}")
        return "\n".join(lines)

    # --- the compiled engine -----------------------------------------------------------------
    def to_core(self, losses: Sequence[Any] | None = None) -> _core.Graph:
        """A `pynn._core.Graph` running this spec: the same parameter arrays (used in place,
        with their L1/L2 coefficients and trainable flags), nodes, tensor ids and outputs.

        `losses`, when given, has one entry per output: None (no loss), a tuple ``(kind,
        from_logits, delta, weight)``, or a `pynn.losses` object (weight 1).

        The engine's flag of a weight is ``trainable and not frozen``. The moving statistics
        of a batch normalisation never learn; their flag is ``not frozen``, so a batchnorm
        whose parameters are all flagged off (a frozen layer) runs in inference mode even in
        training, as in Keras. Later changes of ``frozen`` go to the engine through
        ``Graph.set_trainable``.
        """
        from pynn import _core

        g = _core.Graph()
        state = self.state_params()
        for pid, ref in enumerate(self.params):
            # A weight learns while it can train and its layer is not frozen; the flag of a
            # moving statistic (which never learns) says whether its layer is frozen.
            flag = not ref.frozen if pid in state else (bool(ref.trainable) and not ref.frozen)
            g.add_param(ref.value, ref.name, flag)
            g.set_regularization(pid, float(ref.l1), float(ref.l2))
        # Tensor ids are handed out in creation order on both sides, so replaying inputs and
        # nodes in the order of their tensor ids reproduces the same ids (and node order).
        # (tensor id, kind, the Node; None for an input)
        events: list[tuple[int, str, Any]] = [(t, "input", None) for t in self.inputs]
        for node in self.nodes:
            if len(node.outputs) != 1:
                raise ValueError(f"{node.name or node.op}: the engine's ops have one output, "
                                 f"this node has {len(node.outputs)}")
            events.append((node.outputs[0], "node", node))
        events.sort(key=lambda e: e[0])
        for tid, kind, node in events:
            if kind == "input":
                got = g.add_input(list(self.shapes[tid]))
            else:
                got = g.add_node(node.op, list(node.inputs), list(node.params), dict(node.attrs),
                                 node.name or node.op)[0]
                if tuple(g.tensor_shape(got)) != self.shapes[tid]:
                    raise ValueError(f"{node.name or node.op}: the engine computes output shape "
                                     f"{tuple(g.tensor_shape(got))}, the spec says "
                                     f"{self.shapes[tid]}")
            if got != tid:
                raise ValueError(f"tensor {tid} has no producer before it (got engine id {got})")
        g.set_outputs(list(self.outputs))
        if losses is not None:
            entries = []
            for loss in losses:
                if loss is None or isinstance(loss, (tuple, list)):
                    entries.append(None if loss is None else tuple(loss))
                else:
                    entries.append((loss.kind, bool(getattr(loss, "from_logits", False)),
                                    float(getattr(loss, "delta", 1.0)), 1.0))
            g.set_losses(entries)
        return g
