"""Spatial reshaping layers (Keras 3 names): UpSampling1D/2D, ZeroPadding1D/2D, Cropping1D/2D
and SpatialDropout1D/2D.

Zero padding and cropping are one ``pad_crop`` node (per-axis amounts, positive to pad,
negative to crop; csrc/nn/ops/pad_crop.cpp, twin pynn/reference/pad_crop.py). The others are
written with existing graph ops:
- nearest upsampling reshapes each spatial axis to (n, 1), multiplies by a constant of ones
  of shape (1, size) (NumPy broadcasting in the ``binary`` op, whose backward sums the
  stretched axis) and reshapes to (n * size); bilinear upsampling does the same with three
  weighted copies (the input and its copies shifted by one entry either way, edges repeated)
  added together;
- spatial dropout runs ``dropout`` on a per-sample constant of ones shaped like one channel
  vector (1 on the spatial axes) and multiplies the input by that mask, so whole channels are
  dropped and the kept ones scaled by 1 / (1 - rate); at inference the mask is all ones.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from pynn.layers.convolutional import check_rank, data_format_arg
from pynn.layers.layer import Layer
from pynn.layers.regularization import Dropout


def _spatial_axes(rank: int, data_format: str) -> list[int]:
    """The per-sample (0-based) axes of the spatial dimensions."""
    return list(range(rank)) if data_format == "channels_last" else list(range(1, rank + 1))


def _non_negative_pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 and int(v) >= 0 for v in pair):
        raise ValueError(f"{name}: expected a non-negative integer or a tuple of 2 non-negative "
                         f"integers. Received: {name}={value!r}")
    return int(pair[0]), int(pair[1])


def _amounts(value: Any, rank: int, name: str) -> tuple[tuple[int, int], ...]:
    """Keras's forms of padding/cropping as ((before, after),) * rank.

    rank 1: an int (both sides) or (before, after). rank 2: an int (every side), a tuple of
    2 ints (symmetric height, width) or ((top, bottom), (left, right)).
    """
    if rank == 1:
        return (_non_negative_pair(value, name),)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (_non_negative_pair(value, name),) * rank
    try:
        parts = tuple(value)
    except TypeError:
        parts = ()
    if len(parts) != rank:
        raise ValueError(f"{name}: expected an integer, a tuple of {rank} integers or a tuple of "
                         f"{rank} (before, after) tuples. Received: {name}={value!r}")
    return tuple(_non_negative_pair(p, f"{name}[{i}]") for i, p in enumerate(parts))


def _pad_crop(spec, layer, x: int, amounts: dict[int, tuple[int, int]]) -> int:
    """One pad_crop node: `amounts` maps per-sample axes to (before, after), positive to pad
    with zeros, negative to crop; x itself when every amount is 0."""
    shape = spec.shapes[x]
    before = [amounts.get(d, (0, 0))[0] for d in range(len(shape))]
    after = [amounts.get(d, (0, 0))[1] for d in range(len(shape))]
    if not any(before) and not any(after):
        return x
    out = tuple(n + b + a for n, b, a in zip(shape, before, after))
    for d, n in enumerate(out):
        if n <= 0:
            raise ValueError(f"{layer.name}: cropping ({-before[d]}, {-after[d]}) leaves "
                             f"nothing of an axis of size {shape[d]} (input shape "
                             f"{(None,) + shape})")
    return spec.add_node("pad_crop", [x], [out], [], {"before": before, "after": after},
                         layer.name)[0]


def _crop_axis(spec, layer, x: int, axis: int, before: int, after: int) -> int:
    """x without `before` leading and `after` trailing entries of per-sample `axis`."""
    return _pad_crop(spec, layer, x, {axis: (-before, -after)})


def _same(spec, layer, x: int, y: int) -> list[int]:
    """[y]; an identity node of `layer` when nothing was done (y is x)."""
    if y != x:
        return [y]
    return spec.add_node("identity", [x], [spec.shapes[x]], [], {}, layer.name)


class _Spatial(Layer):
    """Shared checks: `rank` spatial axes plus a channel axis placed by data_format."""

    rank = 1
    data_format = "channels_last"   # the 1D layers other than ZeroPadding1D have no choice

    def _input(self, spec, inputs) -> tuple[int, list[int]]:
        x = self._single(inputs)
        check_rank(self, spec.shapes[x], self.rank, self.data_format)
        return x, _spatial_axes(self.rank, self.data_format)


class _ZeroPadding(_Spatial):
    def __init__(self, padding, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _amounts(padding, self.rank, "padding")
        self.data_format = data_format_arg(data_format)

    def _emit(self, spec, inputs):
        x, axes = self._input(spec, inputs)
        return _same(spec, self, x, _pad_crop(spec, self, x, dict(zip(axes, self.padding))))


class ZeroPadding1D(_ZeroPadding):
    """Pads the steps axis with zeros: `padding` is an int (both ends) or (left, right)."""

    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": list(self.padding[0]),
                "data_format": self.data_format}


class ZeroPadding2D(_ZeroPadding):
    """Pads height and width with zeros: `padding` is an int, (symmetric height, symmetric
    width) or ((top, bottom), (left, right))."""

    rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": [list(p) for p in self.padding],
                "data_format": self.data_format}


class Cropping1D(_Spatial):
    """Removes entries from both ends of the steps axis: `cropping` is an int or
    (start, end)."""

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _amounts(cropping, 1, "cropping")

    def _emit(self, spec, inputs):
        x, axes = self._input(spec, inputs)
        return _same(spec, self, x, _crop_axis(spec, self, x, axes[0], *self.cropping[0]))

    def get_config(self) -> dict:
        return {**super().get_config(), "cropping": list(self.cropping[0])}


class Cropping2D(_Spatial):
    """Removes rows and columns at the borders: `cropping` is an int, (symmetric height,
    symmetric width) or ((top, bottom), (left, right))."""

    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _amounts(cropping, 2, "cropping")
        self.data_format = data_format_arg(data_format)

    def _emit(self, spec, inputs):
        x, axes = self._input(spec, inputs)
        amounts = {a: (-b, -e) for a, (b, e) in zip(axes, self.cropping)}
        return _same(spec, self, x, _pad_crop(spec, self, x, amounts))

    def get_config(self) -> dict:
        return {**super().get_config(), "cropping": [list(c) for c in self.cropping],
                "data_format": self.data_format}


def _positive_sizes(value: Any, rank: int, name: str) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * rank
    try:
        sizes = tuple(value)
    except TypeError:
        sizes = ()
    if len(sizes) != rank or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                     and int(v) > 0 for v in sizes):
        raise ValueError(f"{name}: expected a positive integer or a tuple of {rank} positive "
                         f"integers. Received: {name}={value!r}")
    return tuple(int(v) for v in sizes)


def _stretch(spec, layer, x: int, axis: int, coef: list[float]) -> int:
    """x with per-sample `axis` (size n) split to (n, k) and multiplied by `coef` (length k)
    along the new axis: k weighted copies of every entry, shape (..., n, k, ...)."""
    shape = spec.shapes[x]
    split = list(shape[:axis + 1]) + [1] + list(shape[axis + 1:])
    cshape = [1] * len(split)
    cshape[axis + 1] = len(coef)
    wide = list(split)
    wide[axis + 1] = len(coef)
    y = spec.add_node("reshape", [x], [tuple(split)], [], {"target_shape": split},
                      layer.name)[0]
    c = spec.add_node("constant", [x], [tuple(cshape)], [],
                      {"value": [float(v) for v in coef], "shape": cshape}, layer.name)[0]
    return spec.add_node("binary", [y, c], [tuple(wide)], [], {"fn": "multiply"},
                         layer.name)[0]


def _bilinear_axis(spec, layer, x: int, axis: int, k: int) -> int:
    """Linear interpolation by the integer factor k along `axis`, with half-pixel centres
    and the edge entries repeated (what Keras's resize gives without antialiasing): output
    r of the block of input i reads position i + d_r, d_r = (r + 0.5) / k - 0.5, so it is
    max(-d_r, 0) x[i-1] + (1 - |d_r|) x[i] + max(d_r, 0) x[i+1]."""
    shape = spec.shapes[x]
    n = shape[axis]
    d = [(r + 0.5) / k - 0.5 for r in range(k)]
    terms = [_stretch(spec, layer, x, axis, [1.0 - abs(v) for v in d])]
    if n > 1:
        first = _crop_axis(spec, layer, x, axis, 0, n - 1)
        last = _crop_axis(spec, layer, x, axis, n - 1, 0)
        for part, coef in (([first, _crop_axis(spec, layer, x, axis, 0, 1)],
                            [max(-v, 0.0) for v in d]),
                           ([_crop_axis(spec, layer, x, axis, 1, 0), last],
                            [max(v, 0.0) for v in d])):
            shifted = spec.add_node("concatenate", part, [shape], [], {"axis": axis},
                                    layer.name)[0]
            terms.append(_stretch(spec, layer, shifted, axis, coef))
        wide = spec.shapes[terms[0]]
        y = spec.add_node("add", terms, [wide], [], {}, layer.name)[0]
    else:   # one entry: every output is that entry (the weights sum to 1)
        y = _stretch(spec, layer, x, axis, [1.0] * k)
    out = list(shape)
    out[axis] = n * k
    return spec.add_node("reshape", [y], [tuple(out)], [], {"target_shape": out},
                         layer.name)[0]


class _UpSampling(_Spatial):
    interpolation = "nearest"

    def _emit(self, spec, inputs):
        x, axes = self._input(spec, inputs)
        shape = spec.shapes[x]
        if all(s == 1 for s in self.size):
            return _same(spec, self, x, x)
        if self.interpolation == "bilinear":
            for axis, k in zip(axes, self.size):
                if k > 1:
                    x = _bilinear_axis(spec, self, x, axis, k)
            return [x]
        # each spatial axis n becomes (n, 1); a ones constant (1, size) stretches it
        split, ones, out = [], [], []
        for i, n in enumerate(shape):
            if i in axes:
                k = self.size[axes.index(i)]
                split += [n, 1]
                ones += [1, k]
                out.append(n * k)
            else:
                split.append(n)
                ones.append(1)
                out.append(n)
        wide = [n * o if o > 1 else n for n, o in zip(split, ones)]
        y = spec.add_node("reshape", [x], [tuple(split)], [], {"target_shape": split},
                          self.name)[0]
        c = spec.add_node("constant", [x], [tuple(ones)], [],
                          {"value": [1.0] * math.prod(ones), "shape": ones}, self.name)[0]
        y = spec.add_node("binary", [y, c], [tuple(wide)], [], {"fn": "multiply"},
                          self.name)[0]
        return spec.add_node("reshape", [y], [tuple(out)], [], {"target_shape": out},
                             self.name)


class UpSampling1D(_UpSampling):
    """Repeats each step `size` times: (batch, steps, features) -> (batch, steps * size,
    features)."""

    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = _positive_sizes(size, 1, "size")

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size[0]}


class UpSampling2D(_UpSampling):
    """Repeats rows `size[0]` and columns `size[1]` times (nearest-neighbour upsampling)."""

    rank = 2

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = _positive_sizes(size, 2, "size")
        self.data_format = data_format_arg(data_format)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation: expected 'nearest' or 'bilinear'. Received: "
                             f"interpolation={interpolation!r}")
        self.interpolation = interpolation

    def get_config(self) -> dict:
        return {**super().get_config(), "size": list(self.size),
                "data_format": self.data_format, "interpolation": self.interpolation}


class _SpatialDropout(Dropout):
    _takes_activity_regularizer = False
    rank = 1
    data_format = "channels_last"

    def __init__(self, rate, seed=None, **kwargs):
        if "noise_shape" in kwargs:   # Keras's spatial dropouts fix it themselves
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"['noise_shape']")
        super().__init__(rate, seed=seed, **kwargs)

    def get_config(self) -> dict:
        cfg = super().get_config()
        del cfg["noise_shape"]
        return cfg

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        check_rank(self, shape, self.rank, self.data_format)
        if self.rate == 0.0:
            return _same(spec, self, x, x)
        axes = _spatial_axes(self.rank, self.data_format)
        return self._dropout_node(spec, x, tuple(1 if i in axes else n
                                                 for i, n in enumerate(shape)))


class SpatialDropout1D(_SpatialDropout):
    """Dropout of whole channels: in training each (sample, channel) is zeroed with
    probability `rate` on every step, the kept ones scaled by 1 / (1 - rate)."""

    rank = 1

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)


class SpatialDropout2D(_SpatialDropout):
    """Dropout of whole feature maps (see SpatialDropout1D); channels follow data_format."""

    rank = 2

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = data_format_arg(data_format)

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format}
