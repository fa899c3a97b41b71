"""`Model.summary()`: the layers, their output shapes, parameter counts, what each layer of a
functional model is connected to, and the peak activation memory of training."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynn.layers.reshaping import InputLayer

if TYPE_CHECKING:
    from pynn.models.model import Model


def _shape(layer):
    shape = layer.output_shape
    return "?" if shape is None else str(shape)


def _connections(model):
    """For each node of the model, the 'Connected to' text: producer[node][tensor]."""
    local = {}   # id(node) -> the node's index among the layer's nodes in this model
    counts = {}
    rows = []
    for t in model._inputs:
        layer = t._history[0]
        node = layer._inbound_nodes[0]
        local[id(node)] = 0
        rows.append((layer, node, "-"))
    for node in model._nodes:
        k = counts.get(id(node.layer), 0)
        counts[id(node.layer)] = k + 1
        local[id(node)] = k
        parts = []
        for t in node.inputs:
            src, ni, ti = t._history
            src_node = src._inbound_nodes[ni]
            parts.append(f"{src.name}[{local.get(id(src_node), ni)}][{ti}]")
        rows.append((node.layer, node, ", ".join(parts)))
    return rows


def print_summary(model: Model, line_length: int | None = None,
                  print_fn: Callable[..., Any] | None = None) -> None:
    print_fn = print_fn or print
    model._maybe_trace()
    functional = type(model).__name__ != "Sequential" and model._inputs is not None
    width = line_length or (98 if functional else 72)
    if functional:
        cols = [int(width * 0.33), int(width * 0.22), int(width * 0.12)]
    else:
        cols = [int(width * 0.45), int(width * 0.33)]
    cols.append(width - sum(cols))
    head = f"{'Layer (type)':<{cols[0]}}{'Output Shape':<{cols[1]}}"
    if functional:
        head += f"{'Param #':>{cols[2]}}  {'Connected to':<{cols[3] - 2}}"
    else:
        head += f"{'Param #':>{cols[2]}}"
    lines = [f'Model: "{model.name}"', "=" * width, head, "=" * width]
    if functional:
        seen = set()
        for layer, node, conn in _connections(model):
            shape = str(node.outputs[0].shape) if node.outputs else "?"
            count = 0 if id(layer) in seen else layer.count_params()
            seen.add(id(layer))
            lines.append(f"{(layer.name + ' (' + type(layer).__name__ + ')'):<{cols[0]}}"
                         f"{shape:<{cols[1]}}{count:>{cols[2]},}  {conn}")
    else:
        for layer in model.layers:
            lines.append(f"{(layer.name + ' (' + type(layer).__name__ + ')'):<{cols[0]}}"
                         f"{_shape(layer):<{cols[1]}}{layer.count_params():>{cols[2]},}")
    weights = model.weights if model._inputs is not None else []
    trainable = sum(w.value.size for w in weights if w.trainable and model.trainable)
    total = sum(w.value.size for w in weights)
    lines += ["=" * width,
              f" Total params: {total:,}",
              f" Trainable params: {trainable:,}",
              f" Non-trainable params: {total - trainable:,}"]
    graph = getattr(model, "_graph", None)
    if graph is not None:
        info = graph.memory_info()
        peak = info.get("train_activation_bytes")
        if peak:
            lines.append(f" Peak activation memory (training, batch seen): {peak / 2**20:.2f} MiB")
    lines.append("_" * width)
    for line in lines:
        print_fn(line)


__all__ = ["print_summary", "InputLayer"]
