"""Shape layers and the input specification: Input, Flatten, Reshape, Permute, RepeatVector,
Identity. Flatten, Reshape and Identity are views (no copy): pynn keeps samples row-major."""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from pynn.layers.layer import KerasTensor, Layer, Node, positive_int, shape_tuple


class InputLayer(Layer):
    """The input specification of a model: the shape of one sample."""

    _takes_activity_regularizer = False

    def __init__(self, shape=None, batch_size=None, name=None, **kwargs):
        if shape is None and "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if shape is None:
            raise ValueError("shape: expected the shape of one sample, e.g. (784,)")
        kwargs.pop("dtype", None)
        kwargs.pop("sparse", None)
        super().__init__(name=name or None, **kwargs)
        self.shape = shape_tuple(shape, "shape")
        self.batch_size = batch_size
        self.built = True
        self._build_shapes = [self.shape]
        self._out_shapes = [self.shape]
        self.output = KerasTensor(self.shape, name=self.name, history=(self, 0, 0))
        self._inbound_nodes.append(Node(self, [], [self.output], "single"))

    def _emit(self, spec, inputs):
        return list(inputs)

    def get_config(self) -> dict:
        return {"name": self.name, "shape": list(self.shape)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> InputLayer:
        shape = config.get("shape", config.get("batch_shape", config.get("batch_input_shape")))
        if isinstance(shape, (list, tuple)) and shape and shape[0] is None:
            shape = shape[1:]
        return cls(shape=tuple(shape), name=config.get("name"))


# Integer inputs (token ids for an Embedding) are carried as float32, exact below 2**24.
_INDEX_DTYPES = ("int32", "int64", "int16", "int8", "uint8", "uint16", "uint32")


def Input(shape: Any = None, batch_size: int | None = None, name: str | None = None,
          dtype: Any = None, **kwargs: Any) -> KerasTensor:
    """A symbolic input (Keras's ``keras.Input``): the start of a functional model, or the
    first entry of a Sequential list.

    Example:
        >>> x = Input((784,)); y = pynn.layers.Dense(10)(x); model = pynn.Model(x, y)
    """
    if dtype not in (None, "float32") + _INDEX_DTYPES:
        raise ValueError(f"dtype: pynn inputs are float32 (or integer indices for an "
                         f"Embedding), got {dtype!r}")
    return InputLayer(shape=shape, batch_size=batch_size, name=name, **kwargs).output


def _view(spec, layer, x, shape, op="reshape"):
    attrs = {"target_shape": list(shape)} if op == "reshape" else {}
    return spec.add_node(op, [x], [tuple(shape)], [], attrs, layer.name)


class Flatten(Layer):
    """Flattens each sample to one axis: (batch, 28, 28) -> (batch, 784). A view."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format: only channels_last is supported, got {data_format!r}")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        return _view(spec, self, x, (math.prod(spec.shapes[x]),), "flatten")


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (one entry may be -1). A view."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        if isinstance(target_shape, numbers.Integral):
            target_shape = (target_shape,)
        target_shape = tuple(target_shape)
        if (not target_shape or sum(1 for s in target_shape if s == -1) > 1 or not all(
                isinstance(s, numbers.Integral) and not isinstance(s, bool) and (s > 0 or s == -1)
                for s in target_shape)):
            raise ValueError(f"target_shape: expected positive integers and at most one -1, got "
                             f"{target_shape!r}")
        self.target_shape = tuple(int(s) for s in target_shape)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        size = math.prod(spec.shapes[x])
        known = math.prod(s for s in self.target_shape if s != -1)
        shape = self.target_shape
        if -1 in shape:
            if size % known:
                raise ValueError(f"{self.name}: cannot reshape input of shape "
                                 f"{(None,) + spec.shapes[x]} to {(None,) + shape}")
            shape = tuple(size // known if s == -1 else s for s in shape)
        if math.prod(shape) != size:
            raise ValueError(f"{self.name}: cannot reshape input of shape "
                             f"{(None,) + spec.shapes[x]} ({size} values per sample) to "
                             f"{(None,) + shape}")
        return _view(spec, self, x, shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Identity(Layer):
    """Returns its input unchanged."""

    supports_masking = True

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        return _view(spec, self, x, spec.shapes[x], "identity")


class Permute(Layer):
    """Permutes the axes of each sample: ``dims`` is a permutation of 1..rank (Keras counts
    the sample axes from 1)."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"dims: expected a permutation of 1..{len(dims)}, got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        if len(shape) != len(self.dims):
            raise ValueError(f"{self.name}: dims {self.dims} need inputs with {len(self.dims)} "
                             f"axes per sample, got shape {(None,) + shape}")
        out = tuple(shape[d - 1] for d in self.dims)
        return spec.add_node("permute", [x], [out], [], {"dims": list(self.dims)}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "dims": list(self.dims)}


class RepeatVector(Layer):
    """Repeats each sample's vector `n` times: (batch, d) -> (batch, n, d)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = positive_int(n, "n")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        if len(spec.shapes[x]) != 1:
            raise ValueError(f"{self.name}: RepeatVector expects (batch, features) inputs, got "
                             f"{(None,) + spec.shapes[x]}")
        return spec.add_node("repeat_vector", [x], [(self.n,) + spec.shapes[x]], [],
                             {"n": self.n}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "n": self.n}
