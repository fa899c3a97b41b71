"""Model: a graph of layers with Keras's training API, compiled to one C++ graph.

Three ways to make one, as in Keras 3:
    functional   ``pynn.Model(inputs, outputs)`` from symbolic tensors (`pynn.Input`)
    Sequential   a linear stack (`pynn.Sequential`), a subclass of this one
    subclassed   ``class Net(pynn.Model)`` with layers as attributes and a ``call(inputs)``
                 made of layer calls: traced once, symbolically, into a static graph

A model is a layer: it can be called on symbolic tensors inside another model (its ops are
inlined), and the same layer or model called twice shares its weights. Weights belong to
layers; the compiled graph reads and writes them in place. The training loops live in
`pynn.models.trainer`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pynn.layers.layer import (
    KerasTensor,
    Layer,
    flatten_inputs,
    sample_shape,
    unique_name,
)
from pynn.layers.ops_layer import is_scalar_sample
from pynn.layers.reshaping import InputLayer
from pynn.models.trainer import Trainer


def _history(t, what):
    if not isinstance(t, KerasTensor) or t._history is None:
        raise TypeError(f"{what}: expected symbolic tensors made from pynn.Input and layer "
                        f"calls, got {t!r}")
    return t._history


def _structure(value, what):
    """(flat list, structure, names) of a model's inputs or outputs argument."""
    if isinstance(value, dict):
        keys = list(value.keys())
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"{what}: dict keys must be strings, got {keys!r}")
        return [value[k] for k in keys], tuple(keys)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{what}: expected at least one tensor, got an empty list")
        return list(value), "list"
    return [value], "single"


def _topological_nodes(inputs, outputs):
    """The nodes between `inputs` and `outputs` in an order where each node comes after the
    nodes producing its inputs (depth-first from the outputs, inputs visited in order)."""
    input_ids = {id(t) for t in inputs}
    order, done, active = [], set(), set()

    def visit(t, path):
        if id(t) in input_ids:
            return
        layer, node_index, _ = _history(t, "outputs")
        node = layer._inbound_nodes[node_index]
        key = id(node)
        if key in done:
            return
        if isinstance(layer, InputLayer):
            raise ValueError(f"Graph disconnected: the output depends on input {layer.name!r}, "
                             f"which is not among the model's inputs "
                             f"{[x.name for x in inputs]}")
        if key in active:
            raise ValueError(f"the graph has a cycle through layer {layer.name!r}")
        active.add(key)
        for x in node.inputs:
            visit(x, path)
        active.discard(key)
        done.add(key)
        order.append(node)

    for t in outputs:
        visit(t, [])
    return order


