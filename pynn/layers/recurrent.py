"""Recurrent layers (Keras 3 names, arguments, defaults and weight layouts): SimpleRNN, LSTM,
GRU, Bidirectional and TimeDistributed.

Each recurrent layer is one ``rnn`` graph op (csrc/nn/ops/rnn.cpp, twin in
pynn/reference/rnn.py): the input projection of every step as one GEMM, then per step the
recurrent GEMM and one fused pass for the gates and the state update; backpropagation
through time the same way. Weights are Keras's: kernel (features, G * units),
recurrent_kernel (units, G * units) and bias (G * units,), gates in Keras's order (LSTM:
input, forget, cell, output; GRU: update, reset, candidate); a GRU with ``reset_after=True``
(the default) has a (2, 3 * units) bias, input bias then recurrent bias. So
``layer.set_weights(keras_layer.get_weights())`` gives Keras's outputs.

A mask (Embedding(mask_zero=True), Masking) reaches the recurrent layer through the graph:
a masked step keeps the previous state, and its output is that state.

dropout / recurrent_dropout (training only; none at inference) draw their masks once per
sequence, as Keras 3 does (its cells cache them for every step of a batch): over the input
features and over h' where it enters the recurrent kernel, each entry kept with probability
1 - rate and scaled by 1 / (1 - rate). With recurrent_dropout = 0 Keras 3 (LSTM/GRU
implementation 2) also shares one input mask across the gates, as pynn does. With
recurrent_dropout > 0 Keras switches to implementation 1 and draws one input mask and one
recurrent mask per gate (4 for LSTM, 3 for GRU, independent). pynn does the same: each
gate's columns are computed from x and h' through that gate's own masks (one GEMM per gate;
a GRU without reset_after forms r * h' from the candidate gate's mask of h', as Keras does).
The masks follow Keras's law (per entry, per sequence, independent across gates), not its
random stream. SimpleRNN has one of each in both.

Mixed precision (``dtype="mixed_bfloat16"`` or that global policy, `pynn.mixed_precision`):
every product of the layer runs on the bf16 GEMM (operands rounded to bfloat16, nearest
even; float32 sums): the input projection of all steps, the recurrent product h_{t-1} U of
each step (h_{t-1} and U rounded), and in backpropagation through time dh_{t-1} = dz U^T,
dx = dz W^T, dW = x^T dz and dU = h_{t-1}^T dz. The weights, the bias, the gate activations,
the cell state and h stay float32 (Keras also rounds the outputs and states passed between
its ops to bfloat16; pynn keeps them float32).

Not supported (a clear error): stateful=True, initial_state, activations with non-default
parameters.
"""
from __future__ import annotations

import numbers
from typing import Any

from pynn import _random, activations, constraints, initializers, regularizers
from pynn.layers.embedding import mask_of, set_mask
from pynn.layers.layer import Layer, positive_int, real_in
from pynn.layers.regularization import Dropout

_STATELESS = "stateful=True is not supported: pynn's recurrent layers start every batch " \
             "from the zero state"


