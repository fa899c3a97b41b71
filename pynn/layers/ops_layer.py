"""The layer behind `pynn.ops` on symbolic tensors: one op call, one graph node.

`pynn.ops.square(x)` on a `KerasTensor` makes an `OpLayer` and calls it on x, so the call is
recorded as a Node like any layer call: it works in functional models, in the ``call`` of
subclassed models (traced), inside nested models, and inside `Lambda`.

Invariants:
  - An OpLayer has no weights. Its operands are the symbolic tensors it is called on, plus
    constants (NumPy arrays, Python numbers) held by the layer; a constant becomes a
    "constant" node hanging off the first symbolic operand (for the batch size) when emitted.
  - A per-sample scalar (Keras's shape (None,), e.g. a mean over the last axis) has the
    per-sample shape (1,) here: the engine stores rank-0 samples as (1,) (Graph::add_node)
    and GraphSpec.to_core checks that both sides agree. `scalar_sample` is that one rule.
    Its KerasTensor is flagged (`is_scalar_sample`), so `.shape` shows (None,), elementwise
    ops and merges of such values keep the flag, and predict / model(x) / the ONNX export
    return (n,) for such an output, as Keras does.
  - Attributes carry per-sample axes counted from the end (negative).
  - Shape rules here mirror the C++ ops' configure(); a mismatch is a ValueError that names
    the layer, the op and every operand's shape (with the batch axis, as Keras prints them).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pynn.layers.layer import KerasTensor, Layer, unique_name
from pynn.reference.ops import broadcast_shapes


def scalar_sample(shape: Iterable[int]) -> tuple[int, ...]:
    """A per-sample output shape as the graph stores it: () becomes (1,)."""
    return tuple(shape) or (1,)


def is_scalar_sample(t: Any) -> bool:
    """The symbolic tensor holds one value per sample that Keras would give shape (None,)
    (a full reduction, an argmax, ...), stored as (None, 1)."""
    return bool(getattr(t, "_pynn_scalar", False))


def keras_shape(s: Iterable[int]) -> tuple[int | None, ...]:
    """A per-sample shape as Keras shows it, with the batch axis: (None, *s)."""
    return (None,) + tuple(s)


_ANCHORS: list = []   # the first input of each custom layer's call() being traced


def tracing() -> bool:
    return bool(_ANCHORS)


def trace_anchor() -> KerasTensor:
    """The traced call's first input: weights-only ops read their batch size from it."""
    if not _ANCHORS:
        raise TypeError("pynn.ops on layer weights alone: outside a layer's call() there is no "
                        "symbolic tensor to compute them for")
    return _ANCHORS[-1]


class WeightOperand:
    """A layer's weight used as an operand of pynn.ops inside a traced call(): it enters the
    graph as a ``variable`` node (trainable, its gradient summed over the batch), used with
    the per-sample `shape` (its own, less leading 1-axes that would meet the batch axis)."""

    def __init__(self, weight, shape):
        self.weight = weight
        self.shape = tuple(shape)


class OpLayer(Layer):
    """One op of `pynn.ops` applied to symbolic tensors (and constants).

    operands: one entry per operand of the op, in order: an int k (the k-th tensor the layer
    is called on) or a NumPy array (a constant, already in its per-sample shape).
    rule: (layer, operand shapes) -> output shape; raises ValueError naming both shapes.
    """

    def __init__(self, op, attrs, operands, rule, label, name=None, scalar_out=False):
        super().__init__(name=name or unique_name(label))
        self.op = op
        self.attrs = dict(attrs)
        self.label = label
        self._operands = list(operands)
        self._rule = rule
        self.scalar_out = bool(scalar_out)   # one value per sample: Keras's (None,)

    def fail(self, msg):
        raise ValueError(f"{self.name} (ops.{self.label}): {msg}")

    def _emit(self, spec, inputs):
        if not inputs:
            self.fail("needs at least one symbolic operand")
        tids, shapes = [], []
        for operand in self._operands:
            if isinstance(operand, (int, np.integer)):
                tid = inputs[int(operand)]
            elif isinstance(operand, WeightOperand):
                (pid,) = self._param_ids(spec, [operand.weight])
                tid = spec.add_node("variable", [inputs[0]], [operand.shape], [pid],
                                    {"shape": list(operand.shape)},
                                    f"{self.name}/{operand.weight.name}")[0]
            else:
                value = np.asarray(operand, dtype=np.float32)
                value = value.reshape(scalar_sample(value.shape))
                tid = spec.add_node("constant", [inputs[0]], [value.shape], [],
                                    {"value": [float(v) for v in value.ravel()],
                                     "shape": list(value.shape)}, f"{self.name}/constant")[0]
            tids.append(tid)
            shapes.append(spec.shapes[tid])
        out = self._rule(self, shapes)
        # The Keras per-sample shape: () where scalar_sample made (1,).
        self._keras_shape = (self._rule(self, shapes, raw=True)
                             if self._rule in (reduce_rule, argmax_rule, matmul_rule) else out)
        return spec.add_node(self.op, tids, [tuple(out)], [], self.attrs, self.name)

    def _call_symbolic(self, flat, structure):
        out = super()._call_symbolic(flat, structure)   # runs _emit on a scratch graph
        # Elementwise ops on per-sample scalars (and constants) keep them scalars.
        elementwise = tuple(self._keras_shape) == (1,) and all(
            is_scalar_sample(t) for t in flat)
        out._pynn_scalar = self._keras_shape == () or self.scalar_out or elementwise
        return out

    def get_config(self) -> dict:
        """Data only (the op, its attributes, the shape rule's name, constants as numbers), so
        a model using pynn.ops loads without running code from the file."""
        operands: list[int | dict[str, Any]] = []
        for operand in self._operands:
            if isinstance(operand, (int, np.integer)):
                operands.append(int(operand))
            elif isinstance(operand, WeightOperand):
                raise ValueError(f"{self.name}: an op on a layer's weight belongs to that "
                                 f"layer's call() and is not saved on its own")
            else:
                arr = np.asarray(operand, dtype=np.float32)
                operands.append({"shape": list(arr.shape),
                                 "value": [float(v) for v in arr.ravel()]})
        return {"name": self.name, "op": self.op, "attrs": dict(self.attrs),
                "label": self.label, "rule": self._rule.__name__, "operands": operands,
                "scalar_out": self.scalar_out}

    @classmethod
    def from_config(cls, config):
        conf = dict(config)
        rule = _RULES.get(conf.get("rule"))
        if rule is None:
            raise ValueError(f"OpLayer: unknown shape rule {conf.get('rule')!r}; expected one "
                             f"of {sorted(_RULES)}")
        if not isinstance(conf.get("op"), str) or not isinstance(conf.get("attrs"), dict):
            raise ValueError("OpLayer: 'op' must be a string and 'attrs' a dict")
        operands = []
        for operand in conf.get("operands", []):
            if isinstance(operand, int) and not isinstance(operand, bool) and 0 <= operand < 64:
                operands.append(operand)
                continue
            if not isinstance(operand, dict):
                raise ValueError(f"OpLayer: invalid operand {operand!r}")
            shape, value = operand.get("shape"), operand.get("value")
            if (not isinstance(shape, list) or not all(isinstance(d, int) and 0 < d for d in shape)
                    or not isinstance(value, list) or len(value) != int(np.prod(shape))
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in value)):
                raise ValueError("OpLayer: a constant operand needs a shape and that many "
                                 "numbers")
            operands.append(np.asarray(value, dtype=np.float32).reshape(shape))
        return cls(conf["op"], conf["attrs"], operands, rule, str(conf.get("label", conf["op"])),
                   name=conf.get("name"), scalar_out=bool(conf.get("scalar_out", False)))


