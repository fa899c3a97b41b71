"""Image augmentation layers (Keras 3): RandomFlip, RandomTranslation, RandomRotation and
RandomZoom. Each is one `image_augment` node (csrc/nn/ops/image_augment.cpp, twin in
pynn/reference/augment.py) that draws a new transform per sample and per training step from
the layer's seed, so a seeded model trains the same on any thread count. They transform only
in training (fit, train_on_batch, ``layer(x, training=True)``, ``model(x, training=True)``);
predict, evaluate and a plain call see the images unchanged, as in Keras.

Geometry follows Keras: pixel centres on integer coordinates; a positive translation moves
the content down/right; a positive rotation turns it counter-clockwise; a zoom factor above 0
zooms out. Points outside the image are filled per `fill_mode` ("reflect": d c b a | a b c d |
d c b a, "wrap", "constant" with `fill_value`, "nearest"); `interpolation` is "bilinear" or
"nearest".

Example:
    >>> model = pynn.Sequential([pynn.Input((28, 28, 1)),
    ...                          RandomFlip("horizontal"), RandomTranslation(0.1, 0.1),
    ...                          Conv2D(32, 3, activation="relu"), Flatten(), Dense(10)])
"""
from __future__ import annotations

import numbers
from typing import Any

from pynn import _random
from pynn.layers.convolutional import data_format_arg
from pynn.layers.layer import Layer
from pynn.layers.noise import check_seed

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v


def factor_range(factor: Any, name: str, lo: float = -1.0, lo_open: bool = False
                 ) -> tuple[float, float]:
    """(lower, upper) from a number f (-> (-|f|, |f|)) or a pair (sorted), each in [lo, 1]
    ((lo, 1] when lo_open), as Keras's RandomTranslation/RandomZoom read their factors."""
    vals = list(factor) if isinstance(factor, (tuple, list)) else [factor]
    if not (len(vals) in (1, 2) and (len(vals) == 2 or not isinstance(factor, (tuple, list)))
            and all(_real(v) for v in vals)):
        raise ValueError(f"{name}: expected a number or a tuple of two numbers. Received: "
                         f"{name}={factor!r}")
    for v in vals:
        if not ((v > lo if lo_open else v >= lo) and v <= 1.0):
            lb = "(" if lo_open else "["
            raise ValueError(f"{name}: expected values in {lb}{lo}, 1.0]. Received: "
                             f"{name}={factor!r}")
    if len(vals) == 1:
        return -abs(float(vals[0])), abs(float(vals[0]))
    a, b = sorted(float(v) for v in vals)
    return a, b


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {list(allowed)}. Received: {name}={value!r}")
    return str(value)


class _Augment(Layer):
    """Shared: seed handling, the eager training call and the node."""

    _kind = ""

    def __init__(self, seed=None, data_format=None, **kwargs):
        boxes = kwargs.pop("bounding_box_format", None)
        if boxes is not None:
            raise ValueError(f"bounding_box_format: pynn transforms images only; use None. "
                             f"Received: bounding_box_format={boxes!r}")
        super().__init__(**kwargs)
        self.seed = check_seed(seed)
        self.data_format = data_format_arg(data_format)
        self._force_training = False
        self._eager_calls = 0

    def _attrs(self) -> dict:
        raise NotImplementedError

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        if len(shape) != 3:
            raise ValueError(f"{self.name}: expected images of per-sample shape (height, width, "
                             f"channels) ({self.data_format}), got {shape}")
        if getattr(self, "_built_seed", None) is None:
            self._built_seed = (_random.next_seed() if self.seed is None
                                else int(self.seed) % 2**63)
        seed = self._built_seed
        if self._force_training:   # a fresh, reproducible draw per eager training call
            seed = (seed + 0x9E3779B97F4A7C15 * self._eager_calls) % 2**63
        attrs = {"kind": self._kind, "seed": seed,
                 "channels_first": int(self.data_format == "channels_first"),
                 "force_training": int(self._force_training), **self._attrs()}
        return spec.add_node("image_augment", [x], [shape], [], attrs, self.name)

    def _call_eager(self, flat, training):
        if not training:
            return super()._call_eager(flat, training)
        self._force_training = True
        self._eager_calls += 1
        try:   # the op is forced active: run it as an inference graph (its draws as before)
            return super()._call_eager(flat, False)
        finally:
            self._force_training = False

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed, "data_format": self.data_format}


