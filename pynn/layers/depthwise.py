"""Depthwise and depthwise-separable convolutions (Keras 3 names, arguments, defaults and
weights): DepthwiseConv1D/2D and SeparableConv1D/2D.

A depthwise convolution filters every input channel on its own with `depth_multiplier`
kernels: channel c gives outputs c*depth_multiplier ... (c+1)*depth_multiplier - 1. That is
the grouped ``conv`` op with one group per input channel, and Keras's kernel
(*kernel_size, channels, depth_multiplier) is, read in memory order, exactly that op's
(*kernel_size, 1, channels*depth_multiplier) kernel: the op gets a reshaped view of the
layer's own array, so training writes straight into the Keras-shaped weight. A separable
convolution is a depthwise one (no bias, no activation) followed by a 1x1 convolution (the
pointwise kernel) with the bias and activation.
"""
from __future__ import annotations

from pynn import activations, constraints, initializers, regularizers
from pynn.layers.convolutional import (
    PADDINGS,
    check_rank,
    compute_attrs,
    data_format_arg,
    from_channels_last,
    int_tuple,
    padding_arg,
    spatial_output,
    to_channels_last,
)
from pynn.layers.layer import Layer, positive_int


class BaseDepthwise(Layer):
    """The shared part of DepthwiseConv and SeparableConv over `rank` spatial axes."""

    rank = 2

    def _init_depthwise(self, kernel_size, strides, padding, depth_multiplier, data_format,
                        dilation_rate, activation, use_bias, depthwise_initializer,
                        bias_initializer, depthwise_regularizer, bias_regularizer,
                        depthwise_constraint, bias_constraint):
        rank = self.rank
        self.kernel_size = int_tuple(kernel_size, rank, "kernel_size")
        self.strides = int_tuple(strides, rank, "strides")
        self.padding = padding_arg(padding, PADDINGS)  # Keras has no causal depthwise padding
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier")
        self.data_format = data_format_arg(data_format)
        self.dilation_rate = int_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"strides > 1 is not supported together with dilation_rate > 1 "
                             f"(as in Keras). Received: strides={self.strides}, "
                             f"dilation_rate={self.dilation_rate}")
        self.activation, self._act_params = activations.resolve(activation)
        if self.activation == "rrelu":
            raise ValueError("activation: 'rrelu' draws random slopes; add an Activation "
                             "layer after this one instead")
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer,
                                                      "depthwise_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        self.depthwise_constraint = constraints.get(depthwise_constraint,
                                                    "depthwise_constraint")
        self.bias_constraint = constraints.get(bias_constraint, "bias_constraint")
        self._views: dict = {}

    def _channels(self, shape):
        return shape[-1] if self.data_format == "channels_last" else shape[0]

    def _check_input(self, shape):
        check_rank(self, shape, self.rank, self.data_format)

    def _depthwise_shape(self, input_shape):
        shape = tuple(input_shape)[1:]
        self._check_input(shape)
        return self.kernel_size + (self._channels(shape), self.depth_multiplier)

    def _grouped_param(self, spec, weight):
        """The param id of `weight` (*k, C, m) seen by the conv op as (*k, 1, C*m): one view
        per array, so a layer used twice feeds one parameter."""
        value = weight.value
        owner, cached = self._views.get(weight.path, (None, None))
        if owner is not value:
            k = value.shape
            cached = value.reshape(k[:-2] + (1, k[-2] * k[-1]))
            self._views[weight.path] = (value, cached)
        (pid,) = self._param_ids(spec, [weight])
        ref = spec.params[pid]
        if ref.value is value:  # first use in this spec: hand the op the view instead
            spec._param_index.pop(id(value), None)
            ref.value = cached
            spec._param_index[id(cached)] = pid
        return pid

    def _depthwise_node(self, spec, x, shape, kernel, bias, activation, act_params):
        channels = kernel.shape[-2]
        if self._channels(shape) != channels:
            raise ValueError(f"{self.name}: {type(self).__name__} was built for {channels} "
                             f"input channels, got input shape {(None,) + shape}")
        out_shape = spatial_output(self, spec.shapes[x][:-1], shape) + \
            (channels * self.depth_multiplier,)
        params = [self._grouped_param(spec, kernel)]
        if bias is not None:
            params += self._param_ids(spec, [bias])
        attrs = {"strides": list(self.strides), "padding": self.padding,
                 "dilation_rate": list(self.dilation_rate), "groups": channels,
                 "activation": activation, "act_params": list(act_params),
                 "use_bias": bias is not None, **compute_attrs(self)}
        (y,) = spec.add_node("conv", [x], [out_shape], params, attrs, self.name)
        return y

    def _base_config(self):
        cfg = super().get_config()
        cfg.update({
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "depth_multiplier": self.depth_multiplier,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "activation": self.activation,
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "depthwise_constraint": constraints.serialize(self.depthwise_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        })
        return cfg


class BaseDepthwiseConv(BaseDepthwise):
    """DepthwiseConv over `rank` spatial axes (see DepthwiseConv2D)."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._init_depthwise(kernel_size, strides, padding, depth_multiplier, data_format,
                             dilation_rate, activation, use_bias, depthwise_initializer,
                             bias_initializer, depthwise_regularizer, bias_regularizer,
                             depthwise_constraint, bias_constraint)

    def build(self, input_shape):
        kshape = self._depthwise_shape(input_shape)
        self.kernel = self.add_weight(kshape, self.depthwise_initializer,
                                      regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint, name="kernel")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight((kshape[-2] * kshape[-1],), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint, name="bias")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        self._check_input(shape)
        x = to_channels_last(spec, self, x, self.data_format)
        y = self._depthwise_node(spec, x, shape, self.kernel, self.bias, self.activation,
                                 self._act_params)
        return from_channels_last(spec, self, y, self.data_format)

    def get_config(self):
        return self._base_config()


class BaseSeparableConv(BaseDepthwise):
    """SeparableConv over `rank` spatial axes (see SeparableConv2D)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = positive_int(filters, "filters")
        self._init_depthwise(kernel_size, strides, padding, depth_multiplier, data_format,
                             dilation_rate, activation, use_bias, depthwise_initializer,
                             bias_initializer, depthwise_regularizer, bias_regularizer,
                             depthwise_constraint, bias_constraint)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer,
                                                      "pointwise_regularizer")
        self.pointwise_constraint = constraints.get(pointwise_constraint,
                                                    "pointwise_constraint")

    def build(self, input_shape):
        kshape = self._depthwise_shape(input_shape)
        self.depthwise_kernel = self.add_weight(kshape, self.depthwise_initializer,
                                                regularizer=self.depthwise_regularizer,
                                                constraint=self.depthwise_constraint,
                                                name="depthwise_kernel")
        self.pointwise_kernel = self.add_weight(
            (1,) * self.rank + (kshape[-2] * kshape[-1], self.filters),
            self.pointwise_initializer, regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint, name="pointwise_kernel")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight((self.filters,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint, name="bias")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        self._check_input(shape)
        x = to_channels_last(spec, self, x, self.data_format)
        d = self._depthwise_node(spec, x, shape, self.depthwise_kernel, None, "linear", ())
        params = self._param_ids(spec, [self.pointwise_kernel] +
                                 ([self.bias] if self.bias is not None else []))
        attrs = {"activation": self.activation, "act_params": list(self._act_params),
                 "use_bias": self.bias is not None, **compute_attrs(self)}
        (y,) = spec.add_node("conv", [d], [spec.shapes[d][:-1] + (self.filters,)], params,
                             attrs, self.name)
        return from_channels_last(spec, self, y, self.data_format)

    def get_config(self):
        cfg = self._base_config()
        cfg.update({
            "filters": self.filters,
            "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
            "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer),
            "pointwise_constraint": constraints.serialize(self.pointwise_constraint),
        })
        return cfg


class DepthwiseConv1D(BaseDepthwiseConv):
    """Depthwise 1-D convolution (Keras's DepthwiseConv1D): each input channel convolved on
    its own with `depth_multiplier` kernels. Arguments as DepthwiseConv2D with one spatial
    axis. Weights: kernel (kernel_size, channels, depth_multiplier),
    bias (channels * depth_multiplier,)."""

    rank = 1


class DepthwiseConv2D(BaseDepthwiseConv):
    """Depthwise 2-D convolution (Keras's DepthwiseConv2D).

    Args:
        kernel_size: window (int, or a tuple (height, width)).
        strides, padding ("valid" or "same"), data_format, dilation_rate: as for Conv2D.
        depth_multiplier: output channels per input channel. Default 1.
        activation, use_bias: as for Conv2D.
        depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer:
            for the kernel and the bias.

    Shapes: (batch, height, width, channels) -> (batch, new_height, new_width,
    channels * depth_multiplier); output channel c * depth_multiplier + m is input channel c
    through kernel[:, :, c, m]. Weights as in Keras: kernel (kh, kw, channels,
    depth_multiplier), bias (channels * depth_multiplier,).

    Example:
        >>> layer = DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    """

    rank = 2


class SeparableConv1D(BaseSeparableConv):
    """Depthwise-separable 1-D convolution (Keras's SeparableConv1D). Arguments and weights
    as SeparableConv2D with one spatial axis."""

    rank = 1


class SeparableConv2D(BaseSeparableConv):
    """Depthwise-separable 2-D convolution (Keras's SeparableConv2D): a depthwise convolution
    (each channel on its own) followed by a 1x1 convolution mixing the channels.

    Args:
        filters: output channels.
        kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier:
            of the depthwise step (as DepthwiseConv2D).
        activation, use_bias: applied after the pointwise step.
        depthwise_initializer, pointwise_initializer, bias_initializer and the matching
            regularizers.

    Shapes: (batch, height, width, channels) -> (batch, new_height, new_width, filters).
    Weights as in Keras, in this order: depthwise_kernel (kh, kw, channels,
    depth_multiplier), pointwise_kernel (1, 1, channels * depth_multiplier, filters),
    bias (filters,).

    Example:
        >>> layer = SeparableConv2D(32, 3, activation="relu")
    """

    rank = 2
