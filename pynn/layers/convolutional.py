"""Convolution layers: Conv1D and Conv2D (Keras 3 names, arguments, defaults and weights).

Each layer is one ``conv`` graph op (csrc/nn/ops/conv.cpp, twin in pynn/reference/conv.py):
an implicit GEMM with the bias and activation fused. ``data_format="channels_first"`` wraps
the op in two transposes (``permute`` ops): the weights keep Keras's layout either way.
"""
from __future__ import annotations

import math
import numbers

from pynn import _random, activations, constraints, initializers, regularizers
from pynn.layers.layer import Layer, positive_int

PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")


def int_tuple(value, rank, name):
    """A positive int or a tuple of `rank` positive ints as a tuple (Keras's standardize_tuple),
    or ValueError naming the argument."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * rank
    try:
        value = tuple(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer or a tuple of {rank} integers. "
                         f"Received: {name}={value!r}") from None
    if len(value) != rank or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"{name}: expected a positive integer or a tuple of {rank} positive "
                         f"integers. Received: {name}={value!r}")
    return tuple(int(v) for v in value)


def padding_arg(value, allowed, name="padding"):
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{name}: expected one of {list(allowed)}. Received: {name}={value!r}")
    return value.lower()


def data_format_arg(value):
    if value is None:
        return "channels_last"
    if value not in DATA_FORMATS:
        raise ValueError(f"data_format: expected 'channels_last' or 'channels_first' (or None). "
                         f"Received: data_format={value!r}")
    return value


def output_length(length, k, stride, dilation, padding):
    """The output length of one spatial axis (None when the window does not fit): valid
    (length - span) // stride + 1, same and causal ceil(length / stride)."""
    if padding == "valid":
        span = (k - 1) * dilation + 1
        return (length - span) // stride + 1 if length >= span else None
    return -(-length // stride)


def compute_attrs(layer):
    """The conv op's ``compute_dtype`` attribute for a layer under the mixed_bfloat16 policy
    (products of bf16-rounded operands, float32 sums: csrc/nn/ops/conv.cpp), else nothing."""
    return {"compute_dtype": "bfloat16"} if layer.compute_dtype == "bfloat16" else {}


def to_channels_last(spec, layer, x, data_format):
    """x itself, or a permute of a channels_first sample (C, *spatial) to (*spatial, C)."""
    if data_format == "channels_last":
        return x
    shape = spec.shapes[x]
    r = len(shape)
    dims = list(range(2, r + 1)) + [1]
    return spec.add_node("permute", [x], [shape[1:] + shape[:1]], [], {"dims": dims},
                         layer.name)[0]


def from_channels_last(spec, layer, y, data_format):
    """y itself, or y (*spatial, C) permuted back to (C, *spatial)."""
    if data_format == "channels_last":
        return [y]
    shape = spec.shapes[y]
    r = len(shape)
    dims = [r] + list(range(1, r))
    return spec.add_node("permute", [y], [shape[-1:] + shape[:-1]], [], {"dims": dims},
                         layer.name)


def spatial_output(layer, spatial, shape):
    """The output's spatial sizes for a window layer (kernel_size, strides, dilation_rate,
    padding attributes) over channels_last `spatial` sizes, or ValueError when the window
    does not fit (`shape` is the layer's input shape, for the message)."""
    out = []
    for axis, (n, k, s, d) in enumerate(zip(spatial, layer.kernel_size, layer.strides,
                                            layer.dilation_rate)):
        length = output_length(n, k, s, d, layer.padding)
        if length is None:
            raise ValueError(f"{layer.name}: kernel_size={layer.kernel_size} with "
                             f"dilation_rate={layer.dilation_rate} does not fit in the "
                             f"input of shape {(None,) + tuple(shape)} with padding='valid' "
                             f"(spatial axis {axis} has {n} positions); use "
                             f"padding='same' or a smaller kernel")
        out.append(length)
    return tuple(out)


def check_rank(layer, shape, rank, data_format):
    if len(shape) != rank + 1:
        axes = {1: "steps", 2: "height, width"}[rank]
        want = (f"(batch, {axes}, channels)" if data_format == "channels_last"
                else f"(batch, channels, {axes})")
        raise ValueError(f"{layer.name}: {type(layer).__name__} expects inputs of shape {want}, "
                         f"got input shape {(None,) + tuple(shape)}")


class BaseConv(Layer):
    """The convolution of `rank` spatial axes (see Conv1D and Conv2D)."""

    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        rank = self.rank
        self.filters = positive_int(filters, "filters")
        self.kernel_size = int_tuple(kernel_size, rank, "kernel_size")
        self.strides = int_tuple(strides, rank, "strides")
        self.padding = padding_arg(padding, PADDINGS + (("causal",) if rank == 1 else ()))
        self.data_format = data_format_arg(data_format)
        self.dilation_rate = int_tuple(dilation_rate, rank, "dilation_rate")
        self.groups = positive_int(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(f"groups: the number of filters must be divisible by the number "
                             f"of groups. Received: filters={self.filters}, groups={self.groups}")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"strides > 1 is not supported together with dilation_rate > 1 "
                             f"(as in Keras). Received: strides={self.strides}, "
                             f"dilation_rate={self.dilation_rate}")
        self.activation, self._act_params = activations.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        self.kernel_constraint = constraints.get(kernel_constraint, "kernel_constraint")
        self.bias_constraint = constraints.get(bias_constraint, "bias_constraint")

    def _channels(self, shape):
        return shape[-1] if self.data_format == "channels_last" else shape[0]

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels // self.groups, self.filters)

    def build(self, input_shape):
        shape = tuple(input_shape)[1:]
        check_rank(self, shape, self.rank, self.data_format)
        channels = self._channels(shape)
        if channels % self.groups:
            raise ValueError(f"{self.name}: the number of input channels ({channels}, input "
                             f"shape {(None,) + shape}) must be divisible by groups="
                             f"{self.groups}")
        kshape = self._kernel_shape(channels)
        if math.prod(kshape) > 2**31 - 1:
            raise ValueError(f"{self.name}: a kernel of shape {kshape} is larger than pynn's "
                             f"limit of 2**31 - 1 floats per weight")
        self.kernel = self.add_weight(kshape, self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint, name="kernel")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight((self.filters,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint, name="bias")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        check_rank(self, shape, self.rank, self.data_format)
        cin = self.kernel.shape[-2] * self.groups
        if self._channels(shape) != cin:
            raise ValueError(f"{self.name}: {type(self).__name__} was built for {cin} input "
                             f"channels, got input shape {(None,) + shape}")
        x = to_channels_last(spec, self, x, self.data_format)
        out_shape = spatial_output(self, spec.shapes[x][:-1], shape) + (self.filters,)
        attrs = {"strides": list(self.strides), "padding": self.padding,
                 "dilation_rate": list(self.dilation_rate), "groups": self.groups,
                 "activation": self.activation, "act_params": list(self._act_params),
                 "use_bias": self.use_bias, **compute_attrs(self)}
        pids = self._param_ids(spec)
        if self.activation == "rrelu":
            # random slopes in training need an op of their own after the convolution
            (z,) = spec.add_node("conv", [x], [out_shape], pids,
                                 {**attrs, "activation": "linear", "act_params": []}, self.name)
            (y,) = spec.add_node("activation", [z], [out_shape], [],
                                 {"activation": "rrelu", "act_params": list(self._act_params),
                                  "seed": self._rrelu_seed()}, self.name)
        else:
            (y,) = spec.add_node("conv", [x], [out_shape], pids, attrs, self.name)
        return from_channels_last(spec, self, y, self.data_format)

    def _rrelu_seed(self):
        if getattr(self, "_seed", None) is None:
            self._seed = _random.next_seed()
        return self._seed

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        })
        return cfg