class Model(Trainer, Layer):
    """A model: ``Model(inputs, outputs, name=None)`` or a subclass with ``call``.

    Example:
        >>> inputs = pynn.Input((784,))
        >>> h = pynn.layers.Dense(64, activation="relu")(inputs)
        >>> outputs = pynn.layers.Dense(10, activation="softmax")(h)
        >>> model = pynn.Model(inputs, outputs)
    """

    _takes_activity_regularizer = False
    _wrap_build = False

    _tracked: list[Layer]   # layers assigned as attributes (subclassed models)

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        object.__setattr__(self, "_tracked", [])
        Layer.__init__(self, name=name or unique_name(self._default_name()),
                       trainable=trainable, **kwargs)
        Trainer.__init__(self)
        self._inputs = None
        self._outputs = None
        self._nodes = []
        if inputs is None and outputs is None:
            if type(self) is Model:
                raise TypeError("Model: give inputs and outputs (the functional API), or "
                                "subclass pynn.Model and define call()")
            return
        if inputs is None or outputs is None:
            raise ValueError("Model: give both inputs and outputs")
        self._init_graph(inputs, outputs)

    def _default_name(self):
        return "functional" if type(self) is Model else _camel_to_snake(type(self).__name__)

    # --- attribute tracking (subclassed models) ---------------------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, Layer) and name not in ("_owner",) and hasattr(self, "_tracked"):
            if not any(value is t for t in self._tracked):
                self._tracked.append(value)
        object.__setattr__(self, name, value)

    # --- the graph --------------------------------------------------------------------------
    def _init_graph(self, inputs, outputs):
        in_flat, in_struct = _structure(inputs, "inputs")
        out_flat, out_struct = _structure(outputs, "outputs")
        for t in in_flat:
            layer, _, _ = _history(t, "inputs")
            if not isinstance(layer, InputLayer):
                raise ValueError(f"inputs: each input must come from pynn.Input(...), got the "
                                 f"output of layer {layer.name!r}")
        for t in out_flat:
            _history(t, "outputs")
        self._nodes = _topological_nodes(in_flat, out_flat)
        self._inputs, self._in_struct = in_flat, in_struct
        self._outputs, self._out_struct = out_flat, out_struct
        self._build_shapes = [t.sample_shape for t in in_flat]
        self._out_shapes = [t.sample_shape for t in out_flat]
        self.built = True
        seen = []
        for t in in_flat:
            seen.append(t._history[0])
        for node in self._nodes:
            if not any(node.layer is s for s in seen):
                seen.append(node.layer)
        self._layer_list = seen
        self._input_names = [t._history[0].name for t in in_flat]
        if isinstance(in_struct, tuple):
            self._input_names = list(in_struct)
        names = []
        for t in out_flat:
            layer = t._history[0]
            names.append(layer.name)
        if isinstance(out_struct, tuple):
            names = list(out_struct)
        self._output_names = names

    @property
    def inputs(self) -> list[KerasTensor]:
        self._maybe_trace()
        return list(self._inputs or [])

    @property
    def outputs(self) -> list[KerasTensor]:
        self._maybe_trace()
        return list(self._outputs or [])

    @property
    def input(self) -> Any:
        ins = self.inputs
        return ins[0] if len(ins) == 1 else ins

    @property
    def output(self) -> Any:
        outs = self.outputs
        return outs[0] if len(outs) == 1 else outs

    @property
    def output_names(self) -> list[str]:
        self._maybe_trace()
        return list(self._output_names)

    @property
    def input_names(self) -> list[str]:
        self._maybe_trace()
        return list(self._input_names)

    @property
    def layers(self) -> list[Layer]:
        self._maybe_trace()
        if self._inputs is None:
            return [t for t in self._tracked]
        return list(self._layer_list)

    def _sublayers(self):
        if self._inputs is None:
            return list(getattr(self, "_tracked", []))
        return [lay for lay in self._layer_list if not isinstance(lay, InputLayer)]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index in `layers`."""
        layers = self.layers
        if index is not None:
            if not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(f"index: expected an integer in [0, {len(layers)}), got "
                                 f"{index!r}")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"name: no layer named {name!r}; the layers are "
                         f"{[lay.name for lay in layers]}")

    def _all_weights(self):
        self._maybe_trace()
        out, seen = [], set()
        for layer in self._sublayers():
            for w in layer._all_weights():
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: a subclassed model defines call()")

    def _maybe_trace(self):
        """Subclassed models: the graph exists once the input shape is known."""
        return

    def _trace(self, shapes):
        """Traces a subclassed model's call() on symbolic inputs of these per-sample shapes."""
        from pynn.layers.reshaping import Input

        ins = [Input(s) for s in shapes]
        arg = ins[0] if len(ins) == 1 else ins
        try:
            out = self.call(arg)
        except _SymbolicBool as exc:
            raise TypeError(f"{type(self).__name__}.call: {exc}") from None
        self._init_graph(arg, out)

    def build(self, input_shape: Any = None) -> None:
        if input_shape is None:
            if self._inputs is None:
                raise ValueError(f"{self.name}: give build() the input shape")
            return
        if self._inputs is None:
            multi = isinstance(input_shape, list) and input_shape and isinstance(
                input_shape[0], (list, tuple))
            shapes = [sample_shape(s) for s in (input_shape if multi else [input_shape])]
            self._trace(shapes)

    def _build_for(self, shapes):
        if self._inputs is None:
            self._trace([tuple(s) for s in shapes])
            return
        want = [t.sample_shape for t in self._inputs]
        got = [tuple(s) for s in shapes]
        if len(got) != len(want):
            raise ValueError(f"{self.name}: expects {len(want)} input(s), got {len(got)}")
        for k, (w, g) in enumerate(zip(want, got)):
            if w != g:
                raise ValueError(f"{self.name}: input {k} expected shape {(None,) + w}, got "
                                 f"{(None,) + g}")

    def _emit(self, spec, inputs):
        if self._inputs is None:
            self._trace([spec.shapes[t] for t in inputs])
        self._build_for([spec.shapes[t] for t in inputs])
        value = {id(t): tid for t, tid in zip(self._inputs, inputs)}
        for node in self._nodes:
            ins = [value[id(t)] for t in node.inputs]
            outs = node.layer._emit_node(spec, ins)
            for t, tid in zip(node.outputs, outs):
                value[id(t)] = tid
        return [value[id(t)] for t in self._outputs]

    def _wrap_outputs(self, outs):
        if isinstance(getattr(self, "_out_struct", None), tuple):
            return dict(zip(self._out_struct, outs))
        if getattr(self, "_out_struct", "single") == "list":
            return list(outs)
        return outs[0]

    def _call_symbolic(self, flat, structure):
        if isinstance(structure, tuple) and isinstance(getattr(self, "_in_struct", None), tuple):
            by_name = dict(zip(structure, flat))
            missing = [k for k in self._in_struct if k not in by_name]
            if missing:
                raise ValueError(f"{self.name}: missing inputs {missing}")
            flat = [by_name[k] for k in self._in_struct]
        out = Layer._call_symbolic(self, flat, structure)
        for inner, outer in zip(self._outputs or (), self._inbound_nodes[-1].outputs):
            outer._pynn_scalar = is_scalar_sample(inner)   # (None,) outputs stay (None,)
        return out

    def __call__(self, inputs, *args, training=None, mask=None, **kwargs):
        if type(inputs) is np.ndarray and not training and not args and not kwargs:
            return self.predict(inputs, verbose=0)  # the common eager call, without the walk
        flat, _ = flatten_inputs(inputs, self.name)
        if flat and all(isinstance(t, KerasTensor) for t in flat):
            return Layer.__call__(self, inputs, *args, training=training, mask=mask, **kwargs)
        if mask is not None:
            raise ValueError(f"{self.name}: mask: masks come from the model's own layers "
                             f"(Embedding(mask_zero=True), Masking); got {type(mask).__name__}")
        if training:
            return self._call_training(inputs)
        return self.predict(inputs, verbose=0)

    def _call_training(self, inputs):
        """Keras's ``model(x, training=True)``: one forward pass in training mode. Dropout,
        noise and augmentation are active with a new draw per call (reproducible from the
        layers' seeds and the call count), BatchNormalization normalises by the batch's
        statistics and updates its moving statistics (as Keras 3 does); no weight changes."""
        xs = self._prepare_inputs(inputs, check_finite=False)
        graph = self._predict_graph()
        call = self._eager_train_calls
        self._eager_train_calls = call + 1
        return self._structure_outputs(graph.forward_train(xs, call))

    @property
    def output_shape(self) -> Any:
        """Keras's form: one shape with the batch axis, or a list of them."""
        if not self._outputs:
            return Layer.output_shape.fget(self)   # type: ignore[attr-defined]
        shapes = [t.shape for t in self._outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    # --- description ------------------------------------------------------------------------
    def summary(self, line_length: int | None = None,
                print_fn: Callable[..., Any] | None = None, expand_nested: bool = False,
                show_trainable: bool = False) -> None:
        """Prints the layers, output shapes, parameter counts and (for functional models) what
        each layer is connected to, then the peak activation memory of training."""
        from pynn.models.summary import print_summary

        print_summary(self, line_length, print_fn)

    def get_config(self) -> dict:
        from pynn.models.functional_config import functional_config

        return functional_config(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    custom_objects: Mapping[str, Any] | None = None) -> Model:
        from pynn.models.functional_config import model_from_config

        return model_from_config(config, custom_objects)

    # --- state: weights by name, compile configuration, optimizer state --------------------
    def get_weight_paths(self) -> dict:
        """``{path: Weight}`` for every weight, with Keras 3's unique path-like names
        ("dense_1/kernel"; a nested model prefixes its name: "encoder/dense/kernel")."""
        from pynn.models.state import weight_paths

        self._require_built("get_weight_paths")
        return weight_paths(self)

    def get_state(self) -> dict:
        """Everything needed to recreate this model and continue its training exactly: config,
        weights by path, the seeds its layers drew, compile configuration and optimizer state
        (see `pynn.models.state`). Saving and pickling both use it."""
        from pynn.models.state import get_state

        return get_state(self)

    def set_state(self, state, compile=True) -> None:
        """Restores `get_state()` of a model with the same architecture (weights matched by
        path; with `compile`, its compile configuration and optimizer state too)."""
        from pynn.models.state import set_state

        set_state(self, state, compile=compile)

    def __reduce__(self):
        # Pickled as its state and rebuilt from it (no initializer runs on unpickling).
        from pynn.models.state import reduce_model

        return reduce_model(self)

    def __repr__(self):
        return f"<pynn.{type(self).__name__} name={self.name}>"


class _SymbolicBool(TypeError):
    pass


def _symbolic_bool(self):
    raise _SymbolicBool(
        "a symbolic tensor has no value while the model is traced, so Python control flow "
        "(if/while/and/or) cannot depend on it; pynn traces call() once into a static graph. "
        "Compute both branches and combine them with layers (e.g. Maximum, Multiply) instead")


# (set through setattr: the method is declared on KerasTensor for type checkers)
setattr(KerasTensor, "__bool__", _symbolic_bool)  # noqa: B010


def _camel_to_snake(name):
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


__all__ = ["Model"]
