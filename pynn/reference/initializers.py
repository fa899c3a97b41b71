"""Weight initializers in NumPy, with Keras 3's names, defaults and distributions.

The core draws from its own counter-based generator, so values differ from these bitwise; the
distributions are the same, and that is what the tests compare.

Variance scaling (Glorot, He, LeCun): with ``fan_in``, ``fan_out`` from :func:`compute_fans` and
``n`` = fan_in (He, LeCun) or (fan_in + fan_out)/2 (Glorot), the target variance is
``s = scale / max(1, n)`` with scale 2 for He and 1 otherwise. Then

* ``*_uniform``: ``U(−l, l)`` with ``l = √(3 s)`` (a uniform on [−l, l] has variance l²/3);
* ``*_normal``: a normal of stddev ``σ = √s / 0.87962566103423978`` cut to ``[−2σ, 2σ]``. Cutting
  a unit normal at ±2 leaves a standard deviation of 0.8796…, so dividing by it first makes the
  cut values' standard deviation exactly ``√s``, as Keras does.

Others: ``random_normal`` N(mean 0, stddev 0.05), ``random_uniform`` U(−0.05, 0.05),
``truncated_normal`` N(0, 0.05) cut at two stddevs (no correction), ``zeros``, ``ones``,
``constant(value)``, ``identity(gain)`` (``gain·I``, 2-D, rectangular allowed),
``orthogonal(gain)``: the Q of a QR factorisation of a Gaussian matrix, each column multiplied by
the sign of R's diagonal so that Q is uniformly (Haar) distributed; a shape (…, n) is treated as
the matrix (prod(…), n), and a wide matrix is the transpose of a tall one.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TRUNCATED_NORMAL_STD = 0.87962566103423978

__all__ = [
    "compute_fans", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
    "lecun_uniform", "lecun_normal", "random_normal", "random_uniform", "truncated_normal",
    "zeros", "ones", "constant", "identity", "orthogonal", "get", "TRUNCATED_NORMAL_STD",
]


def compute_fans(shape):
    """Keras's (fan_in, fan_out): a kernel (..., in, out) counts its receptive field."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _rng(seed):
    return np.random.default_rng(seed)


def _cut_normal(rng, shape, stddev, mean=0.0):
    """N(mean, stddev²) conditioned on |x − mean| ≤ 2 stddev, by rejection."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return mean + stddev * out


def _variance_scaling(shape, seed, scale, mode, uniform):
    fan_in, fan_out = compute_fans(shape)
    n = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
    s = scale / max(1.0, n)
    rng = _rng(seed)
    if uniform:
        limit = math.sqrt(3 * s)
        return rng.uniform(-limit, limit, size=shape)
    return _cut_normal(rng, shape, math.sqrt(s) / TRUNCATED_NORMAL_STD)


def glorot_uniform(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    """U(−l, l), l = √(6 / (fan_in + fan_out))."""
    return _variance_scaling(shape, seed, 1.0, "fan_avg", True)


def glorot_normal(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    """Cut normal with standard deviation √(2 / (fan_in + fan_out))."""
    return _variance_scaling(shape, seed, 1.0, "fan_avg", False)


def he_uniform(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    """U(−l, l), l = √(6 / fan_in)."""
    return _variance_scaling(shape, seed, 2.0, "fan_in", True)


def he_normal(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    """Cut normal with standard deviation √(2 / fan_in)."""
    return _variance_scaling(shape, seed, 2.0, "fan_in", False)


def lecun_uniform(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    """U(−l, l), l = √(3 / fan_in)."""
    return _variance_scaling(shape, seed, 1.0, "fan_in", True)


def lecun_normal(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    """Cut normal with standard deviation √(1 / fan_in)."""
    return _variance_scaling(shape, seed, 1.0, "fan_in", False)


def random_normal(shape, seed=None, mean=0.0, stddev=0.05):
    return _rng(seed).normal(mean, stddev, size=shape)


def random_uniform(shape, seed=None, minval=-0.05, maxval=0.05):
    return _rng(seed).uniform(minval, maxval, size=shape)


def truncated_normal(shape, seed=None, mean=0.0, stddev=0.05):
    return _cut_normal(_rng(seed), shape, stddev, mean)


def zeros(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    return np.zeros(shape)


def ones(shape: Sequence[int], seed: int | None = None) -> np.ndarray:
    return np.ones(shape)


def constant(shape, seed=None, value=0.0):
    return np.full(shape, float(value))


def identity(shape, seed=None, gain=1.0):
    if len(shape) != 2:
        raise ValueError(f"identity needs a 2-D shape, got {tuple(shape)}")
    return gain * np.eye(*shape)


def orthogonal(shape, seed=None, gain=1.0):
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs a shape of at least 2 dimensions, got {tuple(shape)}")
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = _rng(seed).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    d = np.sign(np.diag(r))
    q = q * np.where(d == 0, 1.0, d)  # sign(0) would zero a column; it has probability 0
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


_REGISTRY = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal,
                                     lecun_uniform, lecun_normal, random_normal,
                                     random_uniform, truncated_normal, zeros, ones, constant,
                                     identity, orthogonal)}


def get(name):
    """The initializer function called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown initializer {name!r}; expected one of {sorted(_REGISTRY)}") \
            from None
