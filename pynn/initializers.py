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
Constant = _define("Constant", "constant", {"value": 0.0})
RandomNormal = _define("RandomNormal", "random_normal", {"mean": 0.0, "stddev": 0.05})
RandomUniform = _define("RandomUniform", "random_uniform", {"minval": -0.05, "maxval": 0.05})
TruncatedNormal = _define("TruncatedNormal", "truncated_normal", {"mean": 0.0, "stddev": 0.05})
Identity = _define("Identity", "identity", {"gain": 1.0})
Orthogonal = _define("Orthogonal", "orthogonal", {"gain": 1.0})

_BY_NAME = {cls.name: cls for cls in (
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Zeros, Ones,
    Constant, RandomNormal, RandomUniform, TruncatedNormal, Identity, Orthogonal)}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier) -> Initializer:
    """An initializer from a name ("glorot_uniform"), a class name, an instance or a config."""
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
