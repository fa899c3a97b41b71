"""Lambda: a layer made of a Python function written with `pynn.ops` (Keras's Lambda).

Invariants:
  - The function is traced, not run per batch: on symbolic inputs of given per-sample shapes
    it is called once, on fresh `pynn.Input` tensors, and the nodes it records (ops and any
    layers it calls) are kept; every emission of the layer replays those nodes into the graph.
    A new trace is made only for input shapes not seen before ("once per build").
  - On arrays the layer simply calls the function (eager pynn.ops), as Keras does.
  - The layer owns no weights. Layers created or captured inside the function are not
    tracked (Keras warns about the same); their weights still train where the graph uses them.
  - Its config holds only its name: code cannot be saved, and `pynn.layers.deserialize`
    refuses to load a Lambda from a file.
"""
from __future__ import annotations

from pynn.layers import masks
from pynn.layers.layer import KerasTensor, Layer, flatten_inputs


class _Trace:
    def __init__(self, inputs, outputs, nodes):
        self.inputs = inputs     # the Input tensors the function was called on
        self.outputs = outputs   # the symbolic tensors it returned (flat)
        self.nodes = nodes       # the recorded calls between them, in topological order


class Lambda(Layer):
    """Wraps ``function(inputs, **arguments)`` as a layer.

    Args:
        function: called on the layer's input (a tensor, or the list / dict of tensors the
            layer is called on); uses `pynn.ops` (and layers) and returns a tensor or a list
            of tensors.
        output_shape: optional check of the traced output shape: a shape (with or without the
            batch axis) or a function of the input shape (Keras's form, batch axis included).
        arguments: optional keyword arguments passed to the function.

    Example:
        >>> x = pynn.Input((4,))
        >>> y = pynn.layers.Lambda(lambda t: pynn.ops.square(t) * 0.5)(x)
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"{self.name}: function must be callable, got {function!r}")
        if mask is not None:
            raise ValueError(f"{self.name}: masks are not supported (mask={mask!r})")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"{self.name}: arguments must be a dict, got {arguments!r}")
        self.function = function
        self.arguments = dict(arguments or {})
        self._output_shape_arg = output_shape
        self._structure = "single"
        self._traces = {}

    def __call__(self, inputs, *args, training=None, mask=None, **kwargs):
        flat, structure = flatten_inputs(inputs, self.name)
        if flat and not any(isinstance(t, KerasTensor) for t in flat):
            return self.function(inputs, **self.arguments)      # eager: NumPy in, NumPy out
        self._structure = structure
        return super().__call__(inputs, *args, training=training, mask=mask, **kwargs)

    # --- tracing ------------------------------------------------------------------------------
    def _trace_for(self, shapes):
        key = (self._structure if isinstance(self._structure, tuple) else len(shapes),
               tuple(tuple(s) for s in shapes))
        trace = self._traces.get(key)
        if trace is None:
            trace = self._traces[key] = self._trace(shapes)
        return trace

    def _trace(self, shapes):
        from pynn.layers.reshaping import Input
        from pynn.models.model import _topological_nodes

        ins = [Input(s) for s in shapes]
        if isinstance(self._structure, tuple):
            arg = dict(zip(self._structure, ins))
        elif self._structure == "list" or len(ins) > 1:
            arg = list(ins)
        else:
            arg = ins[0]
        try:
            out = self.function(arg, **self.arguments)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{self.name}: {exc}") from exc
        flat = list(out) if isinstance(out, (list, tuple)) else [out]
        if not flat or not all(isinstance(t, KerasTensor) and t._history is not None
                               for t in flat):
            raise TypeError(f"{self.name}: the function must return symbolic tensors computed "
                            f"from its input with pynn.ops or layers, got {out!r}")
        try:
            nodes = _topological_nodes(ins, flat)
        except ValueError as exc:
            raise ValueError(f"{self.name}: the function's result must depend only on its "
                             f"input(s): {exc}") from None
        trace = _Trace(ins, flat, nodes)
        self._check_output_shape(shapes, [t.sample_shape for t in flat])
        return trace

    def _check_output_shape(self, in_shapes, out_shapes):
        want = self._output_shape_arg
        if want is None:
            return
        if callable(want):
            arg = [(None,) + tuple(s) for s in in_shapes]
            want = want(arg[0] if len(arg) == 1 else arg)
        want = tuple(want)
        if want and want[0] is None:
            want = want[1:]
        got = tuple(out_shapes[0])
        if want == () and got == (1,):     # one value per sample, stored as (1,)
            return
        if len(out_shapes) != 1 or tuple(want) != got:
            raise ValueError(f"{self.name}: output_shape says {(None,) + tuple(want)}, the "
                             f"function returns "
                             f"{[(None,) + tuple(s) for s in out_shapes]}")

    # --- the graph ----------------------------------------------------------------------------
    def _emit(self, spec, inputs):
        trace = self._trace_for([spec.shapes[t] for t in inputs])
        value = {id(t): tid for t, tid in zip(trace.inputs, inputs)}
        for node in trace.nodes:
            ins = [value[id(t)] for t in node.inputs]
            # _emit, not _emit_node: Keras calls the function inside Lambda.call(), where a
            # layer's activity loss is not collected either
            outs = node.layer._emit(spec, ins)
            masks.propagate(node.layer, spec, ins, outs)
            for t, tid in zip(node.outputs, outs):
                value[id(t)] = tid
        return [value[id(t)] for t in trace.outputs]

    def get_config(self) -> dict:
        return {"name": self.name}
