"""Activation layers: ``Activation(name)`` and the parameterised ones Keras offers as layers."""
from __future__ import annotations

import numbers
from typing import Any

from pynn import _random, activations
from pynn.layers.layer import Layer, on_last_axis, real_in


def _act(spec, x, name, params, layer_name, seed=0):
    attrs = {"activation": name, "act_params": list(params)}
    if name == "rrelu":
        attrs["seed"] = int(seed)
    return spec.add_node("activation", [x], [spec.shapes[x]], [], attrs, layer_name)


class Activation(Layer):
    """Applies an activation element-wise (softmax: over the last axis). ``"rrelu"`` uses a
    random slope per element drawn from U(lower, upper) in training and (lower + upper) / 2 at
    inference.

    Example:
        >>> Activation("tanh")
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation, self._act_params = activations.resolve(activation)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        # rrelu draws random slopes in training, from pynn's seeded stream
        if self.activation == "rrelu" and getattr(self, "_seed", None) is None:
            self._seed = _random.next_seed()
        seed = self._seed if self.activation == "rrelu" else 0
        return _act(spec, x, self.activation, self._act_params, self.name, seed)

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg["activation"] = self.activation
        return cfg


class LeakyReLU(Layer):
    """``x`` for x >= 0, ``negative_slope * x`` otherwise (Keras 3 default slope 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = real_in(negative_slope, "negative_slope", 0.0, float("inf"),
                                      hi_open=True)

    def _emit(self, spec, inputs):
        return _act(spec, self._single(inputs), "leaky_relu", [self.negative_slope], self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = real_in(alpha, "alpha", 0.0, float("inf"), hi_open=True)

    def _emit(self, spec, inputs):
        return _act(spec, self._single(inputs), "elu", [self.alpha], self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha}


class ReLU(Layer):
    """Rectified linear unit (without Keras's max_value/threshold options)."""

    def _emit(self, spec, inputs):
        return _act(spec, self._single(inputs), "relu", [], self.name)


class Softmax(Layer):
    """Softmax over `axis` (Keras's numbering; default the last)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis: expected an int (Keras's numbering), got {axis!r}")
        self.axis = int(axis)

    def _emit(self, spec, inputs):
        from pynn.layers.normalization import sample_axes

        x = self._single(inputs)
        (a,) = sample_axes(self.axis, len(spec.shapes[x]) + 1, self.name)
        return on_last_axis(spec, self.name, x, a,
                            lambda t: _act(spec, t, "softmax", [], self.name))

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


class PReLU(Layer):
    """``x`` for x > 0, ``alpha * x`` otherwise, with a learnable ``alpha`` per input element
    (initialised to zeros, as Keras does)."""

    def __init__(self, alpha_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        from pynn import initializers

        self.alpha_initializer = initializers.get(alpha_initializer)

    def build(self, input_shape: Any) -> None:
        self.alpha = self.add_weight(tuple(input_shape[1:]), self.alpha_initializer,
                                     name="alpha")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        if spec.shapes[x] != self.alpha.shape:
            raise ValueError(f"{self.name}: PReLU was built for inputs of shape "
                             f"{(None,) + self.alpha.shape}, got {(None,) + spec.shapes[x]}")
        return spec.add_node("prelu", [x], [spec.shapes[x]], self._param_ids(spec), {},
                             self.name)

    def get_config(self) -> dict:
        from pynn import initializers

        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer)}
