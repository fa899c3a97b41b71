"""Merge layers: combine several tensors of one shape (Add, Subtract, Multiply, Average,
Maximum, Minimum), join them along an axis (Concatenate), or take dot products (Dot)."""
from __future__ import annotations

import numbers
from typing import Any

from pynn.layers.layer import KerasTensor, Layer


class _Merge(Layer):
    op = ""
    min_inputs = 2
    max_inputs: int | None = None

    def _emit(self, spec, inputs):
        n = len(inputs)
        name = type(self).__name__
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            want = (f"exactly {self.min_inputs}" if self.max_inputs == self.min_inputs
                    else f"at least {self.min_inputs}")
            raise ValueError(f"{self.name}: {name} takes {want} inputs, got {n}")
        shapes = [spec.shapes[t] for t in inputs]
        for k, s in enumerate(shapes[1:], 1):
            if s != shapes[0]:
                raise ValueError(f"{self.name}: {name} needs inputs of one shape, got "
                                 f"{(None,) + shapes[0]} and {(None,) + s} (input {k})")
        return spec.add_node(self.op, list(inputs), [shapes[0]], [], {}, self.name)

    def _call_symbolic(self, flat, structure):
        out = super()._call_symbolic(flat, structure)
        # values per sample (Keras's (None,)) merged elementwise stay values per sample
        out._pynn_scalar = all(getattr(t, "_pynn_scalar", False) for t in flat)
        return out


class Add(_Merge):
    """Element-wise sum of its inputs."""
    op = "add"


class Subtract(_Merge):
    """``inputs[0] - inputs[1]``."""
    op = "subtract"
    max_inputs = 2


class Multiply(_Merge):
    """Element-wise product of its inputs."""
    op = "multiply"


class Average(_Merge):
    """Element-wise mean of its inputs."""
    op = "average"


class Maximum(_Merge):
    """Element-wise maximum of its inputs."""
    op = "maximum"


class Minimum(_Merge):
    """Element-wise minimum of its inputs."""
    op = "minimum"


def _axis(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer axis, got {value!r}")
    return int(value)


class Concatenate(Layer):
    """Joins its inputs along `axis` (Keras counts the batch axis as 0; default -1)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis(axis, "axis")

    def _emit(self, spec, inputs):
        if len(inputs) < 2:
            raise ValueError(f"{self.name}: Concatenate takes at least 2 inputs, got "
                             f"{len(inputs)}")
        shapes = [spec.shapes[t] for t in inputs]
        rank = len(shapes[0])
        ax = self.axis if self.axis < 0 else self.axis - 1   # per-sample axis
        if self.axis == 0 or not -rank <= ax < rank:
            raise ValueError(f"{self.name}: axis {self.axis} is out of range for inputs of shape "
                             f"{(None,) + shapes[0]}")
        ax %= rank
        for k, s in enumerate(shapes[1:], 1):
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0]))
                                     if i != ax):
                raise ValueError(f"{self.name}: Concatenate on axis {self.axis} needs inputs "
                                 f"equal on every other axis, got {(None,) + shapes[0]} and "
                                 f"{(None,) + s} (input {k})")
        out = list(shapes[0])
        out[ax] = sum(s[ax] for s in shapes)
        return spec.add_node("concatenate", list(inputs), [tuple(out)], [], {"axis": ax - rank},
                             self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


class Dot(Layer):
    """Dot product of two samples along `axes` (Keras counts sample axes from 1): on vectors,
    ``axes=1`` gives (batch, 1); on matrices, a batched matrix product. ``normalize=True``
    takes the cosine instead."""

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
            axes = (int(axes), int(axes))
        axes = tuple(axes)
        if len(axes) != 2 or not all(isinstance(a, numbers.Integral) for a in axes):
            raise ValueError(f"axes: expected an integer or a pair of integers, got {axes!r}")
        self.axes = tuple(int(a) for a in axes)
        self.normalize = bool(normalize)

    def _emit(self, spec, inputs):
        if len(inputs) != 2:
            raise ValueError(f"{self.name}: Dot takes exactly 2 inputs, got {len(inputs)}")
        a, b = (spec.shapes[t] for t in inputs)
        if len(a) != len(b) or len(a) not in (1, 2):
            raise ValueError(f"{self.name}: Dot supports two inputs of rank 2 or 3 (with the "
                             f"batch axis), got {(None,) + a} and {(None,) + b}")
        ax = [x if x > 0 else len(s) + 1 + x for x, s in zip(self.axes, (a, b))]
        if not all(1 <= x <= len(s) for x, s in zip(ax, (a, b))):
            raise ValueError(f"{self.name}: axes {self.axes} out of range for inputs "
                             f"{(None,) + a} and {(None,) + b}")
        if a[ax[0] - 1] != b[ax[1] - 1]:
            raise ValueError(f"{self.name}: Dot on axes {self.axes} needs equal sizes there, "
                             f"got {(None,) + a} and {(None,) + b}")
        if len(a) == 1:
            out = (1,)
        else:
            out = (a[2 - ax[0]], b[2 - ax[1]])
        return spec.add_node("dot", list(inputs), [out], [],
                             {"axes": ax, "normalize": self.normalize}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "axes": list(self.axes), "normalize": self.normalize}


def add(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    return Add(**kwargs)(inputs)


def subtract(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    return Subtract(**kwargs)(inputs)


def multiply(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    return Multiply(**kwargs)(inputs)


def average(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    return Average(**kwargs)(inputs)


def maximum(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    return Maximum(**kwargs)(inputs)


def minimum(inputs: list[KerasTensor], **kwargs: Any) -> KerasTensor:
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: list[KerasTensor], axis: int = -1, **kwargs: Any) -> KerasTensor:
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs: list[KerasTensor], axes: int | tuple[int, int] = -1, normalize: bool = False,
        **kwargs: Any) -> KerasTensor:
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
