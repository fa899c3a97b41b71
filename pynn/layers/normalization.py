"""LayerNormalization, GroupNormalization and UnitNormalization (Keras 3)."""
from __future__ import annotations

import numbers
from typing import Any

from pynn import initializers, regularizers
from pynn.layers.layer import Layer, positive_int, real_in


def _axis_list(axis: Any, name: str = "axis") -> list[int] | int:
    """Keras's axis argument (an int or a list of ints, the batch being axis 0)."""
    if isinstance(axis, (list, tuple)):
        out = list(axis)
    else:
        out = [axis]
    for a in out:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"{name}: expected an int or a list of ints. Received: "
                            f"{name}={axis!r}")
    return [int(a) for a in out] if isinstance(axis, (list, tuple)) else int(axis)


def sample_axes(axis: Any, rank: int, layer: str, name: str = "axis") -> list[int]:
    """Keras axes (0 = batch, negative from the end) of a rank-`rank` tensor as sorted,
    distinct per-sample axes (0 = the first axis after the batch)."""
    axes = axis if isinstance(axis, list) else [axis]
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(f"{layer}: {name} {a} is out of range for inputs of rank {rank}. "
                             f"Received: {name}={axis!r}")
        a %= rank
        if a == 0:
            raise ValueError(f"{layer}: {name} may not include the batch axis (0). "
                             f"Received: {name}={axis!r}")
        out.append(a - 1)
    if len(set(out)) != len(out):
        raise ValueError(f"{layer}: duplicate axes are not allowed. Received: {name}={axis!r}")
    return sorted(out)


class _AffineNorm(Layer):
    """Shared arguments and weights of the layer and group normalisations: gamma (if scale)
    then beta (if center), Keras's order."""

    supports_masking = True

    def __init__(self, epsilon, center, scale, beta_initializer, gamma_initializer,
                 beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint,
                 **kwargs):
        super().__init__(**kwargs)
        from pynn import constraints

        self.epsilon = real_in(epsilon, "epsilon", 0.0, float("inf"), lo_open=True)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer, "beta_regularizer")
        self.gamma_regularizer = regularizers.get(gamma_regularizer, "gamma_regularizer")
        self.beta_constraint = constraints.get(beta_constraint, "beta_constraint")
        self.gamma_constraint = constraints.get(gamma_constraint, "gamma_constraint")

    def _affine_weights(self, shape):
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self.add_weight(shape, self.gamma_initializer, name="gamma",
                                         regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight(shape, self.beta_initializer, name="beta",
                                        regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint)

    def _check_shape(self, spec, x, expected):
        w = self.gamma if self.gamma is not None else self.beta
        if w is not None and w.shape != expected:
            raise ValueError(f"{self.name}: {type(self).__name__} was built for weights of "
                             f"shape {w.shape}, got input shape {(None,) + spec.shapes[x]}")

    def get_config(self) -> dict:
        from pynn import constraints

        return {**super().get_config(), "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "gamma_constraint": constraints.serialize(self.gamma_constraint)}


class LayerNormalization(_AffineNorm):
    """Standardises each sample over `axis` (mean 0, variance 1 with the biased variance
    plus `epsilon`), then scales by gamma and shifts by beta, whose shape is the input's
    sizes on `axis`.

    Args:
        axis: int or list of ints (Keras's numbering: 0 is the batch axis); default -1.
        epsilon: added to the variance (1e-3 as Keras).
        center, scale: learn beta / gamma.

    Example:
        >>> LayerNormalization(axis=-1)(np.array([[1.0, 2.0, 3.0]], np.float32))
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 rms_scaling=False, **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer,
                         beta_regularizer, gamma_regularizer, beta_constraint,
                         gamma_constraint, **kwargs)
        if rms_scaling:
            raise ValueError("rms_scaling: deprecated in Keras and not supported by pynn; "
                             "use False")
        self.axis = _axis_list(axis)

    def build(self, input_shape: Any) -> None:
        rank = len(input_shape)
        axes = sample_axes(self.axis, rank, self.name)
        # as Keras: a list is sorted, an int becomes a one-element list
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        self._affine_weights(tuple(input_shape[a + 1] for a in axes))

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        axes = sample_axes(self.axis, len(shape) + 1, self.name)
        self._check_shape(spec, x, tuple(shape[a] for a in axes))
        return spec.add_node("layer_norm", [x], [shape], self._param_ids(spec),
                             {"axes": axes, "epsilon": self.epsilon, "center": self.center,
                              "scale": self.scale}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "rms_scaling": False}


class GroupNormalization(_AffineNorm):
    """Splits the channels of `axis` into `groups` blocks and standardises each block over
    all other axes of a sample; gamma and beta are per channel. groups=-1 means one group per
    channel (instance normalisation).

    Args:
        groups: number of groups (divides the channel count), default 32.
        axis: the channel axis (Keras's numbering), default -1.
        epsilon, center, scale: as LayerNormalization.
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer,
                         beta_regularizer, gamma_regularizer, beta_constraint,
                         gamma_constraint, **kwargs)
        if groups != -1:
            groups = positive_int(groups, "groups")
        self.groups = groups
        axis = _axis_list(axis)
        if isinstance(axis, list):
            raise TypeError(f"axis: expected one int. Received: axis={axis!r}")
        self.axis = axis

    def build(self, input_shape: Any) -> None:
        (a,) = sample_axes(self.axis, len(input_shape), self.name)
        c = input_shape[a + 1]
        if self.groups == -1:
            self.groups = c
        if self.groups > c or c % self.groups:
            raise ValueError(f"groups: must divide the number of channels ({c}) of axis "
                             f"{self.axis}. Received: groups={self.groups}")
        self._affine_weights((c,))

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        (a,) = sample_axes(self.axis, len(shape) + 1, self.name)
        self._check_shape(spec, x, (shape[a],))
        return spec.add_node("group_norm", [x], [shape], self._param_ids(spec),
                             {"groups": self.groups, "axis": a, "epsilon": self.epsilon,
                              "center": self.center, "scale": self.scale}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "groups": self.groups, "axis": self.axis}


class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over `axis`: ``x / sqrt(max(sum(x^2), 1e-24))``
    (Keras clamps the squared norm at epsilon^2 with epsilon 1e-12).

    Args:
        axis: int or list of ints (Keras's numbering), default -1.
    """

    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis_list(axis)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        axes = sample_axes(self.axis, len(shape) + 1, self.name)
        kept = tuple(1 if i in axes else s for i, s in enumerate(shape))
        (sq,) = spec.add_node("unary", [x], [shape], [], {"fn": "square"}, self.name)
        (ss,) = spec.add_node("reduce", [sq], [kept], [],
                              {"fn": "sum", "axes": axes, "keepdims": True}, self.name)
        (cl,) = spec.add_node("binary_scalar", [ss], [kept], [],
                              {"fn": "maximum", "scalar": 1e-24, "reverse": False}, self.name)
        (nm,) = spec.add_node("unary", [cl], [kept], [], {"fn": "sqrt"}, self.name)
        return spec.add_node("binary", [x, nm], [shape], [], {"fn": "divide"}, self.name)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}
