"""The base class of every layer."""
from __future__ import annotations

import numbers
import re

import numpy as np

_counters: dict[str, int] = {}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def unique_name(base: str) -> str:
    n = _counters.get(base, 0)
    _counters[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive integer. Received: {name}={value!r}")
    return int(value)


def real_in(value, name, lo, hi, *, lo_open=False, hi_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number. Received: {name}={value!r}")
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or v != v:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name}: expected a number in {lb}{lo}, {hi}{rb}. Received: "
                         f"{name}={value!r}")
    return v


def shape_tuple(shape, name="input_shape"):
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of positive integers, got {shape!r}") from None
    if shape and shape[0] is None:
        raise ValueError(f"{name}: give the shape of one sample, without the batch axis; "
                         f"got {shape!r}")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{name}: expected a tuple of positive integers, got {shape!r}")
    if not shape:
        raise ValueError(f"{name}: expected at least one dimension, got ()")
    return tuple(int(s) for s in shape)


class Layer:
    """A layer: configuration in Python, computation in the compiled network.

    ``build`` happens when the model learns its input shape; it creates the layer's op in the
    model's C++ network and its weights there. Weights are read and written as NumPy arrays
    with ``get_weights``/``set_weights`` (copies, Keras's order).
    """

    def __init__(self, name=None, trainable=True, input_shape=None, input_dim=None, dtype=None,
                 **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) "
                            f"{sorted(kwargs)}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name: expected a string, got {name!r}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"dtype: pynn computes in float32, got {dtype!r}")
        self.name = name or unique_name(_snake(type(self).__name__))
        self.trainable = bool(trainable)
        if input_dim is not None:
            input_shape = (positive_int(input_dim, "input_dim"),)
        self._input_shape_arg = shape_tuple(input_shape) if input_shape is not None else None
        self.built = False
        self._owner = None  # the model whose network holds this layer's weights
        self._net = None
        self._param_ids: list[int] = []
        self._pending: list[np.ndarray] | None = None
        self.input_shape = None
        self.output_shape = None

    # --- building ---------------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        return input_shape

    def _add_to(self, net, input_shape):
        """Adds this layer's op to `net`; returns the output shape. Subclasses override."""
        raise NotImplementedError

    def _initial_weights(self):
        """Initial values of this layer's weights, in Keras's order."""
        return []

    def _build_into(self, net, input_shape):
        input_shape = tuple(input_shape)
        before = net.num_params()
        out_shape = self._add_to(net, input_shape)
        self._net = net
        self._param_ids = list(range(before, net.num_params()))
        self.input_shape = (None,) + input_shape
        self.output_shape = (None,) + tuple(out_shape)
        self.built = True
        values = self._pending if self._pending is not None else self._initial_weights()
        self._pending = None
        self._write(values)
        return tuple(out_shape)

    # --- weights ----------------------------------------------------------------------------
    @property
    def weights(self):
        return self.get_weights()

    def _weight_shapes(self):
        return [tuple(self._net.param_info(i)[1]) for i in self._param_ids]

    def get_weights(self) -> list[np.ndarray]:
        if not self.built:
            return [] if self._pending is None else [w.copy() for w in self._pending]
        return [self._net.get_param(i) for i in self._param_ids]

    def set_weights(self, weights) -> None:
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights: expected a list of arrays, got {type(weights).__name__}")
        if not self.built:
            self._pending = [np.array(w, dtype=np.float32) for w in weights]
            return
        self._write(weights)

    def _write(self, weights):
        shapes = self._weight_shapes()
        if len(weights) != len(shapes):
            raise ValueError(f"{self.name}: expected {len(shapes)} weight arrays "
                             f"{shapes}, got {len(weights)}")
        arrays = []
        for k, (w, shape) in enumerate(zip(weights, shapes)):
            arr = np.asarray(w)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{self.name}: weight {k} must be real numbers, got dtype "
                                f"{arr.dtype}")
            if arr.shape != shape:
                raise ValueError(f"{self.name}: weight {k} expected shape {shape}, got "
                                 f"{arr.shape}")
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{self.name}: weight {k} contains NaN or Inf")
            arrays.append(arr)
        for i, arr in zip(self._param_ids, arrays):
            self._net.set_param(i, arr)

    def count_params(self) -> int:
        if not self.built:
            return 0
        return int(sum(int(np.prod(s)) for s in self._weight_shapes()))

    # --- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable}
        if self._input_shape_arg is not None:
            cfg["input_shape"] = list(self._input_shape_arg)
        return cfg

    @classmethod
    def from_config(cls, config):
        cfg = dict(config)
        if "input_shape" in cfg and cfg["input_shape"] is not None:
            cfg["input_shape"] = tuple(cfg["input_shape"])
        return cls(**cfg)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"
