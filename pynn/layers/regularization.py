"""Dropout and batch normalisation layers."""
from __future__ import annotations

import numbers
from typing import Any

from pynn import _random
from pynn.layers.layer import Layer, on_last_axis, real_in


class Dropout(Layer):
    """Inverted dropout: in training, zeroes each input with probability `rate` and scales the
    rest by ``1 / (1 - rate)``; at inference the identity.

    Args:
        rate: fraction to drop, in [0, 1).
        seed: integer for a fixed mask sequence; default from `pynn.utils.set_random_seed`.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = real_in(rate, "rate", 0.0, 1.0, hi_open=True)
        if noise_shape is not None:
            raise ValueError("noise_shape: not supported yet; use None")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed: expected an integer or None, got {seed!r}")
        self.seed = seed

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        if getattr(self, "_built_seed", None) is None:
            # saved with the model so that training resumes exactly
            self._built_seed = (_random.next_seed() if self.seed is None
                                else int(self.seed) % 2**63)
        return spec.add_node("dropout", [x], [spec.shapes[x]], [],
                             {"rate": self.rate, "seed": self._built_seed}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class BatchNormalization(Layer):
    """Normalises each feature over the batch in training (and updates moving statistics);
    uses the moving statistics at inference. Keras 3 defaults: momentum 0.99, epsilon 1e-3.

    Weights, in Keras's order: gamma (if scale), beta (if center), moving_mean,
    moving_variance.
    """

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
        # images: axis=1) is moved there and back.
        return on_last_axis(spec, self.name, x, a, lambda t: spec.add_node(
            "batchnorm", [t], [spec.shapes[t]], self._param_ids(spec),
            {"momentum": self.momentum, "epsilon": self.epsilon, "center": self.center,
             "scale": self.scale}, self.name))

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale}
