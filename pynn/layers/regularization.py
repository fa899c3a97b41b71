"""Dropout and batch normalisation layers."""
from __future__ import annotations

import math
import numbers
from typing import Any

from pynn import _random
from pynn.layers.embedding import mask_of
from pynn.layers.layer import Layer, on_last_axis, real_in


def _noise_shape_arg(value: Any) -> tuple[int | None, ...] | None:
    if value is None:
        return None
    def entry_ok(v):
        return v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool)
                             and int(v) > 0)

    if not isinstance(value, (tuple, list)) or not all(entry_ok(v) for v in value):
        raise TypeError(f"noise_shape: expected None or a tuple of positive ints and None "
                        f"(the batch axis first), got {value!r}")
    return tuple(None if v is None else int(v) for v in value)


class Dropout(Layer):
    """Inverted dropout: in training, zeroes each input with probability `rate` and scales the
    rest by ``1 / (1 - rate)``; at inference the identity.

    Args:
        rate: fraction to drop, in [0, 1).
        noise_shape: Keras's shape of the mask, the batch axis first: None (or the input's
            size) draws per element, 1 shares one draw along that axis; e.g.
            ``(None, 1, features)`` on (batch, timesteps, features) drops the same features at
            every step. The batch entry must be None or the batch size (a mask shared by the
            whole batch is not supported).
        seed: integer for a fixed mask sequence; default from `pynn.utils.set_random_seed`.
    """

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = real_in(rate, "rate", 0.0, 1.0, hi_open=True)
        self.noise_shape = _noise_shape_arg(noise_shape)
        if self.noise_shape is not None and self.noise_shape[:1] == (1,):
            raise ValueError(f"noise_shape: a mask shared by the whole batch (first entry 1) "
                             f"is not supported; use None there. Received: "
                             f"noise_shape={self.noise_shape}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed: expected an integer or None, got {seed!r}")
        self.seed = seed

    def _mask_shape(self, shape: tuple[int, ...], folded: int = 0) -> tuple[int, ...]:
        """The per-sample shape of one draw: `shape` with 1 on every shared axis. The first
        `folded` axes of `shape` are folded into the batch, as TimeDistributed runs its layer
        in Keras: noise_shape then describes (batch * steps, rest) and every step draws anew."""
        ns = self.noise_shape
        if ns is None:
            return shape
        rest = shape[folded:]
        if len(ns) != len(rest) + 1:
            raise ValueError(f"{self.name}: noise_shape {ns} must have one entry per axis of "
                             f"the input, batch first: got input shape {(None,) + rest}")
        for n, v in zip(rest, ns[1:]):
            if v not in (None, 1, n):
                raise ValueError(f"{self.name}: noise_shape {ns} must be None, 1 or the "
                                 f"input's size on each axis: got input shape "
                                 f"{(None,) + rest}")
        return shape[:folded] + tuple(n if v in (None, n) else 1 for n, v in zip(rest, ns[1:]))

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        return self._dropout_node(spec, x, self._mask_shape(spec.shapes[x]))

    def _dropout_node(self, spec, x, mshape):
        """Dropout of x with one draw per element of the per-sample mask shape `mshape`
        (broadcast over x's other axes)."""
        shape = spec.shapes[x]
        if getattr(self, "_built_seed", None) is None:
            # saved with the model so that training resumes exactly
            self._built_seed = (_random.next_seed() if self.seed is None
                                else int(self.seed) % 2**63)
        attrs = {"rate": self.rate, "seed": self._built_seed}
        if mshape == shape:
            return spec.add_node("dropout", [x], [shape], [], attrs, self.name)
        # the mask itself is a dropout of ones, multiplied in with broadcasting
        ones = spec.add_node("constant", [x], [mshape], [],
                             {"value": [1.0] * math.prod(mshape), "shape": list(mshape)},
                             self.name)[0]
        mask = spec.add_node("dropout", [ones], [mshape], [], attrs, self.name)[0]
        return spec.add_node("binary", [x, mask], [shape], [], {"fn": "multiply"}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self.seed}


class BatchNormalization(Layer):
    """Normalises each feature over the batch in training (and updates moving statistics);
    uses the moving statistics at inference. Keras 3 defaults: momentum 0.99, epsilon 1e-3.

    Weights, in Keras's order: gamma (if scale), beta (if center), moving_mean,
    moving_variance.
    """

    supports_masking = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis: expected an int (the feature axis, Keras's numbering), "
                            f"got {axis!r}")
        self.axis = int(axis)
        self.momentum = real_in(momentum, "momentum", 0.0, 1.0)
        self.epsilon = real_in(epsilon, "epsilon", 0.0, float("inf"), lo_open=True)
        self.center = bool(center)
        self.scale = bool(scale)

    def _feature_axis(self, rank: int) -> int:
        """The per-sample axis (0 = first after the batch) whose features are normalised."""
        from pynn.layers.normalization import sample_axes

        return sample_axes(self.axis, rank, self.name)[0]

    def build(self, input_shape: Any) -> None:
        c = (input_shape[self._feature_axis(len(input_shape)) + 1],)   # (None, *sample)
        self.gamma = self.add_weight(c, "ones", name="gamma") if self.scale else None
        self.beta = self.add_weight(c, "zeros", name="beta") if self.center else None
        self.moving_mean = self.add_weight(c, "zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(c, "ones", trainable=False,
                                               name="moving_variance")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        a = self._feature_axis(len(shape) + 1)
        if shape[a] != self.moving_mean.shape[0]:
            raise ValueError(f"{self.name}: BatchNormalization was built for "
                             f"{self.moving_mean.shape[0]} features on axis {self.axis}, got "
                             f"input shape {(None,) + shape}")
        # The engine's op normalises the last axis; another feature axis (channels_first
        # images: axis=1) is moved there and back. A mask on the steps (features last) makes
        # the training statistics those of the kept steps, as in Keras.
        mask = mask_of(spec, x) if a == len(shape) - 1 else None
        return on_last_axis(spec, self.name, x, a, lambda t: spec.add_node(
            "batchnorm", [t] if mask is None else [t, mask], [spec.shapes[t]],
            self._param_ids(spec),
            {"momentum": self.momentum, "epsilon": self.epsilon, "center": self.center,
             "scale": self.scale}, self.name))

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale}
