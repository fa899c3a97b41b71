"""Weight initializers (Keras 3 names and defaults), filled by the compiled core.

A seed makes an initializer deterministic; without one it draws the next seed of pynn's global
stream (`pynn.utils.set_random_seed`).
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from pynn import _core, _random


class Initializer:
    """Base class: ``init(shape) -> float32 array``."""

    name = ""
    _params: tuple[str, ...] = ()

    def __init__(self, seed=None, **params):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed: expected an integer or None, got {seed!r}")
        self.seed = seed
        for key, value in params.items():
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"{key}: expected a real number, got {value!r}")
            setattr(self, key, float(value))

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"shape: expected non-negative sizes, got {shape}")
        seed = _random.next_seed() if self.seed is None else int(self.seed)
        params = {p: getattr(self, p) for p in self._params}
        return np.asarray(_core.initializer_fill(self.name, shape, seed, params or None))

    def get_config(self) -> dict:
        cfg = {"seed": self.seed} if "seed" in self._config_keys() else {}
        cfg.update({p: getattr(self, p) for p in self._params})
        return cfg

    @classmethod
    def _config_keys(cls):
        return ("seed",) if cls.name not in ("zeros", "ones", "constant", "identity") else ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Initializer:
        return cls(**config)


def _define(class_name, name, params=None):
    params = dict(params or {})
    def __init__(self, *args, seed=None, **kwargs):
        names = list(params)
        if len(args) > len(names):
            raise TypeError(f"{class_name} takes at most {len(names)} positional arguments")
        values = {k: d for k, d in params.items()}
        values.update(zip(names, args))
        unknown = set(kwargs) - set(names)
        if unknown:
            raise TypeError(f"{class_name}: unexpected argument(s) {sorted(unknown)}")
        values.update(kwargs)
        Initializer.__init__(self, seed=seed, **values)
        if name == "random_uniform" and self.minval > self.maxval:
            raise ValueError(f"minval must not exceed maxval, got {self.minval} > {self.maxval}")
        if "stddev" in values and self.stddev < 0:
            raise ValueError(f"stddev: expected a non-negative number, got {self.stddev}")

    cls = type(class_name, (Initializer,), {"name": name, "_params": tuple(params),
                                            "__init__": __init__,
                                            "__doc__": f"The `{name}` initializer."})
    if name in ("zeros", "ones", "constant", "identity"):
        cls.__init__ = _no_seed(cls.__init__)
    return cls


def _no_seed(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.seed = 0  # deterministic anyway; a fixed seed avoids consuming the global stream

    return wrapped


GlorotUniform = _define("GlorotUniform", "glorot_uniform")
GlorotNormal = _define("GlorotNormal", "glorot_normal")
HeUniform = _define("HeUniform", "he_uniform")
HeNormal = _define("HeNormal", "he_normal")
LecunUniform = _define("LecunUniform", "lecun_uniform")
LecunNormal = _define("LecunNormal", "lecun_normal")
Zeros = _define("Zeros", "zeros")
Ones = _define("Ones", "ones")
_ScalarConstant = _define("Constant", "constant", {"value": 0.0})


class Constant(_ScalarConstant):  # type: ignore[misc, valid-type]
    """Fills with `value`: a number, or an array broadcast to the weight's shape (Keras 3
    takes both, e.g. ``Constant(np.log(class_priors))`` for an output bias)."""

    def __init__(self, value: Any = 0.0) -> None:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            super().__init__(value)
            self.array = None
            return
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"value: expected a real number or an array of them, got "
                            f"{value!r}") from None
        if arr.dtype.kind not in "fiu" or not np.isfinite(arr).all():
            raise ValueError(f"value: expected finite real numbers, got {value!r}")
        super().__init__(0.0)
        self.array = arr.astype(np.float32)
        self.value = self.array.tolist()

    def __call__(self, shape, dtype=None):
        if self.array is None:
            return super().__call__(shape, dtype)
        shape = tuple(int(s) for s in shape)
        try:
            return np.broadcast_to(self.array, shape).astype(np.float32)
        except ValueError:
            raise ValueError(f"Constant: value of shape {self.array.shape} does not broadcast "
                             f"to the weight's shape {shape}") from None


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras's fan-in and fan-out: a kernel (..., in, out) counts its receptive field."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    field = int(np.prod(shape[:-2]))
    return shape[-2] * field, shape[-1] * field


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: samples of variance ``scale / n``, where n is fan_in, fan_out
    or their mean (`mode`), from a normal cut at two standard deviations ("truncated_normal",
    corrected so the variance is still scale / n), a plain normal ("untruncated_normal") or a
    uniform ("uniform"). The glorot, he and lecun initializers are its special cases."""

    name = "variance_scaling"
    scale: float
    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None) -> None:
        super().__init__(seed=seed, scale=scale)
        if not self.scale > 0:
            raise ValueError(f"scale: expected a positive number, got {scale!r}")
        if mode not in self._MODES:
            raise ValueError(f"mode: expected one of {list(self._MODES)}, got {mode!r}")
        if distribution == "normal":   # Keras's older alias
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"distribution: expected one of {list(self._DISTRIBUTIONS)}, got "
                             f"{distribution!r}")
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"shape: expected non-negative sizes, got {shape}")
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, n)
        seed = _random.next_seed() if self.seed is None else int(self.seed)
        if self.distribution == "uniform":
            lim = float(np.sqrt(3.0 * var))
            name, params = "random_uniform", {"minval": -lim, "maxval": lim}
        elif self.distribution == "untruncated_normal":
            name, params = "random_normal", {"mean": 0.0, "stddev": float(np.sqrt(var))}
        else:
            name, params = "truncated_normal", {
                "mean": 0.0, "stddev": float(np.sqrt(var) / 0.87962566103423978)}
        return np.asarray(_core.initializer_fill(name, shape, seed, params))

    def get_config(self) -> dict:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


RandomNormal = _define("RandomNormal", "random_normal", {"mean": 0.0, "stddev": 0.05})
RandomUniform = _define("RandomUniform", "random_uniform", {"minval": -0.05, "maxval": 0.05})
TruncatedNormal = _define("TruncatedNormal", "truncated_normal", {"mean": 0.0, "stddev": 0.05})
Identity = _define("Identity", "identity", {"gain": 1.0})
Orthogonal = _define("Orthogonal", "orthogonal", {"gain": 1.0})

_BY_NAME = {cls.name: cls for cls in (
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Zeros, Ones,
    Constant, RandomNormal, RandomUniform, TruncatedNormal, Identity, Orthogonal,
    VarianceScaling)}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier) -> Initializer:
    """An initializer from a name ("glorot_uniform"), a class name, an instance or a config.
    None is Keras's default for a float weight, glorot_uniform (``Dense(bias_initializer=None)``
    gets glorot-uniform biases in Keras 3 too)."""
    if identifier is None:
        return GlorotUniform()
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _BY_CLASS.get(identifier)
        if cls is None:
            raise ValueError(f"initializer: unknown name {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier)
    raise TypeError(f"initializer: expected a name or an Initializer, got {identifier!r}")


def serialize(init: Initializer) -> dict:
    return {"class_name": type(init).__name__, "config": init.get_config()}


def deserialize(config: dict) -> Initializer:
    cls = _BY_CLASS.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"initializer: unknown class {config.get('class_name')!r}")
    return cls(**config.get("config", {}))
