"""Embedding (a lookup table of vectors) and Masking, and the masks they hand on.

Masks: a layer that makes a mask (Embedding with ``mask_zero=True``, Masking) records, in the
graph being built, a per-step float tensor (1 = keep, 0 = skip) for its output tensor. The
recurrent layers read it (a masked step carries the state over, as in Keras), and layers
that keep the time axis as it is (recurrent layers with return_sequences, Bidirectional,
TimeDistributed) hand it on to their output; the other layers follow Keras's rules in
pynn.layers.masks, and the mask of a model output weighs its loss and metrics.
"""
from __future__ import annotations

from typing import Any

from pynn import constraints, initializers, regularizers
from pynn.layers.layer import Layer, positive_int


def mask_of(spec: Any, tid: int) -> int | None:
    """The mask tensor recorded for tensor `tid` of the graph `spec` (None when unmasked)."""
    return getattr(spec, "masks", {}).get(tid)


def set_mask(spec: Any, tid: int, mask: int | None) -> None:
    """Records `mask` as tensor `tid`'s mask in the graph `spec`."""
    if mask is None:
        return
    if not hasattr(spec, "masks"):
        spec.masks = {}
    spec.masks[tid] = mask


class Embedding(Layer):
    """Turns integer indices into dense vectors: row ``i`` of a learned (input_dim, output_dim)
    table for index ``i``.

    Args:
        input_dim: size of the vocabulary (indices run from 0 to input_dim - 1).
        output_dim: length of each vector.
        embeddings_initializer: initializer of the table (Keras's "uniform": U(-0.05, 0.05)).
        embeddings_regularizer: None, "l1", "l2" or a regularizer object.
        mask_zero: index 0 is padding; the steps holding it are masked for the layers after.

    Shapes: (batch, ...) integer indices (any dtype holding integers) -> (batch, ..., output_dim).
    An index outside [0, input_dim) is an error.

    Example:
        >>> layer = Embedding(input_dim=1000, output_dim=16, mask_zero=True)
    """

    _masks_in_emit = True   # its own mask (mask_zero) or none

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, **kwargs):
        kwargs.pop("input_length", None)   # Keras 2's argument: the shape says it already
        super().__init__(**kwargs)
        self.input_dim = positive_int(input_dim, "input_dim")
        self.output_dim = positive_int(output_dim, "output_dim")
        if embeddings_initializer == "uniform":
            embeddings_initializer = initializers.RandomUniform()
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer,
                                                       "embeddings_regularizer")
        self.embeddings_constraint = constraints.get(embeddings_constraint,
                                                     "embeddings_constraint")
        self.mask_zero = bool(mask_zero)
        if weights is not None:
            self.set_weights(list(weights))

    def build(self, input_shape: Any) -> None:
        self.embeddings = self.add_weight((self.input_dim, self.output_dim),
                                          self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint,
                                          name="embeddings")

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        (y,) = spec.add_node("embedding", [x], [shape + (self.output_dim,)],
                             self._param_ids(spec),
                             {"input_dim": self.input_dim, "output_dim": self.output_dim},
                             self.name)
        if self.mask_zero:
            (m,) = spec.add_node("binary_scalar", [x], [shape],
                                 attrs={"fn": "not_equal", "scalar": 0.0},
                                 name=f"{self.name}_mask")
            set_mask(spec, y, m)
        return [y]

    def get_config(self) -> dict:
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
                "mask_zero": self.mask_zero}


class Masking(Layer):
    """Masks the time steps whose features all equal `mask_value`: they are set to 0 and the
    layers after (recurrent layers) skip them.

    Shapes: (batch, timesteps, features) -> the same.

    Example:
        >>> layer = Masking(mask_value=0.0)
    """

    supports_masking = True
    _masks_in_emit = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise TypeError(f"mask_value: expected a number, got {mask_value!r}")
        self.mask_value = float(mask_value)

    def _emit(self, spec, inputs):
        x = self._single(inputs)
        shape = spec.shapes[x]
        if len(shape) < 2:
            raise ValueError(f"{self.name}: Masking expects (batch, timesteps, features), got "
                             f"input shape {(None,) + shape}")
        (ne,) = spec.add_node("binary_scalar", [x], [shape],
                              attrs={"fn": "not_equal", "scalar": self.mask_value},
                              name=f"{self.name}_ne")
        (m,) = spec.add_node("reduce", [ne], [shape[:-1]],
                             attrs={"fn": "max", "axes": [-1], "keepdims": False},
                             name=f"{self.name}_mask")
        (m1,) = spec.add_node("reshape", [m], [shape[:-1] + (1,)],
                              attrs={"target_shape": list(shape[:-1]) + [1]},
                              name=f"{self.name}_mask1")
        (y,) = spec.add_node("binary", [x, m1], [shape], attrs={"fn": "multiply"},
                             name=self.name)
        set_mask(spec, y, m)
        return [y]

    def get_config(self) -> dict:
        return {**super().get_config(), "mask_value": self.mask_value}


def masked_average(spec: Any, layer: Any, x: int) -> list[int] | None:
    """GlobalAveragePooling1D over the unmasked steps of `x` (Keras: the sum of the kept
    steps over their count), or None when `x` carries no mask."""
    mask = mask_of(spec, x)
    if mask is None:
        return None
    if layer.data_format != "channels_last":
        raise ValueError(f"{layer.name}: a masked input needs data_format='channels_last'")
    steps, channels = spec.shapes[x]
    (m1,) = spec.add_node("reshape", [mask], [(steps, 1)], attrs={"target_shape": [steps, 1]},
                          name=f"{layer.name}_mask")
    (kept,) = spec.add_node("binary", [x, m1], [(steps, channels)], attrs={"fn": "multiply"},
                            name=f"{layer.name}_kept")
    out = (1, channels) if layer.keepdims else (channels,)
    cnt = (1, 1) if layer.keepdims else (1,)
    (total,) = spec.add_node("reduce", [kept], [out], attrs={"fn": "sum", "axes": [0],
                                                            "keepdims": layer.keepdims},
                             name=f"{layer.name}_sum")
    (count,) = spec.add_node("reduce", [m1], [cnt], attrs={"fn": "sum", "axes": [0],
                                                          "keepdims": layer.keepdims},
                             name=f"{layer.name}_count")
    return spec.add_node("binary", [total, count], [out], attrs={"fn": "divide"},
                         name=layer.name)
