"""How masks travel from layer to layer, as Keras 3 hands them on.

A mask is a graph tensor (1 = keep the step, 0 = skip it) recorded for the tensor it belongs
to (`pynn.layers.embedding.set_mask`); its shape is that tensor's shape without the last axis.
Layers that make or read masks (Embedding, Masking, the recurrent layers, Bidirectional,
TimeDistributed, GlobalAveragePooling1D) record their outputs' masks in their own ``_emit``.
For every other layer, `propagate` applies Keras's rule after the layer has emitted:

- a layer with ``supports_masking`` (Dense, activations, dropout and noise, normalisation,
  Rescaling...) hands its first input's mask to its outputs unchanged;
- merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum) keep a step when any
  input keeps it, and give no mask when some input has none;
- Concatenate along the feature axis does the same with an unmasked input counting as all
  kept (so then there is no mask at all); along another axis the masks are joined like the
  tensors;
- every other layer (Flatten, Reshape, convolutions, pooling, Dot...) drops the mask.

Nothing here adds a node to a model without masks.
"""
from __future__ import annotations

import math
from typing import Any

from pynn.layers.embedding import mask_of, set_mask


def propagate(layer: Any, spec: Any, inputs: list[int], outputs: list[int]) -> None:
    """Records the masks of `layer`'s `outputs` (just emitted into `spec` from `inputs`)."""
    masks = [mask_of(spec, t) for t in inputs]
    if all(m is None for m in masks) or getattr(layer, "_masks_in_emit", False):
        return
    if all(mask_of(spec, t) is not None for t in outputs):
        return
    rule = getattr(layer, "_output_mask", None)
    if rule is not None:
        out = rule(spec, inputs, masks)
    elif getattr(layer, "supports_masking", False):
        out = masks[0]
    else:
        return
    if out is None:
        return
    for t in outputs:
        if mask_of(spec, t) is None and spec.shapes[t][:-1] == spec.shapes[out]:
            set_mask(spec, t, out)


def either(spec: Any, masks: list[int], name: str) -> int:
    """A step kept by any of `masks` (all of one shape): their element-wise maximum."""
    out = masks[0]
    for k, m in enumerate(masks[1:], 1):
        (out,) = spec.add_node("binary", [out, m], [spec.shapes[m]],
                               attrs={"fn": "maximum"}, name=f"{name}_mask{k}")
    return out


def merged(spec: Any, name: str, masks: list[int | None]) -> int | None:
    """Keras's mask of an element-wise merge: None unless every input has one, then OR."""
    if any(m is None for m in masks):
        return None
    return either(spec, [m for m in masks if m is not None], name)


def concatenated(spec: Any, name: str, inputs: list[int], masks: list[int | None],
                 axis: int) -> int | None:
    """Keras's mask of Concatenate on per-sample `axis` (negative, from the end)."""
    if axis == -1:   # the feature axis: a step is kept when any input keeps it
        return merged(spec, name, masks)
    parts = []
    for k, (t, m) in enumerate(zip(inputs, masks)):
        if m is None:   # an unmasked input keeps all its steps
            shape = spec.shapes[t][:-1]
            (m,) = spec.add_node("constant", [t], [shape],
                                 attrs={"value": [1.0] * math.prod(shape),
                                        "shape": list(shape)},
                                 name=f"{name}_ones{k}")
        parts.append(m)
    out = list(spec.shapes[parts[0]])
    out[axis + 1] = sum(spec.shapes[m][axis + 1] for m in parts)
    (mask,) = spec.add_node("concatenate", parts, [tuple(out)], attrs={"axis": axis + 1},
                            name=f"{name}_mask")
    return mask
