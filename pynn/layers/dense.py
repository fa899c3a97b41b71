"""Dense: ``output = activation(input @ kernel + bias)``."""
from __future__ import annotations

from pynn import _random, activations, initializers, regularizers
from pynn.layers.layer import Layer, positive_int

MAX_WEIGHT_ELEMENTS = 2**31 - 1  # the engine's limit per weight tensor (32-bit index range)


class Dense(Layer):
    """A fully connected layer.

    Args:
        units: number of outputs (positive integer).
        activation: name, None (linear) or a `pynn.activations` function.
        use_bias: add a learnable bias.
        kernel_initializer, bias_initializer: names or `pynn.initializers` objects.
        kernel_regularizer, bias_regularizer: None, "l1", "l2", "l1_l2" or objects.

    Shapes: input (batch, in_features) -> output (batch, units). The kernel is stored
    (in_features, units), as Keras stores it.

    Example:
        >>> layer = Dense(4, activation="relu")
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int(units, "units")
        self.activation, self._act_params = activations.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _add_to(self, net, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"{self.name}: Dense expects one feature axis per sample, got input "
                             f"shape {input_shape}; put a Flatten layer before it")
        self._in = input_shape[0]
        if self._in * self.units > MAX_WEIGHT_ELEMENTS:
            raise ValueError(f"units: a Dense layer of {self.units} units on {self._in} inputs "
                             f"needs a kernel of {self._in * self.units:,} floats, more than "
                             f"pynn's limit of {MAX_WEIGHT_ELEMENTS:,} (2**31 - 1) per weight. "
                             f"Received: units={self.units}")
        if self.activation == "rrelu":
            # random slopes in training need an op of their own after the affine map
            net.add_dense(self.units, "linear", [], self.use_bias)
            net.add_activation("rrelu", self._act_params, _random.next_seed())
        else:
            net.add_dense(self.units, self.activation, self._act_params, self.use_bias)
        return (self.units,)

    def _build_into(self, net, input_shape):
        out = super()._build_into(net, input_shape)
        regs = [self.kernel_regularizer] + ([self.bias_regularizer] if self.use_bias else [])
        for pid, reg in zip(self._param_ids, regs):
            if reg is not None:
                net.set_regularization(pid, reg.l1, reg.l2)
        return out

    def _initial_weights(self):
        weights = [self.kernel_initializer((self._in, self.units))]
        if self.use_bias:
            weights.append(self.bias_initializer((self.units,)))
        return weights

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        })
        return cfg
