"""GaussianNoise, GaussianDropout and AlphaDropout: random in training, the identity at
inference (Keras 3). The draws come from the node's seed and the training step, like Dropout's
masks, so a seeded model trains the same on any thread count. And ActivityRegularization."""
from __future__ import annotations

import numbers

from pynn import _random
from pynn.layers.layer import Layer, real_in


def check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed: expected an integer or None, got {seed!r}")
    return seed


class _Noise(Layer):
    supports_masking = True

    _kind = ""
    _arg = ""

    def __init__(self, value, seed=None, **kwargs):
        super().__init__(**kwargs)
        self._value = value
        self.seed = check_seed(seed)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        if getattr(self, "_built_seed", None) is None:
            self._built_seed = (_random.next_seed() if self.seed is None
                                else int(self.seed) % 2**63)
        return spec.add_node("noise", [x], [spec.shapes[x]], [],
                             {"kind": self._kind, "value": self._value,
                              "seed": self._built_seed}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), self._arg: self._value, "seed": self.seed}


class GaussianNoise(_Noise):
    """Adds zero-mean Gaussian noise of standard deviation `stddev` in training.

    Args:
        stddev: the noise's standard deviation (>= 0).
        seed: integer for a fixed noise sequence; default from `pynn.utils.set_random_seed`.
    """

    _kind, _arg = "gaussian_noise", "stddev"

    def __init__(self, stddev, seed=None, **kwargs):
        self.stddev = real_in(stddev, "stddev", 0.0, float("inf"), hi_open=True)
        super().__init__(self.stddev, seed, **kwargs)


class GaussianDropout(_Noise):
    """Multiplies by Gaussian noise of mean 1 and standard deviation sqrt(rate / (1 - rate))
    in training.

    Args:
        rate: in [0, 1).
        seed: as GaussianNoise.
    """

    _kind, _arg = "gaussian_dropout", "rate"

    def __init__(self, rate, seed=None, **kwargs):
        self.rate = real_in(rate, "rate", 0.0, 1.0, hi_open=True)
        super().__init__(self.rate, seed, **kwargs)


class AlphaDropout(_Noise):
    """Dropout for SELU networks: in training, drops each value with probability `rate` to
    SELU's negative saturation value, then applies the affine map that keeps the mean and
    variance of the activations.

    Args:
        rate: in [0, 1).
        noise_shape: only None (one draw per element).
        seed: as GaussianNoise.
    """

    _kind, _arg = "alpha_dropout", "rate"

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        self.rate = real_in(rate, "rate", 0.0, 1.0, hi_open=True)
        if noise_shape is not None:
            raise ValueError("noise_shape: not supported; use None")
        super().__init__(self.rate, seed, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "noise_shape": None}


class ActivityRegularization(Layer):
    """The identity, adding ``(l1 * sum|x| + l2 * sum x^2) / batch_size`` to the loss (in fit
    and evaluate, as Keras adds a layer's activity loss).

    Args:
        l1, l2: non-negative coefficients.
    """

    _takes_activity_regularizer = False

    supports_masking = True

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.l1 = real_in(l1, "l1", 0.0, float("inf"), hi_open=True)
        self.l2 = real_in(l2, "l2", 0.0, float("inf"), hi_open=True)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        return spec.add_node("activity_regularization", [x], [spec.shapes[x]], [],
                             {"l1": self.l1, "l2": self.l2}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
