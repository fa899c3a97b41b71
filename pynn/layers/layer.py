"""The base class of every layer, its weights, and the symbolic tensors of the functional API.

A layer is configuration plus weights. Its weights are `Weight` objects whose float32 arrays
the layer owns; every compiled model that contains the layer (a layer may sit in several
models: an encoder alone and inside its autoencoder) reads and writes those same arrays, so a
change made by training one model is seen by all, as in Keras.

Calling a layer on a symbolic tensor (`pynn.Input`) builds it for that shape, records a `Node`
and returns new symbolic tensors: that is how functional models are described. Calling it on
a NumPy array computes the output eagerly (in inference mode).

How a layer computes is said once, in `_emit`: it appends its primitive ops to a
`GraphSpec` (the flat graph the C++ engine and the NumPy twin both run) and returns the ids
of its output tensors. Shape inference uses the same method on a scratch graph.
"""
from __future__ import annotations

import functools
import math
import numbers
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

_counters: dict[str, int] = {}
# Bumped whenever any layer's `trainable` changes: a compiled model compares it with the value
# it last saw before each step and pushes the new flags to its engine (Keras 3: a change takes
# effect at the next step, without compiling again).
_TRAINABLE_GENERATION = [0]
# While a model file is loaded: how many weight elements building may still allocate (the
# file's own count), so that a tampered config cannot make loading allocate without bound.
# Per thread: a model built in another thread meanwhile is not charged to the file.
_BUDGET = threading.local()


def _current_budget():
    return getattr(_BUDGET, "value", None)


class weight_budget:
    """Context: `add_weight` refuses to allocate more than `elements` in total."""

    def __init__(self, elements, what):
        self.left, self.what = int(elements), what

    def __enter__(self):
        self.saved = _current_budget()
        _BUDGET.value = self
        return self

    def __exit__(self, *exc):
        _BUDGET.value = self.saved


# Set (per thread) while a model is rebuilt from saved state (a file or a pickle): its weights
# are about to be overwritten with the saved values, so `add_weight` allocates zeros instead of
# running the initializers, which would cost time and advance pynn's global random stream.
_RESTORING = threading.local()


class skip_initializers:
    """Context: weights created in this thread start as zeros; no initializer runs."""

    def __enter__(self):
        self.saved = getattr(_RESTORING, "active", False)
        _RESTORING.active = True
        return self

    def __exit__(self, *exc):
        _RESTORING.active = self.saved


def _snake(name: str) -> str:
    """Keras's default layer name for a class: Dense -> dense, Conv2D -> conv2d,
    MaxPooling2D -> max_pooling2d, BatchNormalization -> batch_normalization."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    n = _counters.get(base, 0)
    _counters[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer. Received: {name}={value!r}")
    return int(value)


def real_in(value: Any, name: str, lo: float, hi: float, *, lo_open: bool = False,
            hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number. Received: {name}={value!r}")
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or v != v:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name}: expected a number in {lb}{lo}, {hi}{rb}. Received: "
                         f"{name}={value!r}")
    return v


def shape_tuple(shape: Any, name: str = "input_shape") -> tuple[int, ...]:
    """`shape` (an int or a sequence of ints, checked) as a tuple of positive ints."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of positive integers, got {shape!r}") from None
    if shape and shape[0] is None:
        raise ValueError(f"{name}: give the shape of one sample, without the batch axis; "
                         f"got {shape!r}")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{name}: expected a tuple of positive integers, got {shape!r}")
    if not shape:
        raise ValueError(f"{name}: expected at least one dimension, got ()")
    return tuple(int(s) for s in shape)


