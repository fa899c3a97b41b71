"""Activation layers: ``Activation(name)`` and the parameterised ones Keras offers as layers."""
from __future__ import annotations

import numbers

from pynn import _random, activations
from pynn.layers.layer import Layer, real_in


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

    def _add_to(self, net, input_shape):
        if self.activation == "softmax" and len(input_shape) != 1:
            raise ValueError(f"{self.name}: softmax expects one feature axis, got {input_shape}")
        # rrelu draws random slopes in training, from pynn's seeded stream
        seed = _random.next_seed() if self.activation == "rrelu" else 0
        net.add_activation(self.activation, self._act_params, seed)
        return input_shape

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = self.activation
        return cfg


class LeakyReLU(Layer):
    """``x`` for x >= 0, ``negative_slope * x`` otherwise (Keras 3 default slope 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = real_in(negative_slope, "negative_slope", 0.0, float("inf"),
                                      hi_open=True)

    def _add_to(self, net, input_shape):
        net.add_activation("leaky_relu", [self.negative_slope])
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = real_in(alpha, "alpha", 0.0, float("inf"), hi_open=True)

    def _add_to(self, net, input_shape):
        net.add_activation("elu", [self.alpha])
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class ReLU(Layer):
    """Rectified linear unit (without Keras's max_value/threshold options)."""

    def _add_to(self, net, input_shape):
        net.add_activation("relu", [])
        return input_shape


class Softmax(Layer):
    """Softmax over the last axis (the only axis pynn's dense networks have)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if axis != -1 and not (isinstance(axis, numbers.Integral) and axis == 1):
            raise ValueError(f"axis: pynn applies softmax over the feature axis (-1); got {axis!r}")
        self.axis = -1

    def _add_to(self, net, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"{self.name}: softmax expects one feature axis, got {input_shape}")
        net.add_activation("softmax", [])
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class PReLU(Layer):
    """``x`` for x > 0, ``alpha * x`` otherwise, with a learnable ``alpha`` per feature
    (initialised to zeros, as Keras does)."""

    def __init__(self, alpha_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        from pynn import initializers

        self.alpha_initializer = initializers.get(alpha_initializer)

    def _add_to(self, net, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"{self.name}: PReLU expects one feature axis, got {input_shape}")
        self._width = input_shape[0]
        net.add_prelu()
        return input_shape

    def _initial_weights(self):
        return [self.alpha_initializer((self._width,))]

    def get_config(self):
        from pynn import initializers

        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer)}
