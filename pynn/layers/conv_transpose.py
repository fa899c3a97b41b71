"""Transposed convolutions: Conv1DTranspose and Conv2DTranspose (Keras 3 names, arguments,
defaults and weights).

Each layer is one ``conv_transpose`` graph op (csrc/nn/ops/conv_transpose.cpp, twin in
pynn/reference/conv_transpose.py): the adjoint of a convolution, each input position
spreading its kernel over the output, with the bias and activation applied after.
``data_format="channels_first"`` wraps the op in two transposes (``permute`` ops), as the
other convolution layers do; the weights keep Keras's layout either way. Under the
mixed_bfloat16 policy (`pynn.mixed_precision`) the op's products read x, the kernel and the
output gradient rounded to bf16 and sum in float32; weights, bias and db stay float32.
"""
from __future__ import annotations

import numbers

from pynn.layers.convolutional import (
    PADDINGS,
    BaseConv,
    check_rank,
    compute_attrs,
    from_channels_last,
    padding_arg,
    to_channels_last,
)


def output_padding_arg(value, strides, rank):
    """None, or one integer in [0, stride) per axis (an int applies to every axis)."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * rank
    try:
        value = tuple(value)
    except TypeError:
        value = (value,)
    if len(value) != rank or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0
            for v in value):
        raise ValueError(f"output_padding: expected None, a non-negative integer or a tuple of "
                         f"{rank} non-negative integers. Received: output_padding={value!r}")
    value = tuple(int(v) for v in value)
    for axis, (p, s) in enumerate(zip(value, strides)):
        if p >= s:
            raise ValueError(f"output_padding: each value must be less than the stride on its "
                             f"axis; on axis {axis} output_padding is {p} and strides is {s}. "
                             f"Received: output_padding={value}, strides={strides}")
    return value


def transposed_length(length, k, stride, dilation, padding, output_padding):
    """The output length of one spatial axis, as Keras computes it."""
    span = (k - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return (length - 1) * stride + span + extra
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + span % 2 + output_padding


def transposed_crop(k, stride, dilation, padding, output_padding):
    """How many leading positions of the full output ((length - 1) * stride + span, every
    position an input reaches) the layer's output leaves out on one spatial axis."""
    span = (k - 1) * dilation + 1
    if padding == "valid":
        return 0
    total = stride + span - 2 if output_padding is None else span + span % 2 - 2 + output_padding
    return span - 1 - min(total // 2 + total % 2, span - 1)


class BaseConvTranspose(BaseConv):
    """The transposed convolution over `rank` spatial axes (see Conv1DTranspose and
    Conv2DTranspose): BaseConv's arguments without groups, plus output_padding."""

    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        padding_arg(padding, PADDINGS)      # no "causal" here, on any rank
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, 1,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        self.output_padding = output_padding_arg(output_padding, self.strides, self.rank)
        if self.activation == "rrelu":
            raise ValueError("activation: 'rrelu' draws random slopes; add an Activation "
                             "layer after this one instead")

    def _kernel_shape(self, channels):
        return self.kernel_size + (self.filters, channels)   # Keras's (*k, filters, in)

    def _spatial_output(self, spatial, shape):
        opad = self.output_padding or (None,) * self.rank
        out = tuple(transposed_length(n, k, s, d, self.padding, p) for n, k, s, d, p in
                    zip(spatial, self.kernel_size, self.strides, self.dilation_rate, opad))
        if min(out) < 1:
            raise ValueError(f"{self.name}: the output of shape {out} would be empty for the "
                             f"input of shape {(None,) + tuple(shape)} (kernel_size="
                             f"{self.kernel_size}, padding='same', output_padding="
                             f"{self.output_padding})")
        return out

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        check_rank(self, shape, self.rank, self.data_format)
        cin = self.kernel.shape[-1]
        if self._channels(shape) != cin:
            raise ValueError(f"{self.name}: {type(self).__name__} was built for {cin} input "
                             f"channels, got input shape {(None,) + shape}")
        x = to_channels_last(spec, self, x, self.data_format)
        out_shape = self._spatial_output(spec.shapes[x][:-1], shape) + (self.filters,)
        attrs = {"strides": list(self.strides), "padding": self.padding,
                 "output_padding": list(self.output_padding or ()),
                 "dilation_rate": list(self.dilation_rate), "activation": self.activation,
                 "act_params": list(self._act_params), "use_bias": self.use_bias,
                 **compute_attrs(self)}
        (y,) = spec.add_node("conv_transpose", [x], [out_shape], self._param_ids(spec), attrs,
                             self.name)
        return from_channels_last(spec, self, y, self.data_format)

    def get_config(self):
        cfg = super().get_config()
        del cfg["groups"]
        cfg["output_padding"] = None if self.output_padding is None else list(self.output_padding)
        return cfg


class Conv1DTranspose(BaseConvTranspose):
    """1-D transposed convolution (Keras's Conv1DTranspose): each input step spreads its
    kernel over `kernel_size` output steps, `strides` apart per input step; the usual way
    to upsample a sequence with learned weights.

    Args:
        filters: number of output channels (positive integer).
        kernel_size: window length (int or a tuple of one int).
        strides: output steps per input step (int or tuple of one int). Default 1.
        padding: "valid" (output (steps - 1) * strides + max(kernel_size, strides)) or
            "same" (output steps * strides).
        output_padding: None (the lengths above) or an int in [0, strides): extra steps at
            the end, the output then being (steps - 1) * strides + kernel_size +
            output_padding ("valid") or (steps - 1) * strides + kernel_size % 2 +
            output_padding ("same"), kernel_size counted with its dilation.
        data_format: "channels_last" (default, inputs (batch, steps, channels)) or
            "channels_first" (inputs (batch, channels, steps)).
        dilation_rate: spacing between the kernel's taps. Default 1.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, kernel_constraint, bias_constraint: as for Dense.

    Shapes: (batch, steps, channels) -> (batch, new_steps, filters). Weights as in Keras:
    kernel (kernel_size, filters, channels), bias (filters,).

    Example:
        >>> layer = Conv1DTranspose(8, 3, strides=2, padding="same")   # doubles the steps
    """

    rank = 1


class Conv2DTranspose(BaseConvTranspose):
    """2-D transposed convolution (Keras's Conv2DTranspose, the "deconvolution" of decoders
    and generators): each input pixel spreads its kernel over the output, `strides` apart.

    Args:
        filters: number of output channels (positive integer).
        kernel_size: window (int, or a tuple (height, width)).
        strides: output pixels per input pixel on each axis (int or tuple of two).
        padding: "valid" (output (size - 1) * strides + max(kernel_size, strides) per axis)
            or "same" (output size * strides).
        output_padding: None or ints in [0, strides) per axis (int or tuple of two), as for
            Conv1DTranspose.
        data_format: "channels_last" (default, inputs (batch, height, width, channels)) or
            "channels_first" (inputs (batch, channels, height, width)).
        dilation_rate: spacing between the kernel's taps (int or tuple of two). Default 1.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, kernel_constraint, bias_constraint: as for Dense.

    Shapes: (batch, height, width, channels) -> (batch, new_height, new_width, filters).
    Weights as in Keras: kernel (kh, kw, filters, channels), bias (filters,).

    Example:
        >>> model = pynn.Sequential([pynn.Input((7, 7, 16)),
        ...                          Conv2DTranspose(8, 3, strides=2, padding="same")])
        >>> model.output_shape
        (None, 14, 14, 8)
    """

    rank = 2