def sample_shape(shape: Iterable[Any], name: str = "input_shape") -> tuple[int, ...]:
    """A per-sample shape from a Keras shape that may start with the batch axis (None)."""
    shape = tuple(shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    return shape_tuple(shape, name)


def _is_plumbing(layer):
    """Inputs and the op layers of pynn.ops: part of a trace, not sub-layers of their own."""
    return type(layer).__name__ in ("InputLayer", "OpLayer")


def aligned_copy(value: np.ndarray, align: int = 64) -> np.ndarray:
    """A C-contiguous float32 copy of `value` whose data starts on an `align`-byte boundary.

    The engine reads weights in place. NumPy's (malloc's) large arrays start 16 bytes past
    a page, so every 64-byte vector load of a weight row would straddle two cache lines:
    measured on an Ice Lake Xeon, one-row predict of a 784-256-128-10 MLP takes 9.5-9.9 us
    with aligned weights against 10.8-11.9 us at offset 16. 0-d weights stay 0-d."""
    buf = np.empty(value.nbytes + align, dtype=np.uint8)
    start = (-buf.ctypes.data) % align
    out = buf[start:start + value.nbytes].view(np.float32).reshape(value.shape)
    out[...] = value
    return out


class Weight:
    """One weight tensor of a layer (Keras's Variable): a float32 array owned by the layer.

    The array object never changes (``assign`` copies into it), so compiled models can keep
    pointers to it. ``trainable`` is the weight's own flag and its layer's.
    """

    def __init__(self, layer, name, value, trainable=True, regularizer=None):
        self.layer = layer
        self.name = name
        self.value = aligned_copy(np.asarray(value, dtype=np.float32))
        self._trainable = bool(trainable)
        self.regularizer = regularizer
        self.constraint = None   # a pynn.constraints.Constraint applied after each step

    @property
    def path(self) -> str:
        return f"{self.layer.name}/{self.name}"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def trainable(self) -> bool:
        return self._trainable and self.layer.trainable

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def assign(self, value, what=None) -> None:
        what = what or self.path
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{what}: expected real numbers, got dtype {arr.dtype}")
        if arr.shape != self.value.shape:
            raise ValueError(f"{what}: expected shape {self.value.shape}, got {arr.shape}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: contains NaN or Inf")
        np.copyto(self.value, arr, casting="unsafe")

    def __repr__(self):
        return f"<Weight {self.path} shape={self.value.shape}>"


class KerasTensor:
    """A symbolic tensor: the shape (batch axis None) of a value a layer will produce."""

    def __init__(self, shape, name=None, history=None):
        self._sample = tuple(int(s) for s in shape)
        self.dtype = "float32"
        self.name = name
        self._history = history   # (layer, node_index, tensor_index)
        # One value per sample (a full reduction, an argmax): Keras's shape (None,), which
        # the engine stores as (None, 1); see pynn.layers.ops_layer.
        self._pynn_scalar = False

    @property
    def shape(self) -> tuple[int | None, ...]:
        """The shape as Keras shows it: batch axis None, then the per-sample shape."""
        return (None,) if self._pynn_scalar else (None,) + self._sample

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The per-sample shape as the engine stores it (a per-sample scalar is (1,))."""
        return self._sample

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError("a symbolic tensor (from pynn.Input or a layer call) has no value; "
                        "build a pynn.Model from it and call predict")

    # Arithmetic builds merge layers, as in Keras.
    def __add__(self, other):
        from pynn.layers.merging import Add

        return Add()([self, other])

    def __sub__(self, other):
        from pynn.layers.merging import Subtract

        return Subtract()([self, other])

    def __mul__(self, other):
        from pynn.layers.merging import Multiply

        return Multiply()([self, other])

    if TYPE_CHECKING:
        # The other operators (and __bool__, which raises while tracing) are installed by
        # pynn.ops and pynn.models.model, which import this module; declared here so a type
        # checker knows them.
        def __radd__(self, other: Any) -> KerasTensor: ...
        def __rsub__(self, other: Any) -> KerasTensor: ...
        def __rmul__(self, other: Any) -> KerasTensor: ...
        def __truediv__(self, other: Any) -> KerasTensor: ...
        def __rtruediv__(self, other: Any) -> KerasTensor: ...
        def __neg__(self) -> KerasTensor: ...
        def __pos__(self) -> KerasTensor: ...
        def __abs__(self) -> KerasTensor: ...
        def __pow__(self, other: Any) -> KerasTensor: ...
        def __rpow__(self, other: Any) -> KerasTensor: ...
        def __matmul__(self, other: Any) -> KerasTensor: ...
        def __rmatmul__(self, other: Any) -> KerasTensor: ...
        def __gt__(self, other: Any) -> KerasTensor: ...
        def __ge__(self, other: Any) -> KerasTensor: ...
        def __lt__(self, other: Any) -> KerasTensor: ...
        def __le__(self, other: Any) -> KerasTensor: ...
        def __bool__(self) -> bool: ...


class Node:
    """One call of a layer on symbolic tensors: its inputs (flat), outputs, and how the
    inputs were passed (a single tensor, a list, or a dict)."""

    def __init__(self, layer, inputs, outputs, structure):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.structure = structure   # "single", "list" or a tuple of dict keys


def flatten_inputs(inputs: Any, what: str) -> tuple[list[Any], Any]:
    """(flat list, structure) of a layer's call argument."""
    if isinstance(inputs, dict):
        keys = tuple(inputs.keys())
        return [inputs[k] for k in keys], keys
    if isinstance(inputs, (list, tuple)):
        return list(inputs), "list"
    return [inputs], "single"


def _tensor_kind(values, what):
    sym = [isinstance(v, KerasTensor) for v in values]
    if all(sym):
        return "symbolic"
    if any(sym):
        raise TypeError(f"{what}: mixes symbolic tensors (from pynn.Input) with arrays")
    return "eager"


class Layer:
    """A layer: configuration, weights (`add_weight`), and its computation as graph ops.

    Subclasses override `build(input_shape)` to create weights with `add_weight`, and `_emit`
    (pynn's built-in layers) to append their ops to the graph.

    ``supports_masking`` (Keras's flag): the layer hands its input's mask on to its outputs
    (see pynn.layers.masks); layers without it drop the mask.
    """

    supports_masking = False
    _masks_in_emit = False   # the layer records its outputs' masks in _emit itself
    # False where Keras's class takes no activity_regularizer (or ignores it, as a functional
    # model does): refused, so that a file pynn writes still loads in Keras
    _takes_activity_regularizer = True
    _wrap_build = True   # see __init_subclass__ (models build by tracing, their own way)
    _eager_train_calls = 0   # eager calls with training=True so far: each draws anew

    def __init__(self, name=None, trainable=True, input_shape=None, input_dim=None, dtype=None,
                 activity_regularizer=None, **kwargs):
        kwargs.pop("batch_input_shape", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"{sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a string, got {name!r}")
        from pynn import mixed_precision, regularizers

        if activity_regularizer is not None and not self._takes_activity_regularizer:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"['activity_regularizer'] (Keras's {type(self).__name__} takes "
                            f"none)")
        # Keras's activity_regularizer (any layer): each output's penalty, divided by the
        # batch size, is added to the loss in fit and evaluate (see _emit_node).
        self.activity_regularizer = regularizers.get(activity_regularizer,
                                                     "activity_regularizer")

        # Keras's dtype= is a dtype policy (or its name); None takes the global policy now.
        self._dtype_policy = mixed_precision.get(dtype)
        self.name = name or unique_name(_snake(type(self).__name__))
        self._trainable = bool(trainable)
        if input_dim is not None:
            input_shape = (positive_int(input_dim, "input_dim"),)
        self._input_shape_arg = shape_tuple(input_shape) if input_shape is not None else None
        self.built = False
        self._weights: list[Weight] = []
        self._inbound_nodes: list[Node] = []
        self._build_shapes = None   # per-sample input shapes the layer was built for
        self._out_shapes = None     # per-sample output shapes for those

    # --- dtype policy (pynn.mixed_precision) --------------------------------------------------
    @property
    def dtype_policy(self) -> Any:
        """The layer's `pynn.mixed_precision.DTypePolicy`."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value: Any) -> None:
        from pynn import mixed_precision

        self._dtype_policy = mixed_precision.get(value)

    @property
    def compute_dtype(self) -> str:
        return self._dtype_policy.compute_dtype

    @property
    def variable_dtype(self) -> str:
        return self._dtype_policy.variable_dtype

    @property
    def dtype(self) -> str:
        """The dtype of the layer's weights (Keras 3: the policy's variable dtype)."""
        return self._dtype_policy.variable_dtype

    # --- trainable --------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for sub in self._sublayers():
            sub.trainable = value
        _TRAINABLE_GENERATION[0] += 1

    def _sublayers(self):
        """Layers this one is made of: for a user's layer, the layers held in its public
        attributes and those its traced call() uses (Keras tracks attributes the same way)."""
        if type(self).call is Layer.call:
            return []
        out = []
        for value in list(self.__dict__.values()):
            items = value if isinstance(value, (list, tuple)) else [value]
            out += [v for v in items if isinstance(v, Layer) and v is not self]
        for model in self.__dict__.get("_traces", {}).values():
            out += [lay for lay in model._sublayers() if not _is_plumbing(lay)]
        seen, unique = set(), []
        for lay in out:
            if id(lay) not in seen:
                seen.add(id(lay))
                unique.append(lay)
        return unique

    # --- weights ----------------------------------------------------------------------------
    def add_weight(self, shape: Iterable[int] | None = None, initializer: Any = "glorot_uniform",
                   dtype: Any = None, trainable: bool = True, regularizer: Any = None,
                   constraint: Any = None, name: str | None = None) -> Weight:
        """Creates a weight of this layer (Keras's ``add_weight``) and returns it."""
        from pynn import constraints, initializers, regularizers

        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"dtype: pynn weights are float32, got {dtype!r}")
        shape = () if shape is None else tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"shape: expected non-negative sizes, got {shape}")
        if math.prod(shape) > 2**31 - 1:
            raise ValueError(f"{self.name}: weight {name!r} of shape {shape} has more than "
                             f"2**31 - 1 elements, pynn's limit per weight")
        budget = _current_budget()
        if budget is not None:
            budget.left -= math.prod(shape)
            if budget.left < 0:
                raise ValueError(f"{budget.what}: the model config describes more weights than "
                                 f"the file holds (at layer {self.name!r}, weight {name!r} of "
                                 f"shape {shape})")
        init = initializers.get(initializer)
        name = name or f"weight_{len(self._weights)}"
        value = (np.zeros(shape, dtype=np.float32) if getattr(_RESTORING, "active", False)
                 else init(shape))
        w = Weight(self, name, value, trainable, regularizers.get(regularizer))
        w.constraint = constraints.get(constraint)
        self._weights.append(w)
        return w

    @property
    def weights(self) -> list[Weight]:
        return list(self._all_weights())

    def _all_weights(self):
        subs = self._sublayers()
        if not subs:
            return list(self._weights)
        out, seen = [], set()
        for w in list(self._weights) + [w for lay in subs for w in lay._all_weights()]:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    @property
    def trainable_weights(self) -> list[Weight]:
        return [w for w in self._all_weights() if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Weight]:
        return [w for w in self._all_weights() if not w.trainable]

    @property
    def losses(self) -> list[np.float32]:
        """The weight penalties of this layer and the layers in it at the current weights, one
        per regularized weight (Keras's ``layer.losses``; the trainer adds those of trainable
        weights to the loss)."""
        return [np.float32(w.regularizer(w.numpy())) for w in self._all_weights()
                if w.regularizer is not None]

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy() for w in self._all_weights()]

    def set_weights(self, weights) -> None:
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights: expected a list of arrays, got {type(weights).__name__}")
        own = self._all_weights()
        if not own and not self.built and weights:
            # not built yet: keep them and apply (and check) them when the shapes are known
            for k, new in enumerate(weights):
                if np.asarray(new).dtype.kind not in "fiu":
                    raise TypeError(f"weights: weight {k} of {self.name} must be real numbers, "
                                    f"got dtype {np.asarray(new).dtype}")
            self._pending_weights = [np.array(w, dtype=np.float32) for w in weights]
            return
        if len(weights) != len(own):
            raise ValueError(f"weights: {self.name} expected {len(own)} arrays "
                             f"{[w.shape for w in own]}, got {len(weights)}")
        for k, (w, new) in enumerate(zip(own, weights)):  # check all before writing any
            arr = np.asarray(new)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{self.name}: weight {k} must be real numbers, got dtype "
                                f"{arr.dtype}")
            if arr.shape != w.shape:
                raise ValueError(f"{self.name}: weight {k} expected shape {w.shape}, got "
                                 f"{arr.shape}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"{self.name}: weight {k} contains NaN or Inf")
        for w, new in zip(own, weights):
            w.assign(new)

    def count_params(self) -> int:
        return int(sum(w.value.size for w in self._all_weights()))

    # --- building ---------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Creates the weights for inputs of `input_shape` (Keras: with the batch axis)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is None or getattr(build, "_marks_built", False) or not cls._wrap_build:
            return

        # As in Keras, a layer whose build() is called directly (a custom layer building its
        # sublayers in its own build) counts as built: tracing its call later must not
        # build it, and make its weights, a second time.
        @functools.wraps(build)
        def build_and_mark(self, *args, **kwargs):
            # only the outermost build() marks: a subclass's build calling super().build()
            # still has weights to make or set (LSTM's forget-gate bias) after it returns
            depth = self.__dict__.get("_build_depth", 0)
            self._build_depth = depth + 1
            try:
                build(self, *args, **kwargs)
            finally:
                self._build_depth = depth
            shape = args[0] if args else kwargs.get("input_shape")
            if depth == 0 and shape is not None:   # even if build() set built itself
                self._built_for(shape)

        build_and_mark._marks_built = True
        cls.build = build_and_mark

    def _built_for(self, input_shape):
        """What follows build(): built, the per-sample shapes it was for, pending weights."""
        multi = isinstance(input_shape, list) and input_shape and isinstance(
            input_shape[0], (list, tuple))
        self.built = True
        self._build_shapes = [tuple(s)[1:] for s in (input_shape if multi else [input_shape])]
        pending = self.__dict__.pop("_pending_weights", None)
        if pending is not None:
            self.set_weights(pending)

    def _build_for(self, shapes):
        """Builds once for these per-sample input shapes (a list, one per input)."""
        shapes = [tuple(s) for s in shapes]
        if self.built:
            return
        arg = [(None,) + s for s in shapes]
        self.build(arg[0] if len(arg) == 1 else arg)
        if not self.built:   # Layer.build itself (no weights) is not wrapped
            self._built_for(arg if len(arg) > 1 else arg[0])

    def _output_shapes(self, shapes):
        """Per-sample output shapes for per-sample input shapes, from `_emit` on a scratch
        graph (shape errors surface here, naming the layer)."""
        from pynn.models.graph_spec import GraphSpec

        spec = GraphSpec()
        tids = [spec.add_input(s) for s in shapes]
        outs = self._emit(spec, tids)
        return [spec.shapes[t] for t in outs]

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Keras's form: shapes with the batch axis."""
        multi = isinstance(input_shape, list) and input_shape and isinstance(
            input_shape[0], (list, tuple))
        shapes = [sample_shape(s) for s in (input_shape if multi else [input_shape])]
        self._build_for(shapes)
        outs = [(None,) + s for s in self._output_shapes(shapes)]
        return outs[0] if len(outs) == 1 else outs

    @property
    def input_shape(self) -> Any:
        if self._build_shapes is None:
            if self._input_shape_arg is not None:
                return (None,) + self._input_shape_arg
            return None
        shapes = [(None,) + s for s in self._build_shapes]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self) -> Any:
        if self._out_shapes is None:
            return None
        shapes = [(None,) + s for s in self._out_shapes]
        return shapes[0] if len(shapes) == 1 else shapes

    # --- the computation --------------------------------------------------------------------
    def call(self, inputs: Any) -> Any:
        """The layer's computation, for layers of the user's own: written with `pynn.ops`
        and other layers, on symbolic tensors (it is traced once per input shape into graph
        ops; weights made with `add_weight` become trainable graph parameters)."""
        raise NotImplementedError(f"{type(self).__name__}: a custom layer must define "
                                  f"call(inputs) (pynn's own layers compile directly)")

    def _emit(self, spec, inputs):
        """Appends this layer's ops to `spec` reading tensor ids `inputs`; returns the output
        tensor ids. Built-in layers override this; a user's layer is traced from call()."""
        return self._traced_call([spec.shapes[t] for t in inputs])._emit(spec, inputs)

    def _traced_call(self, shapes):
        """call() traced on symbolic inputs of these per-sample shapes, as a model (cached:
        one trace per input shape)."""
        if type(self).call is Layer.call:
            raise NotImplementedError(f"{type(self).__name__}: a custom layer must define "
                                      f"call(inputs)")
        from pynn.layers import ops_layer
        from pynn.layers.reshaping import Input
        from pynn.models.model import Model, _SymbolicBool

        key = tuple(tuple(s) for s in shapes)
        traces = self.__dict__.setdefault("_traces", {})
        if key not in traces:
            ins = [Input(s) for s in shapes]
            arg = ins[0] if len(ins) == 1 else ins
            ops_layer._ANCHORS.append(ins[0])
            try:
                out = self.call(arg)
            except _SymbolicBool as exc:
                raise TypeError(f"{type(self).__name__}.call: {exc}") from None
            finally:
                ops_layer._ANCHORS.pop()
            flat = out if isinstance(out, (list, tuple)) else [out]
            if not flat or not all(isinstance(t, KerasTensor) for t in flat):
                raise TypeError(f"{type(self).__name__}.call: must return tensors computed "
                                f"from its inputs with pynn.ops or layers, got "
                                f"{type(out).__name__}")
            if any(t is i for t in flat for i in ins):   # returned an input as it is
                out = [t * 1.0 if any(t is i for i in ins) else t for t in flat]
                out = out if isinstance(flat, list) and len(out) > 1 else out[0]
            traces[key] = Model(arg, out, name=f"{self.name}_call")
        return traces[key]


    def _param_ids(self, spec, weights=None):
        from pynn.models.graph_spec import ParamRef

        out = []
        for w in (self._weights if weights is None else weights):
            reg = w.regularizer
            out.append(spec.add_param(ParamRef(
                w.value, w.path, w._trainable, not w.layer.trainable,
                float(getattr(reg, "l1", 0.0) or 0.0), float(getattr(reg, "l2", 0.0) or 0.0),
                owner=w)))
        return out

    def _emit_node(self, spec, inputs):
        """`_emit`, then what a model adds to every layer call: the outputs' masks (Keras's
        rules, pynn.layers.masks) and, with an activity_regularizer, an
        ``activity_regularization`` node on each output (the identity; the loss gains
        ``(l1 * sum|y| + l2 * sum y^2) / batch``, as Keras adds the penalty of each output
        divided by its batch size). Returns the output tensor ids."""
        from pynn.layers import masks
        from pynn.layers.embedding import mask_of, set_mask

        outs = self._emit(spec, inputs)
        masks.propagate(self, spec, inputs, outs)
        reg = self.activity_regularizer
        if reg is None:
            return outs
        penalized = []
        for k, t in enumerate(outs):
            (y,) = spec.add_node("activity_regularization", [t], [spec.shapes[t]], [],
                                 {"l1": float(reg.l1), "l2": float(reg.l2)},
                                 f"{self.name}_activity_regularizer"
                                 + (f"_{k}" if len(outs) > 1 else ""))
            m = mask_of(spec, t)
            if m is not None:
                set_mask(spec, y, m)
            penalized.append(y)
        return penalized

    def _single(self, inputs):
        if len(inputs) != 1:
            raise ValueError(f"{self.name}: {type(self).__name__} takes one input, got "
                             f"{len(inputs)}")
        return inputs[0]

    def __call__(self, inputs, *args, training=None, mask=None, **kwargs):
        if args or kwargs:
            raise TypeError(f"{self.name}: unexpected call arguments "
                            f"{list(kwargs) or len(args)}")
        if mask is not None:
            raise ValueError(f"{self.name}: mask: masks come from Embedding(mask_zero=True) or "
                             f"Masking and flow through the graph by themselves; passing one "
                             f"to a layer call is not supported, got {type(mask).__name__}")
        flat, structure = flatten_inputs(inputs, self.name)
        if not flat:
            raise ValueError(f"{self.name}: called on no inputs")
        kind = _tensor_kind(flat, self.name)
        if kind == "symbolic":
            return self._call_symbolic(flat, structure)
        return self._call_eager(flat, training)

    def _call_symbolic(self, flat, structure):
        shapes = [t.sample_shape for t in flat]
        self._build_for(shapes)
        out_shapes = self._output_shapes(shapes)
        if self._out_shapes is None:
            self._out_shapes = out_shapes
        node_index = len(self._inbound_nodes)
        outs = [KerasTensor(s, name=f"{self.name}_{node_index}_{k}" if len(out_shapes) > 1
                            else self.name, history=(self, node_index, k))
                for k, s in enumerate(out_shapes)]
        self._inbound_nodes.append(Node(self, flat, outs, structure))
        return self._wrap_outputs(outs)

    def _wrap_outputs(self, outs):
        return outs[0] if len(outs) == 1 else outs

    def _call_eager(self, flat, training):
        from pynn.models.graph_spec import GraphSpec

        arrays = []
        for k, a in enumerate(flat):
            arr = np.asarray(a)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"{self.name}: input {k} must be numbers, got dtype {arr.dtype}")
            if arr.ndim < 2:
                raise ValueError(f"{self.name}: input {k} must have a batch axis, got shape "
                                 f"{arr.shape}")
            arrays.append(np.ascontiguousarray(arr, dtype=np.float32))
        shapes = [a.shape[1:] for a in arrays]
        self._build_for(shapes)
        spec = GraphSpec()
        tids = [spec.add_input(s) for s in shapes]
        spec.outputs = self._emit(spec, tids)
        if self._out_shapes is None:
            self._out_shapes = [spec.shapes[t] for t in spec.outputs]
        from pynn.models.runtime import run_inference, run_training

        if training:   # Keras's layer(x, training=True): a new draw per call
            call = self._eager_train_calls
            self._eager_train_calls = call + 1
            outs = run_training(spec, arrays, call)
        else:
            outs = run_inference(spec, arrays)
        return outs[0] if len(outs) == 1 else outs

    # --- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable}
        if self._dtype_policy.name != "float32":
            cfg["dtype"] = self._dtype_policy.name
        if self.activity_regularizer is not None:
            from pynn import regularizers

            cfg["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if self._input_shape_arg is not None:
            cfg["input_shape"] = list(self._input_shape_arg)
        return cfg

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Layer:
        cfg = dict(config)
        if "input_shape" in cfg and cfg["input_shape"] is not None:
            cfg["input_shape"] = tuple(cfg["input_shape"])
        cfg.pop("dtype", None) if cfg.get("dtype") in ("float32", None) else None
        return cls(**cfg)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def on_last_axis(spec: Any, name: str, x: int, axis: int, emit: Callable[[int], list[int]]
                 ) -> list[int]:
    """Runs `emit` (an op that works on the last axis) on per-sample `axis` (0 = the first
    after the batch) of tensor x: the axis is moved last and back with two ``permute`` nodes
    (1-based sample axes), or nothing is added when it is already last."""
    shape = spec.shapes[x]
    last = len(shape) - 1
    if axis == last:
        return emit(x)
    order = [i for i in range(len(shape)) if i != axis] + [axis]
    moved = spec.add_node("permute", [x], [tuple(shape[i] for i in order)], [],
                          {"dims": [i + 1 for i in order]}, name)[0]
    (y,) = emit(moved)
    back = [order.index(i) + 1 for i in range(len(shape))]
    return spec.add_node("permute", [y], [shape], [], {"dims": back}, name)
