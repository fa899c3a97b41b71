"""Activation functions and their derivatives, in NumPy.

Each activation is an object with ``fn(z)`` (the function) and ``grad(z)`` (its derivative
f'(z), element-wise), computed in the dtype of `z`. Softmax is row-wise, so it has ``fn(z)``
and ``vjp(z, dy)`` (the vector-Jacobian product) instead of an element-wise ``grad``. PReLU
adds ``grad_alpha``; RReLU adds a training form driven by given slopes.

Parameters use Keras 3 names where Keras has the function; ``defaults()`` lists them in the
order the compiled core takes them (``params`` of ``_core.activation_forward``).

Conventions shared with the compiled core: the "positive" branch of a kink is taken only
for z > 0 (relu'(0) = 0), binary_step(0) = 1, and every formula is written so that nothing
overflows for |z| up to 1e4 (only `exponential` itself is infinite there).
"""
from __future__ import annotations

import math

import numpy as np

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _erfc(x):
    # NumPy has no erfc; math.erfc is exact to double precision, applied element-wise.
    x = np.asarray(x)
    return np.vectorize(math.erfc, otypes=[x.dtype if x.dtype.kind == "f" else np.float64])(x)


def _sigmoid(z):
    z = np.asarray(z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(z):
    z = np.asarray(z)
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


class Activation:
    """Base class: `param_names` in the core's order, values stored as attributes."""

    name = ""
    param_names: tuple[str, ...] = ()

    def defaults(self) -> list[float]:
        return [float(getattr(self, p)) for p in self.param_names]

    def fn(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def grad(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Linear(Activation):
    """f(z) = z, f'(z) = 1."""

    name = "linear"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return np.ones_like(z)


class ReLU(Activation):
    """f(z) = max(z, 0), f'(z) = 1 for z > 0 else 0."""

    name = "relu"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z) > 0).astype(np.result_type(z, np.float32))


class LeakyReLU(Activation):
    """f(z) = z for z > 0 else negative_slope * z (Keras default slope 0.2)."""

    name = "leaky_relu"
    param_names: tuple[str, ...] = ("negative_slope",)

    def __init__(self, negative_slope=0.2):
        self.negative_slope = negative_slope

    def fn(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(z > 0, z, self.negative_slope * z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(z > 0, 1.0, self.negative_slope).astype(np.result_type(z, np.float32))


class RReLU(LeakyReLU):
    """Randomized leaky ReLU (PyTorch's lower 1/8, upper 1/3).

    Training: each negative element gets its own slope a ~ U(lower, upper), drawn by the
    caller and passed in as `slopes`; f = z for z >= 0 else a z, f' = 1 or a.
    Inference (`fn`, `grad`): leaky ReLU with slope (lower + upper) / 2.
    """

    name = "rrelu"
    param_names = ("lower", "upper")

    def __init__(self, lower=1 / 8, upper=1 / 3):
        if not lower <= upper:
            raise ValueError(f"rrelu: expected lower <= upper, got lower={lower}, upper={upper}")
        self.lower, self.upper = lower, upper
        super().__init__(negative_slope=(lower + upper) / 2)

    def multipliers(self, z: np.ndarray, slopes: np.ndarray) -> np.ndarray:
        """The factor applied to each element in training: 1 for z >= 0, else its slope."""
        return np.where(np.asarray(z) >= 0, 1.0, slopes)

    def fn_train(self, z: np.ndarray, slopes: np.ndarray) -> np.ndarray:
        return self.multipliers(z, slopes) * z

    def grad_train(self, z: np.ndarray, slopes: np.ndarray) -> np.ndarray:
        return self.multipliers(z, slopes)


class PReLU(Activation):
    """Parametric ReLU: f(z) = z for z > 0 else alpha_j z, alpha learnable per channel (last
    axis). f'(z) = 1 or alpha_j; d f / d alpha_j = min(z, 0)."""

    name = "prelu"

    def __init__(self, alpha=0.25):
        self.alpha = alpha

    def fn(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(z > 0, z, self.alpha * z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(z > 0, 1.0, np.broadcast_to(self.alpha, z.shape))

    def grad_alpha(self, z: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """d loss / d alpha for z (n, c) and upstream dy (n, c): column sums of dy min(z, 0)."""
        return (np.asarray(dy) * np.minimum(z, 0)).sum(axis=0)


class Sigmoid(Activation):
    """f(z) = 1 / (1 + e^-z), f'(z) = f(1 - f); evaluated without overflow."""

    name = "sigmoid"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return _sigmoid(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        f = self.fn(z)
        return f * (1 - f)


class Tanh(Activation):
    """f(z) = tanh z, f'(z) = 1 - f^2."""

    name = "tanh"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return 1 - np.tanh(z) ** 2


class ELU(Activation):
    """f(z) = z for z > 0 else alpha (e^z - 1); f' = 1 or alpha e^z (= f + alpha)."""

    name = "elu"
    param_names = ("alpha",)

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fn(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(z > 0, z, self.alpha * np.expm1(np.minimum(z, 0)))

    def grad(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(z > 0, 1.0, self.alpha * np.exp(np.minimum(z, 0)))


class SELU(Activation):
    """f(z) = scale * elu(z, alpha) with the self-normalising constants of Klambauer et al."""

    name = "selu"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return _SELU_SCALE * ELU(_SELU_ALPHA).fn(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return _SELU_SCALE * ELU(_SELU_ALPHA).grad(z)


class Softplus(Activation):
    """f(z) = log(1 + e^{beta z}) / beta (beta = 1: Keras's softplus); f' = sigmoid(beta z)."""

    name = "softplus"
    param_names = ("beta",)

    def __init__(self, beta=1.0):
        if not beta > 0:
            raise ValueError(f"softplus: expected beta > 0, got beta={beta}")
        self.beta = beta

    def fn(self, z: np.ndarray) -> np.ndarray:
        return _softplus(self.beta * np.asarray(z)) / self.beta

    def grad(self, z: np.ndarray) -> np.ndarray:
        return _sigmoid(self.beta * np.asarray(z))


class Softsign(Activation):
    """f(z) = z / (1 + |z|), f'(z) = 1 / (1 + |z|)^2."""

    name = "softsign"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return z / (1 + np.abs(z))

    def grad(self, z: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.abs(z)) ** 2


class GELU(Activation):
    """Exact: f = z Phi(z), f' = Phi(z) + z phi(z). approximate=True (the tanh form):
    f = z/2 (1 + tanh u), u = sqrt(2/pi)(z + 0.044715 z^3). Keras default: exact."""

    name = "gelu"
    param_names = ("approximate",)
    _C = math.sqrt(2 / math.pi)

    def __init__(self, approximate=False):
        self.approximate = bool(approximate)

    def _u(self, z):
        zc = np.clip(z, -10, 10)  # tanh u is +-1 beyond; keeps z^3 finite
        return self._C * (zc + 0.044715 * zc ** 3)

    def fn(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        if self.approximate:
            return 0.5 * z * (1 + np.tanh(self._u(z)))
        return 0.5 * z * _erfc(-z / math.sqrt(2))

    def grad(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        if self.approximate:
            t = np.tanh(self._u(z))
            zc = np.clip(z, -10, 10)
            d = 0.5 * (1 + t) + 0.5 * zc * (1 - t * t) * self._C * (1 + 3 * 0.044715 * zc ** 2)
            return d
        # phi(z) is 0 in any float beyond |z| = 40: capping |z| first keeps z^2 finite
        za = np.minimum(np.abs(z), 40)
        phi = np.exp(-0.5 * za * za) / math.sqrt(2 * math.pi)
        return 0.5 * _erfc(-z / math.sqrt(2)) + z * phi


class SiLU(Activation):
    """f(z) = z sigmoid(z) (swish is the same function); f' = s (1 + z (1 - s))."""

    name = "silu"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return z * _sigmoid(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        s = _sigmoid(z)
        return s * (1 + z * (1 - s))


class Swish(SiLU):
    name = "swish"


class Mish(Activation):
    """f(z) = z tanh(softplus(z)); f' = t + z sigmoid(z) (1 - t^2), t = tanh(softplus(z))."""

    name = "mish"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return z * np.tanh(_softplus(z))

    def grad(self, z: np.ndarray) -> np.ndarray:
        t = np.tanh(_softplus(z))
        return t + z * _sigmoid(z) * (1 - t * t)


class HardSigmoid(Activation):
    """Keras 3: relu6(z + 3) / 6 — 0 below -3, 1 above 3, z/6 + 1/2 between."""

    name = "hard_sigmoid"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(z) / 6 + 0.5, 0, 1)

    def grad(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where((z > -3) & (z < 3), 1 / 6, 0.0)


class HardSiLU(Activation):
    """f(z) = z hard_sigmoid(z); f' = 0 below -3, 1 above 3, z/3 + 1/2 between."""

    name = "hard_silu"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return z * HardSigmoid().fn(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(z < -3, 0.0, np.where(z > 3, 1.0, z / 3 + 0.5))


class HardSwish(HardSiLU):
    name = "hard_swish"


class HardTanh(Activation):
    """f(z) = clip(z, min_val, max_val); f' = 1 strictly inside, else 0."""

    name = "hard_tanh"
    param_names = ("min_val", "max_val")

    def __init__(self, min_val=-1.0, max_val=1.0):
        if not min_val <= max_val:
            raise ValueError(f"hard_tanh: expected min_val <= max_val, got {min_val}, {max_val}")
        self.min_val, self.max_val = min_val, max_val

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, self.min_val, self.max_val)

    def grad(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return ((z > self.min_val) & (z < self.max_val)).astype(np.result_type(z, np.float32))


class TanhShrink(Activation):
    """f(z) = z - tanh z, f'(z) = tanh^2 z."""

    name = "tanh_shrink"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return z - np.tanh(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z) ** 2


class SoftShrink(Activation):
    """f(z) = z - threshold above threshold, z + threshold below -threshold, else 0."""

    name = "soft_shrink"
    param_names = ("threshold",)

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def fn(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        lam = self.threshold
        return np.where(z > lam, z - lam, np.where(z < -lam, z + lam, 0.0))

    def grad(self, z: np.ndarray) -> np.ndarray:
        return (np.abs(z) > self.threshold).astype(np.result_type(z, np.float32))


class HardShrink(Activation):
    """f(z) = z if |z| > threshold else 0."""

    name = "hard_shrink"
    param_names = ("threshold",)

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def fn(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        return np.where(np.abs(z) > self.threshold, z, 0.0)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return (np.abs(z) > self.threshold).astype(np.result_type(z, np.float32))


class Exponential(Activation):
    """f(z) = e^z, f'(z) = e^z (infinite above ~88.7 in float32, ~709.8 in float64)."""

    name = "exponential"

    def fn(self, z: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.exp(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return self.fn(z)


class BinaryStep(Activation):
    """f(z) = 1 for z >= 0 else 0; f' = 0 (the step passes no gradient)."""

    name = "binary_step"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z) >= 0).astype(np.result_type(z, np.float32))

    def grad(self, z: np.ndarray) -> np.ndarray:
        return np.zeros_like(z)


class Arctan(Activation):
    """f(z) = arctan z, f'(z) = 1 / (1 + z^2)."""

    name = "arctan"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.arctan(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return 1 / (1 + np.square(z))


class Softmax(Activation):
    """Row-wise over the last axis: f(z)_j = e^{z_j - m} / sum_k e^{z_k - m}, m the row max.
    vjp(z, dy) = y (dy - sum_k dy_k y_k)."""

    name = "softmax"

    def fn(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        if z.shape[-1] == 0:
            return z.copy()
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def vjp(self, z: np.ndarray, dy: np.ndarray) -> np.ndarray:
        y = self.fn(z)
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


_CLASSES = (Linear, ReLU, Sigmoid, Tanh, LeakyReLU, ELU, SELU, Softplus, Softsign, GELU, SiLU,
            Swish, Mish, HardSigmoid, HardSiLU, HardSwish, HardTanh, TanhShrink, SoftShrink,
            HardShrink, Exponential, BinaryStep, Arctan, RReLU, PReLU, Softmax)
_REGISTRY = {cls.name: cls for cls in _CLASSES}


def names() -> list[str]:
    """Every activation the twin knows."""
    return list(_REGISTRY)


def get(name: str, **params) -> Activation:
    """The activation called `name`, built with its parameters (Keras names and defaults)."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of "
                         f"{sorted(_REGISTRY)}") from None
    return cls(**params)