# --- shape rules: (layer, operand shapes) -> output shape --------------------------------------
def same_shape(layer: OpLayer, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    return shapes[0]


def broadcast_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    out = broadcast_shapes(*shapes)
    if out is None:
        layer.fail("shapes " + " and ".join(str(keras_shape(s)) for s in shapes) +
                   " do not broadcast")
    return out


def reduce_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]],
                raw: bool = False) -> tuple[int, ...]:
    s = shapes[0]
    axes = [a + len(s) for a in layer.attrs["axes"]]
    if layer.attrs.get("keepdims", False):
        return tuple(1 if d in axes else n for d, n in enumerate(s))
    out = tuple(n for d, n in enumerate(s) if d not in axes)
    return out if raw else scalar_sample(out)


def argmax_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]],
                raw: bool = False) -> tuple[int, ...]:
    s = shapes[0]
    axis = layer.attrs.get("axis")
    axes = list(range(len(s))) if axis is None else [axis + len(s)]
    if layer.attrs.get("keepdims", False):
        return tuple(1 if d in axes else n for d, n in enumerate(s))
    out = tuple(n for d, n in enumerate(s) if d not in axes)
    return out if raw else scalar_sample(out)


def matmul_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]],
                raw: bool = False) -> tuple[int, ...]:
    a, b = shapes
    if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
        layer.fail(f"samples must have rank 1 or 2 (tensors of rank 2 or 3 with the batch "
                   f"axis), got shapes {keras_shape(a)} and {keras_shape(b)}")
    if a[-1] != b[0]:
        layer.fail(f"shapes {keras_shape(a)} and {keras_shape(b)} do not match for a matrix "
                   f"product ({a[-1]} vs {b[0]})")
    out = tuple(a[:-1]) + tuple(b[1:])
    return out if raw else scalar_sample(out)


def one_hot_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(shapes[0]) + (int(layer.attrs["num_classes"]),)


def permute_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    s = shapes[0]
    return tuple(s[d - 1] for d in layer.attrs["dims"])


def reshape_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    target = tuple(layer.attrs["target_shape"])
    if int(np.prod(target)) != int(np.prod(shapes[0])):
        layer.fail(f"cannot reshape {keras_shape(shapes[0])} to {keras_shape(target)}")
    return target


def concatenate_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    rank = len(shapes[0])
    ax = layer.attrs["axis"] + rank
    for s in shapes[1:]:
        if len(s) != rank or any(x != y for d, (x, y) in enumerate(zip(s, shapes[0]))
                                 if d != ax):
            layer.fail(f"shapes {keras_shape(shapes[0])} and {keras_shape(s)} must match except "
                       f"on axis {ax + 1}")
    out = list(shapes[0])
    out[ax] = sum(s[ax] for s in shapes)
    return tuple(out)


def activation_rule(layer: OpLayer, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    if not shapes[0] and layer.attrs.get("activation") == "softmax":
        layer.fail("softmax needs samples with at least one axis, got shape (None,)")
    return shapes[0]


_RULES = {name: f for name, f in list(globals().items())
          if callable(f) and (name.endswith("_rule") or name == "same_shape")}
