"""Activation functions by name, with their parameters (Keras 3 names and defaults).

Each public function applies the activation to a NumPy array with the compiled kernel, and
can be passed to a layer (``Dense(10, activation=pynn.activations.relu)``) as Keras allows.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from pynn import _core

# The core's activation table: names, parameters (in the kernel's order) with their defaults
# and valid ranges, aliases. Everything below is derived from it.
_DESCRIPTORS = {d["name"]: d for d in _core.activation_descriptors()}

# name -> ordered (parameter, default) pairs, in the order the kernel takes them
PARAMS: dict[str, tuple[tuple[str, float], ...]] = {
    name: tuple((p["name"], p["default"]) for p in d["params"])
    for name, d in _DESCRIPTORS.items() if d["params"]}
ALIASES = {None: "linear", **{alias: name for name, d in _DESCRIPTORS.items()
                              for alias in d["aliases"]}}


@functools.cache
def _names() -> tuple[str, ...]:
    return tuple(sorted(_DESCRIPTORS))


def names() -> list[str]:
    """Every activation name a layer accepts."""
    return list(_names())


def resolve(identifier, **params) -> tuple[str, list[float]]:
    """(name, kernel parameters) for a name, None, or one of this module's functions."""
    if callable(identifier) and getattr(identifier, "_pynn_activation", None):
        identifier = identifier._pynn_activation
    if identifier in ALIASES:
        identifier = ALIASES[identifier]
    if not isinstance(identifier, str):
        raise TypeError(f"activation: expected a name (str), None or a pynn.activations "
                        f"function, got {identifier!r}")
    name = identifier
    if name not in _names():
        raise ValueError(f"activation: unknown name {name!r}; expected one of {names()}")
    # defaults, unknown names, types and ranges: all the table's, checked by the core
    return name, list(_core.activation_params(name, params))


def apply(x, activation, **params) -> np.ndarray:
    """Applies an activation to an array (float32 result)."""
    name, values = resolve(activation, **params)
    arr = np.array(x, dtype=np.float32, copy=True, order="C")
    if name == "softmax":
        if arr.ndim == 0:
            raise ValueError("softmax: expected at least a 1-D array")
        flat = arr.reshape(-1, arr.shape[-1])
        _core.softmax_forward(flat)
        return flat.reshape(arr.shape)
    return _core.activation_forward(arr, name, values)


def _make(name):
    def fn(x, **params):
        return apply(x, name, **params)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = f"The {name} activation, applied element-wise (row-wise for softmax)."
    fn._pynn_activation = name
    return fn


def get(identifier: Any) -> Callable[..., np.ndarray]:
    """The function for a name (Keras's ``activations.get``)."""
    name, _ = resolve(identifier)
    return globals()[name] if name in globals() else _make(name)


def serialize(fn) -> str:
    return resolve(fn)[0]


linear = _make("linear")
relu = _make("relu")
sigmoid = _make("sigmoid")
tanh = _make("tanh")
softmax = _make("softmax")
leaky_relu = _make("leaky_relu")
elu = _make("elu")
selu = _make("selu")
softplus = _make("softplus")
softsign = _make("softsign")
gelu = _make("gelu")
silu = _make("silu")
swish = _make("swish")
mish = _make("mish")
hard_sigmoid = _make("hard_sigmoid")
hard_silu = _make("hard_silu")
hard_swish = _make("hard_swish")
hard_tanh = _make("hard_tanh")
tanh_shrink = _make("tanh_shrink")
soft_shrink = _make("soft_shrink")
hard_shrink = _make("hard_shrink")
exponential = _make("exponential")
binary_step = _make("binary_step")
arctan = _make("arctan")
