"""Dense: ``output = activation(input @ kernel + bias)``."""
from __future__ import annotations

from typing import Any

from pynn import _random, activations, constraints, initializers, regularizers
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
        kernel_constraint, bias_constraint: None or `pynn.constraints` objects (or names),
            applied after every optimizer step.
        dtype: a dtype policy or its name (`pynn.mixed_precision`); under "mixed_bfloat16" the
            products run in bfloat16 with float32 sums, the kernel stays float32.

    Shapes: input (batch, in_features) -> output (batch, units). The kernel is stored
    (in_features, units), as Keras stores it.

    Example:
        >>> layer = Dense(4, activation="relu")
    """

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int(units, "units")
        self.activation, self._act_params = activations.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "bias_regularizer")
        self.kernel_constraint = constraints.get(kernel_constraint, "kernel_constraint")
        self.bias_constraint = constraints.get(bias_constraint, "bias_constraint")

    def build(self, input_shape: Any) -> None:
        in_features = input_shape[-1]
        if in_features * self.units > MAX_WEIGHT_ELEMENTS:
            raise ValueError(f"units: a Dense layer of {self.units} units on {in_features} "
                             f"inputs needs a kernel of {in_features * self.units:,} floats, "
                             f"more than pynn's limit of {MAX_WEIGHT_ELEMENTS:,} (2**31 - 1) "
                             f"per weight. Received: units={self.units}")
        self.kernel = self.add_weight((in_features, self.units), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint, name="kernel")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight((self.units,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint, name="bias")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        if shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"{self.name}: Dense expects inputs with {self.kernel.shape[0]} "
                             f"features on the last axis (it was built for them), got input "
                             f"shape {(None,) + shape}")
        out = shape[:-1] + (self.units,)
        pids = self._param_ids(spec)
        attrs = {"units": self.units, "activation": self.activation,
                 "act_params": list(self._act_params), "use_bias": self.use_bias}
        if self.compute_dtype == "bfloat16":
            attrs["compute_dtype"] = "bfloat16"  # products on the bf16 GEMM (mixed precision)
        if self.activation == "rrelu":
            # random slopes in training need an op of their own after the affine map
            (z,) = spec.add_node("dense", [x], [out], pids, {**attrs, "activation": "linear",
                                                            "act_params": []}, self.name)
            return spec.add_node("activation", [z], [out], [],
                                 {"activation": "rrelu", "act_params": list(self._act_params),
                                  "seed": self._rrelu_seed()}, self.name)
        return spec.add_node("dense", [x], [out], pids, attrs, self.name)

    def _rrelu_seed(self):
        if getattr(self, "_seed", None) is None:
            self._seed = _random.next_seed()
        return self._seed

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg.update({
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        })
        return cfg
