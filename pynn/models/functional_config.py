"""The config of a functional model (Keras 3's layout) and the model rebuilt from one.

    {"name": ..., "trainable": ...,
     "layers": [{"class_name": ..., "config": {...}, "name": ...,
                 "inbound_nodes": [{"args": [<tensor ref or list of refs>], "kwargs": {}}]}],
     "input_layers": [[name, node, tensor], ...], "output_layers": [[name, node, tensor], ...]}

A tensor ref is ``{"class_name": "__keras_tensor__", "config": {"shape": [...],
"keras_history": [layer name, node index, tensor index]}}``; node indices count the layer's
calls within this model. Rebuilding never runs code: classes come from pynn's registry or the
user's registered classes only.
"""
from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pynn.layers.reshaping import InputLayer

if TYPE_CHECKING:
    from pynn.models.model import Model


def _node_numbering(model):
    local, counts = {}, {}
    for t in model._inputs:
        local[id(t._history[0]._inbound_nodes[0])] = 0
    for node in model._nodes:
        k = counts.get(id(node.layer), 0)
        counts[id(node.layer)] = k + 1
        local[id(node)] = k
    return local


def _ref(t, local):
    layer, ni, ti = t._history
    return [layer.name, local[id(layer._inbound_nodes[ni])], ti]


def functional_config(model: Model) -> dict[str, Any]:
    from pynn import layers as layers_mod

    model._require_built("get_config")
    local = _node_numbering(model)
    entries: list[dict[str, Any]] = []
    index: dict[int, int] = {}
    for t in model._inputs:
        layer = t._history[0]
        index[id(layer)] = len(entries)
        entries.append({"class_name": "InputLayer", "config": layer.get_config(),
                        "name": layer.name, "inbound_nodes": []})
    for node in model._nodes:
        layer = node.layer
        if id(layer) not in index:
            index[id(layer)] = len(entries)
            entries.append({**layers_mod.serialize(layer), "name": layer.name,
                            "inbound_nodes": []})
        refs = [{"class_name": "__keras_tensor__",
                 "config": {"shape": list(t.shape), "dtype": "float32",
                            "keras_history": _ref(t, local)}} for t in node.inputs]
        arg: Any
        if isinstance(node.structure, tuple):
            arg = dict(zip(node.structure, refs))
        elif node.structure == "list":
            arg = refs
        else:
            arg = refs[0]
        entries[index[id(layer)]]["inbound_nodes"].append({"args": [arg], "kwargs": {}})
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{model.name}: two layers share a name; layer names must be unique "
                         f"within a model to save it")

    def structured_refs(ts, struct):
        out = [_ref(t, local) for t in ts]
        return dict(zip(struct, out)) if isinstance(struct, tuple) else out

    return {"name": model.name, "trainable": model.trainable, "layers": entries,
            "input_layers": structured_refs(model._inputs, model._in_struct),
            "output_layers": structured_refs(model._outputs, model._out_struct)}


def _is_ref(x):
    return isinstance(x, dict) and x.get("class_name") == "__keras_tensor__"


def _history_of(ref, what):
    cfg = ref.get("config") if isinstance(ref, dict) else None
    hist = cfg.get("keras_history") if isinstance(cfg, dict) else ref
    if (not isinstance(hist, (list, tuple)) or len(hist) != 3 or not isinstance(hist[0], str)
            or not all(type(v) is int and v >= 0 for v in hist[1:])):
        raise ValueError(f"{what}: malformed tensor reference {ref!r}")
    return tuple(hist)


def _check_call_kwargs(kwargs: Any, what: str) -> None:
    """A layer call's keyword arguments as a Keras file records them. Keras writes
    `training: false` and `mask` (null or the tensor the previous layers' masks give) into most
    calls by itself; pynn passes masks along its graph and runs layers in inference mode
    outside `fit`, so those change nothing. Any other argument (initial_state, constants, an
    explicit training=True that keeps dropout on at inference) would be dropped and the model
    would compute something else: an error instead."""
    if kwargs is None:
        return
    if not isinstance(kwargs, dict):
        raise ValueError(f"{what}: malformed kwargs {kwargs!r}")
    for key, value in kwargs.items():
        if key == "mask" or (key == "training" and value in (False, None)):
            continue
        raise ValueError(f"{what}: the call's keyword argument {key}={reprlib.repr(value)} is not "
                         f"supported (pynn reads only the call's inputs, 'mask' and "
                         f"training=False)")