class Conv1D(BaseConv):
    """1-D convolution over the steps of a sequence (Keras's Conv1D).

    Args:
        filters: number of output channels (positive integer).
        kernel_size: window length (int or a tuple of one int).
        strides: step of the window (int or tuple of one int). Default 1.
        padding: "valid" (no padding), "same" (output length ceil(steps / strides)) or
            "causal" (zeros only before the sequence: output t sees inputs up to t).
        data_format: "channels_last" (default, inputs (batch, steps, channels)) or
            "channels_first" (inputs (batch, channels, steps)).
        dilation_rate: spacing between the window's taps. Default 1.
        groups: split input channels and filters into this many independent groups.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as for Dense.

    Shapes: (batch, steps, channels) -> (batch, new_steps, filters). Weights as in Keras:
    kernel (kernel_size, channels // groups, filters), bias (filters,).

    Example:
        >>> layer = Conv1D(16, 3, padding="causal", activation="relu")
    """

    rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)


class Conv2D(BaseConv):
    """2-D convolution over images (Keras's Conv2D).

    Args:
        filters: number of output channels (positive integer).
        kernel_size: window (int, or a tuple (height, width)).
        strides: step of the window (int or tuple of two). Default (1, 1).
        padding: "valid" (no padding) or "same" (output ceil(size / strides), zeros around
            the input, the odd one after, as in Keras).
        data_format: "channels_last" (default, inputs (batch, height, width, channels)) or
            "channels_first" (inputs (batch, channels, height, width)).
        dilation_rate: spacing between the window's taps (int or tuple of two). Default 1.
        groups: split input channels and filters into this many independent groups.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as for Dense.

    Shapes: (batch, height, width, channels) -> (batch, new_height, new_width, filters).
    Weights as in Keras: kernel (kh, kw, channels // groups, filters), bias (filters,).

    Example:
        >>> model = pynn.Sequential([pynn.Input((28, 28, 1)),
        ...                          Conv2D(32, 3, activation="relu")])
    """

    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
