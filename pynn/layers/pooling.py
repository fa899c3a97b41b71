"""Pooling layers (Keras 3 names, arguments and defaults): MaxPooling1D/2D,
AveragePooling1D/2D, GlobalAveragePooling1D/2D, GlobalMaxPooling1D/2D.

Each is one graph op (max_pool, avg_pool, global_pool: csrc/nn/ops/, twins in
pynn/reference/conv.py); ``data_format="channels_first"`` transposes around it.
"""
from __future__ import annotations

from pynn.layers.convolutional import (
    PADDINGS,
    check_rank,
    data_format_arg,
    from_channels_last,
    int_tuple,
    output_length,
    padding_arg,
    to_channels_last,
)
from pynn.layers.layer import Layer


class BasePooling(Layer):
    """Max or average pooling over `rank` spatial axes."""

    rank = 2
    op = "max_pool"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int_tuple(pool_size, self.rank, "pool_size")
        self.strides = (self.pool_size if strides is None
                        else int_tuple(strides, self.rank, "strides"))
        self.padding = padding_arg(padding, PADDINGS)
        self.data_format = data_format_arg(data_format)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        check_rank(self, shape, self.rank, self.data_format)
        x = to_channels_last(spec, self, x, self.data_format)
        spatial, channels = spec.shapes[x][:-1], spec.shapes[x][-1]
        out = []
        for axis, (n, k, s) in enumerate(zip(spatial, self.pool_size, self.strides)):
            length = output_length(n, k, s, 1, self.padding)
            if length is None:
                raise ValueError(f"{self.name}: pool_size={self.pool_size} does not fit in the "
                                 f"input of shape {(None,) + shape} with padding='valid' "
                                 f"(spatial axis {axis} has {n} positions); use "
                                 f"padding='same' or a smaller pool_size")
            out.append(length)
        (y,) = spec.add_node(self.op, [x], [tuple(out) + (channels,)], [],
                             {"pool_size": list(self.pool_size), "strides": list(self.strides),
                              "padding": self.padding}, self.name)
        return from_channels_last(spec, self, y, self.data_format)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format}


class MaxPooling1D(BasePooling):
    """The maximum over windows of `pool_size` steps, moved by `strides` (default
    `pool_size`). Shapes: (batch, steps, channels) -> (batch, new_steps, channels).

    Example:
        >>> layer = MaxPooling1D(pool_size=2)
    """

    rank, op = 1, "max_pool"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(BasePooling):
    """The maximum over windows of `pool_size` (default (2, 2)), moved by `strides` (default
    `pool_size`); padding "valid" or "same" (padded positions never win).
    Shapes: (batch, height, width, channels) -> (batch, new_height, new_width, channels).

    Example:
        >>> layer = MaxPooling2D(pool_size=(2, 2))
    """

    rank, op = 2, "max_pool"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(BasePooling):
    """The mean over windows of `pool_size` steps (with padding "same", of the real inputs
    only, as in Keras). Shapes: (batch, steps, channels) -> (batch, new_steps, channels).
    """

    rank, op = 1, "avg_pool"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(BasePooling):
    """The mean over windows of `pool_size` (default (2, 2)); with padding "same" the padded
    positions are left out of the count, as in Keras.
    Shapes: (batch, height, width, channels) -> (batch, new_height, new_width, channels).
    """

    rank, op = 2, "avg_pool"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class BaseGlobalPooling(Layer):
    """Average or maximum over every spatial position."""

    rank = 2
    fn = "avg"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format_arg(data_format)
        if not isinstance(keepdims, bool):
            raise TypeError(f"keepdims: expected True or False. Received: keepdims={keepdims!r}")
        self.keepdims = keepdims

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        check_rank(self, shape, self.rank, self.data_format)
        x = to_channels_last(spec, self, x, self.data_format)
        channels = spec.shapes[x][-1]
        if not self.keepdims:
            return spec.add_node("global_pool", [x], [(channels,)], [],
                                 {"fn": self.fn, "keepdims": False}, self.name)
        (y,) = spec.add_node("global_pool", [x], [(1,) * self.rank + (channels,)], [],
                             {"fn": self.fn, "keepdims": True}, self.name)
        return from_channels_last(spec, self, y, self.data_format)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling1D(BaseGlobalPooling):
    """The mean over all steps: (batch, steps, channels) -> (batch, channels), or
    (batch, 1, channels) with keepdims=True. Steps masked by an Embedding(mask_zero=True) or a
    Masking layer are left out of the mean, as in Keras."""

    rank, fn = 1, "avg"
    supports_masking = True
    _masks_in_emit = True   # reads the mask, hands none on

    def _emit(self, spec, inputs):
        from pynn.layers.embedding import masked_average

        out = masked_average(spec, self, self._single(inputs))
        return super()._emit(spec, inputs) if out is None else out


class GlobalAveragePooling2D(BaseGlobalPooling):
    """The mean over all positions: (batch, height, width, channels) -> (batch, channels), or
    (batch, 1, 1, channels) with keepdims=True."""

    rank, fn = 2, "avg"


class GlobalMaxPooling1D(BaseGlobalPooling):
    """The maximum over all steps: (batch, steps, channels) -> (batch, channels)."""

    rank, fn = 1, "max"


class GlobalMaxPooling2D(BaseGlobalPooling):
    """The maximum over all positions: (batch, height, width, channels) -> (batch, channels)."""

    rank, fn = 2, "max"