def model_from_config(config: Mapping[str, Any],
                      custom_objects: Mapping[str, Any] | None = None) -> Model:
    """A functional model from its config (`functional_config`)."""
    from pynn import layers as layers_mod
    from pynn.models.model import Model

    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError("config: expected a dict with a 'layers' list")
    made, pending = {}, []
    for i, entry in enumerate(config["layers"]):
        if not isinstance(entry, dict):
            raise ValueError(f"config: layer {i} is not a dict")
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        if not isinstance(name, str) or name in made:
            raise ValueError(f"config: layer {i} has a missing or repeated name {name!r}")
        layer = layers_mod.deserialize(entry, custom_objects)
        made[name] = layer
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ValueError(f"config: layer {name!r} has malformed inbound_nodes")
        if isinstance(layer, InputLayer):
            continue
        for k, node in enumerate(nodes):
            if not isinstance(node, dict) or not isinstance(node.get("args"), list) or \
                    len(node["args"]) != 1:
                raise ValueError(f"config: layer {name!r} node {k} is malformed")
            _check_call_kwargs(node.get("kwargs"), f"config: layer {name!r} node {k}")
            pending.append((name, k, node["args"][0]))
    tensors = {}
    for name, layer in made.items():
        if isinstance(layer, InputLayer):
            tensors[(name, 0, 0)] = layer.output
    calls: dict[Any, Any] = {}
    while pending:
        progressed = False
        rest = []
        for name, k, arg in pending:
            if calls.get(name, 0) != k:
                rest.append((name, k, arg))
                continue
            if _is_ref(arg):
                keys = [_history_of(arg, name)]
            elif isinstance(arg, list):
                keys = [_history_of(a, name) for a in arg]
            elif isinstance(arg, dict):
                keys = [_history_of(a, name) for a in arg.values()]
            else:
                raise ValueError(f"config: layer {name!r} node {k} has malformed arguments")
            if not all(key in tensors for key in keys):
                rest.append((name, k, arg))
                continue
            ins = [tensors[key] for key in keys]
            if _is_ref(arg):
                call_arg = ins[0]
            elif isinstance(arg, dict):
                call_arg = dict(zip(arg.keys(), ins))
            else:
                call_arg = ins
            out = made[name](call_arg)
            outs = list(out.values()) if isinstance(out, dict) else (
                out if isinstance(out, list) else [out])
            for ti, t in enumerate(outs):
                tensors[(name, k, ti)] = t
            calls[name] = k + 1
            progressed = True
        if not progressed:
            raise ValueError(f"config: cannot connect layers {sorted({p[0] for p in rest})}: "
                             f"their inputs are never produced (a cycle or a missing layer)")
        pending = rest

    def pick(refs, what):
        if isinstance(refs, dict):
            return {k: pick([v], what)[0] for k, v in refs.items()}
        if not isinstance(refs, list) or not refs:
            raise ValueError(f"config: malformed {what}")
        if len(refs) == 3 and isinstance(refs[0], str):
            refs = [refs]
        out = []
        for r in refs:
            key = _history_of(r, what)
            if key not in tensors:
                raise ValueError(f"config: {what} names an unknown tensor {list(key)}")
            out.append(tensors[key])
        return out

    inputs = pick(config.get("input_layers"), "input_layers")
    outputs = pick(config.get("output_layers"), "output_layers")
    if isinstance(inputs, list) and len(inputs) == 1:
        inputs = inputs[0]
    if isinstance(outputs, list) and len(outputs) == 1:
        outputs = outputs[0]
    model = Model(inputs, outputs, name=config.get("name"))
    if config.get("trainable") is False:
        model.trainable = False
    return model
