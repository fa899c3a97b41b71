"""Running a graph once, outside a model: eager layer calls (``layer(array)``,
``layer(array, training=True)``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pynn.models.graph_spec import GraphSpec


def run_inference(spec: GraphSpec, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The outputs of `spec` for the input arrays, in inference mode."""
    graph = spec.to_core()
    n = arrays[0].shape[0]
    outs = [np.empty((n,) + tuple(spec.shapes[t]), dtype=np.float32) for t in spec.outputs]
    graph.predict([a.reshape(n, -1) for a in arrays], outs, max(1, min(n, 256)))
    return outs


def run_training(spec: GraphSpec, arrays: Sequence[np.ndarray], call: int) -> list[np.ndarray]:
    """The outputs of `spec` for the input arrays in training mode (random ops draw call
    number `call`'s values; BatchNormalization updates its moving statistics in place)."""
    n = arrays[0].shape[0]
    # (the core returns each output with its per-sample shape)
    return spec.to_core().forward_train([a.reshape(n, -1) for a in arrays], call)