class RNN(Layer):
    """The shared part of SimpleRNN, LSTM and GRU (not a public layer: Keras's generic RNN
    takes a cell object, pynn's three cells are built in)."""

    cell = "simple"
    gates = 1
    supports_masking = True
    _masks_in_emit = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, zero_output_for_mask=False,
                 **kwargs):
        kwargs.pop("use_cudnn", None)   # a GPU switch in Keras; nothing to choose here
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = positive_int(units, "units")
        self.activation = _activation(activation, "activation")
        self.recurrent_activation = _activation(recurrent_activation, "recurrent_activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer")
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer,
                                                      "recurrent_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        # applied to the whole Keras-layout array after each optimizer step, as Keras does
        self.kernel_constraint = constraints.get(kernel_constraint, "kernel_constraint")
        self.recurrent_constraint = constraints.get(recurrent_constraint,
                                                    "recurrent_constraint")
        self.bias_constraint = constraints.get(bias_constraint, "bias_constraint")
        self.dropout = real_in(dropout, "dropout", 0.0, 1.0, hi_open=True)
        self.recurrent_dropout = real_in(recurrent_dropout, "recurrent_dropout", 0.0, 1.0,
                                         hi_open=True)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed: expected an integer or None, got {seed!r}")
        self.seed = seed
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        if stateful:
            raise ValueError(f"stateful: {_STATELESS}")
        self.stateful = False
        self.unroll = bool(unroll)   # no effect: the op runs the loop either way
        self._time_order = False     # sequence output by time (Bidirectional's backward half)
        self.zero_output_for_mask = bool(zero_output_for_mask)

    # --- weights ----------------------------------------------------------------------------
    def _bias_shape(self):
        return (self.gates * self.units,)

    def build(self, input_shape: Any) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: {type(self).__name__} expects inputs of shape "
                             f"(batch, timesteps, features), got {tuple(input_shape)}")
        g = self.gates * self.units
        self.kernel = self.add_weight((input_shape[-1], g), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint, name="kernel")
        self.recurrent_kernel = self.add_weight((self.units, g), self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint,
                                                name="recurrent_kernel")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(self._bias_shape(), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint, name="bias")

    def _attrs(self):
        return {"cell": self.cell, "units": self.units, "activation": self.activation,
                "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "time_order": self._time_order,
                "zero_output_for_mask": self.zero_output_for_mask, **self._dropout_attrs(),
                **self._dtype_attrs()}

    def _dtype_attrs(self):
        # mixed_bfloat16: every product of the op (input projection, recurrent GEMM, BPTT)
        # on the bf16 GEMM; states, gates and sums stay float32
        return {"compute_dtype": "bfloat16"} if self.compute_dtype == "bfloat16" else {}

    def _dropout_attrs(self):
        if not (self.dropout or self.recurrent_dropout):
            return {}
        if getattr(self, "_built_seed", None) is None:
            self._built_seed = (_random.next_seed() if self.seed is None
                                else int(self.seed) % 2**63)
        return {"dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "seed": self._built_seed}

    # --- the graph --------------------------------------------------------------------------
    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        if len(shape) != 2:
            raise ValueError(f"{self.name}: {type(self).__name__} expects inputs of shape "
                             f"(batch, timesteps, features), got {(None,) + shape}")
        steps, features = shape
        if features != self.kernel.shape[0]:
            raise ValueError(f"{self.name}: expects {self.kernel.shape[0]} features per step "
                             f"(it was built for them), got input shape {(None,) + shape}")
        mask = mask_of(spec, x)
        ins = [x] if mask is None else [x, mask]
        u = self.units
        rows = steps if self.return_sequences else 1
        nstate = (2 if self.cell == "lstm" else 1) if self.return_state else 0
        main = (steps, u) if self.return_sequences else (u,)
        out = (rows + nstate, u) if nstate else main
        (y,) = spec.add_node("rnn", ins, [out], self._param_ids(spec), self._attrs(), self.name)
        if not nstate:
            if self.return_sequences:
                set_mask(spec, y, mask)
            return [y]
        outs = []
        for k, (begin, size) in enumerate([(0, rows)] + [(rows + s, 1) for s in range(nstate)]):
            (part,) = spec.add_node("slice", [y], [(size, u)], attrs={"begin": begin,
                                                                       "size": size},
                                    name=f"{self.name}_out{k}")
            if k or not self.return_sequences:
                (part,) = spec.add_node("reshape", [part], [(u,)], attrs={"target_shape": [u]},
                                        name=f"{self.name}_out{k}")
            elif self.return_sequences:
                set_mask(spec, part, mask)
            outs.append(part)
        return outs

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed, "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "stateful": False, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask}


def _activation(value, what):
    name, params = activations.resolve("linear" if value is None else value)
    if name == "softmax":
        raise ValueError(f"{what}: softmax is not an element-wise activation, got {value!r}")
    defaults = list(activations.resolve(name)[1])
    if params != defaults:
        raise ValueError(f"{what}: only default activation parameters are supported in "
                         f"recurrent layers, got {value!r}")
    return name


class SimpleRNN(RNN):
    """A fully connected recurrent layer: ``h_t = activation(x_t W + b + h_{t-1} U)``.

    Args:
        units: size of the state and the output.
        activation: default "tanh".
        use_bias, kernel_initializer, recurrent_initializer ("orthogonal"),
        bias_initializer, kernel/recurrent/bias_regularizer: as Keras.
        return_sequences: output every step's h (batch, timesteps, units), else the last.
        return_state: also return the final state (a list [output, h]).
        go_backwards: read the sequence from its end (outputs in that order).
        activity_regularizer: applied to every output, as for LSTM and GRU. (Keras 3.15's
            SimpleRNN accepts and saves it but never applies it, so there a file with one
            trains without the penalty.)

    Shapes: (batch, timesteps, features) -> (batch, units) or (batch, timesteps, units).

    Example:
        >>> layer = SimpleRNN(8, return_sequences=True)
    """

    cell, gates = "simple", 1

    def __init__(self, units, activation="tanh", use_bias=True, **kwargs):
        kwargs.pop("recurrent_activation", None)
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)

    def get_config(self) -> dict:
        return super().get_config()


