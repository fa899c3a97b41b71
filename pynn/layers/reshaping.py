"""Flatten and the input specification."""
from __future__ import annotations

import math

from pynn.layers.layer import Layer, shape_tuple


class Flatten(Layer):
    """Flattens each sample to one axis: (batch, 28, 28) -> (batch, 784). Free: pynn keeps
    samples row-major, so this is only a change of shape."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format: only channels_last is supported, got {data_format!r}")

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def _add_to(self, net, input_shape):
        return (math.prod(input_shape),)


class InputLayer(Layer):
    """The input specification of a model: the shape of one sample."""

    def __init__(self, shape=None, batch_size=None, name=None, **kwargs):
        if shape is None and "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if shape is None:
            raise ValueError("shape: expected the shape of one sample, e.g. (784,)")
        super().__init__(name=name, **kwargs)
        self.shape = shape_tuple(shape, "shape")
        self.batch_size = batch_size

    def _add_to(self, net, input_shape):
        return input_shape

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape)}

    @classmethod
    def from_config(cls, config):
        return cls(shape=tuple(config["shape"]), name=config.get("name"))


def Input(shape=None, batch_size=None, name=None, **kwargs):
    """The input of a Sequential model: ``Sequential([Input((784,)), Dense(10)])``."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, **kwargs)