class _Affine(_Augment):
    """Shared arguments of the resampling layers."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.fill_mode = _choice(fill_mode, "fill_mode", FILL_MODES)
        self.interpolation = _choice(interpolation, "interpolation", INTERPOLATIONS)
        if not _real(fill_value) or abs(float(fill_value)) == float("inf"):
            raise ValueError(f"fill_value: expected a finite number. Received: "
                             f"fill_value={fill_value!r}")
        self.fill_value = float(fill_value)

    def _sampling(self) -> dict:
        return {"fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}

    def get_config(self) -> dict:
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "fill_value": self.fill_value}


class RandomFlip(_Augment):
    """Flips each image with probability 1/2 in training.

    Args:
        mode: "horizontal" (left-right), "vertical" (top-bottom) or "horizontal_and_vertical"
            (default; as in Keras 3 one draw per image flips both axes together).
        seed: integer for a fixed sequence; default from `pynn.utils.set_random_seed`.
        data_format: "channels_last" (default) or "channels_first".

    Input/output shape: (batch, height, width, channels) (or channels first).
    """

    _kind = "flip"

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.mode = _choice(mode, "mode", FLIP_MODES)

    def _attrs(self) -> dict:
        return {"mode": self.mode}

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


class RandomTranslation(_Affine):
    """Shifts each image by a random fraction of its size in training.

    Args:
        height_factor: f (shift in [-f, f] of the height) or (lower, upper), values in
            [-1, 1]; positive moves the content down.
        width_factor: likewise for the width; positive moves it right.
        fill_mode: "reflect" (default), "wrap", "constant" or "nearest".
        interpolation: "bilinear" (default) or "nearest".
        seed, fill_value, data_format: as Keras.
    """

    _kind = "translation"

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        self.height_lower, self.height_upper = factor_range(height_factor, "height_factor")
        self.width_lower, self.width_upper = factor_range(width_factor, "width_factor")
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = _plain(height_factor)
        self.width_factor = _plain(width_factor)

    def _attrs(self) -> dict:
        return {"lower": [self.height_lower, self.width_lower],
                "upper": [self.height_upper, self.width_upper], **self._sampling()}

    def get_config(self) -> dict:
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class RandomRotation(_Affine):
    """Rotates each image about its centre by a random fraction of a full turn in training.

    Args:
        factor: f (angle in [-f, f] * 360 degrees) or (lower, upper); positive turns the
            content counter-clockwise.
        fill_mode, interpolation, seed, fill_value, data_format: as RandomTranslation.
    """

    _kind = "rotation"

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        vals = list(factor) if isinstance(factor, (tuple, list)) else [factor]
        bad = not all(_real(v) for v in vals) or len(vals) != (
            2 if isinstance(factor, (tuple, list)) else 1)
        # Keras's bounds: a number in [-1, 1]; a pair with lower <= 1 and upper >= -1
        if bad or (len(vals) == 1 and abs(vals[0]) > 1) or (
                len(vals) == 2 and (vals[0] > 1 or vals[1] < -1)):
            raise ValueError(f"factor: expected a number in [-1, 1] or a tuple of two numbers. "
                             f"Received: factor={factor!r}")
        if len(vals) == 1:
            self.factor = (-abs(float(vals[0])), abs(float(vals[0])))
        else:
            lo, hi = sorted(float(v) for v in vals)
            self.factor = (lo, hi)
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)

    def _attrs(self) -> dict:
        return {"lower": [self.factor[0]], "upper": [self.factor[1]], **self._sampling()}

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": list(self.factor)}


class RandomZoom(_Affine):
    """Zooms each image about its centre by a random factor in training.

    Args:
        height_factor: f (zoom in [-f, f]) or (lower, upper), values in (-1, 1]; the image
            is sampled over (1 + zoom) times its height, so a positive value zooms out and a
            negative value zooms in.
        width_factor: likewise for the width; None (default) uses the height's zoom, keeping
            the aspect ratio.
        fill_mode, interpolation, seed, fill_value, data_format: as RandomTranslation.
    """

    _kind = "zoom"

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        self.height_lower, self.height_upper = factor_range(height_factor, "height_factor",
                                                            lo_open=True)
        self.width_lower, self.width_upper = (
            (0.0, 0.0) if width_factor is None
            else factor_range(width_factor, "width_factor", lo_open=True))
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = _plain(height_factor)
        self.width_factor = None if width_factor is None else _plain(width_factor)

    def _attrs(self) -> dict:
        return {"lower": [self.height_lower, self.width_lower],
                "upper": [self.height_upper, self.width_upper],
                "same_zoom": int(self.width_factor is None), **self._sampling()}

    def get_config(self) -> dict:
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


def _plain(factor: Any) -> Any:
    """The factor as given, with tuples as lists (what a JSON round trip gives)."""
    return [float(v) for v in factor] if isinstance(factor, (tuple, list)) else float(factor)