class LSTM(RNN):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), as Keras computes it:
    ``i, f, o = recurrent_activation(.)``, ``g = activation(.)`` of ``x W + b + h U`` split
    into four (order i, f, c, o), ``c = f c' + i g`` and ``h = o activation(c)``.

    Args:
        units, activation ("tanh"), recurrent_activation ("sigmoid"), use_bias, initializers
        and regularizers as Keras; unit_forget_bias (default True) starts the forget gate's
        bias at 1; return_sequences, return_state ([output, h, c]), go_backwards.

    Shapes: (batch, timesteps, features) -> (batch, units) or (batch, timesteps, units).

    Example:
        >>> layer = LSTM(128)
    """

    cell, gates = "lstm", 4

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        if self.bias is not None and self.unit_forget_bias:
            self.bias.value[self.units:2 * self.units] = 1.0   # the forget gate starts open

    def get_config(self) -> dict:
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias}


class GRU(RNN):
    """Gated recurrent unit (Cho et al., 2014), as Keras 3 computes it: update gate z, reset
    gate r, candidate ``hh = activation(x Wh + bh + r (h' Uh + rbh))`` (reset_after=True, the
    default; otherwise ``activation(x Wh + bh + (r h') Uh)``) and ``h = z h' + (1 - z) hh``.

    Args:
        units, activation, recurrent_activation, use_bias, initializers, regularizers,
        return_sequences, return_state ([output, h]), go_backwards as Keras; reset_after.

    Shapes: (batch, timesteps, features) -> (batch, units) or (batch, timesteps, units).
    The bias is (2, 3 * units) with reset_after, else (3 * units,).

    Example:
        >>> layer = GRU(32, return_sequences=True)
    """

    cell, gates = "gru", 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _attrs(self):
        return {**super()._attrs(), "reset_after": self.reset_after}

    def get_config(self) -> dict:
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after}


_MERGE_OPS = {"sum": "add", "mul": "multiply", "ave": "average"}


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards over the sequence and
    merges the two outputs.

    Args:
        layer: a SimpleRNN, LSTM or GRU (the forward half).
        merge_mode: "concat" (default), "sum", "mul", "ave" or None (a list of both).
        backward_layer: the backward half (default: a copy of `layer` with go_backwards).

    The backward half's sequence output is put back in time order before merging, as Keras
    does. Weights: the forward layer's, then the backward layer's (Keras's order).

    Example:
        >>> layer = Bidirectional(LSTM(16, return_sequences=True))
    """

    supports_masking = True
    _masks_in_emit = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        if isinstance(layer, dict):
            from pynn.layers import deserialize

            layer = deserialize(layer)
        if isinstance(backward_layer, dict):
            from pynn.layers import deserialize

            backward_layer = deserialize(backward_layer)
        if not isinstance(layer, RNN):
            raise ValueError(f"layer: expected a SimpleRNN, LSTM or GRU layer, got {layer!r}")
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise ValueError(f"merge_mode: expected 'concat', 'sum', 'mul', 'ave' or None, "
                             f"got {merge_mode!r}")
        super().__init__(**kwargs)
        self.merge_mode = merge_mode
        self.forward_layer = layer
        if backward_layer is None:
            cfg = layer.get_config()
            cfg["name"] = f"backward_{layer.name}"
            cfg["go_backwards"] = not layer.go_backwards
            backward_layer = type(layer).from_config(cfg)
        elif not isinstance(backward_layer, RNN):
            raise ValueError(f"backward_layer: expected a SimpleRNN, LSTM or GRU layer, got "
                             f"{backward_layer!r}")
        if backward_layer.return_sequences != layer.return_sequences or \
                backward_layer.return_state != layer.return_state:
            raise ValueError("backward_layer: return_sequences and return_state must match "
                             "the forward layer's")
        self.backward_layer = backward_layer
        self.backward_layer._time_order = True
        for lay in (self.forward_layer, self.backward_layer):   # as Keras forces it
            lay.zero_output_for_mask = lay.zero_output_for_mask or lay.return_sequences
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        if weights is not None:
            self.set_weights(list(weights))

    def _sublayers(self):
        return [self.forward_layer, self.backward_layer]

    def _all_weights(self):
        return self.forward_layer._all_weights() + self.backward_layer._all_weights()

    def build(self, input_shape: Any) -> None:
        for lay in (self.forward_layer, self.backward_layer):
            lay._build_for([tuple(input_shape[1:])])

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        # Keras calls each direction as a layer, so an inner activity_regularizer counts
        fw = self.forward_layer._emit_node(spec, [x])
        bw = self.backward_layer._emit_node(spec, [x])
        a, b = fw[0], bw[0]
        states = fw[1:] + bw[1:]
        if self.merge_mode is None:
            if self.return_sequences:
                set_mask(spec, a, mask_of(spec, x))
                set_mask(spec, b, mask_of(spec, x))
            return [a, b] + states
        shape = spec.shapes[a]
        if self.merge_mode == "concat":
            out = shape[:-1] + (shape[-1] * 2,)
            (y,) = spec.add_node("concatenate", [a, b], [out], attrs={"axis": -1},
                                 name=self.name)
        else:
            (y,) = spec.add_node(_MERGE_OPS[self.merge_mode], [a, b], [shape], name=self.name)
        if self.return_sequences:
            set_mask(spec, y, mask_of(spec, x))
        return [y] + states

    def get_config(self) -> dict:
        from pynn.layers import serialize

        return {**super().get_config(), "layer": serialize(self.forward_layer),
                "backward_layer": serialize(self.backward_layer),
                "merge_mode": self.merge_mode}


class TimeDistributed(Layer):
    """Applies a layer to every time step of its input. The wrapped layer must act on the
    last axis alone (Dense, Activation, Dropout...): pynn's ops already treat the leading
    axes as rows, so the layer runs once over all steps.

    Shapes: (batch, timesteps, ...) -> (batch, timesteps, ...the layer's output).

    Example:
        >>> layer = TimeDistributed(Dense(8))
    """

    _ROW_WISE = ("Dense", "Activation", "Dropout", "ReLU", "LeakyReLU", "ELU", "Softmax")
    supports_masking = True
    _masks_in_emit = True

    def __init__(self, layer, **kwargs):
        if isinstance(layer, dict):
            from pynn.layers import deserialize

            layer = deserialize(layer)
        if not isinstance(layer, Layer):
            raise ValueError(f"layer: expected a layer, got {layer!r}")
        if type(layer).__name__ not in self._ROW_WISE:
            raise ValueError(f"layer: TimeDistributed supports layers that act on the last "
                             f"axis ({', '.join(self._ROW_WISE)}), got "
                             f"{type(layer).__name__}")
        super().__init__(**kwargs)
        self.layer = layer

    def _sublayers(self):
        return [self.layer]

    def _all_weights(self):
        return self.layer._all_weights()

    def build(self, input_shape: Any) -> None:
        if len(input_shape) < 3:
            raise ValueError(f"{self.name}: TimeDistributed expects (batch, timesteps, ...), "
                             f"got {tuple(input_shape)}")
        self.layer._build_for([tuple(input_shape[1:])])

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        # _emit, not _emit_node: Keras runs the inner layer's call() on the folded batch, so
        # its activity_regularizer is not applied there either
        if isinstance(self.layer, Dropout) and self.layer.noise_shape is not None:
            # its noise_shape describes one step's input (batch * steps, ...)
            outs = self.layer._dropout_node(spec, x, self.layer._mask_shape(spec.shapes[x], 1))
        else:
            outs = self.layer._emit(spec, [x])
        set_mask(spec, outs[0], mask_of(spec, x))
        return outs

    def get_config(self) -> dict:
        from pynn.layers import serialize

        return {**super().get_config(), "layer": serialize(self.layer)}
