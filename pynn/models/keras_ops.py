"""Keras's op layers in a functional config, read as pynn op layers (data only).

A Keras 3 functional model records every `keras.ops` call between its inputs and outputs as
an entry of its ``layers`` list whose module is ``keras.src.ops.*`` ("NotEqual", "Sum",
...). Keras also records the ops it runs itself to compute masks: ``Embedding(mask_zero=True)``
adds ``NotEqual(x, 0)``, ``Masking`` adds ``NotEqual(x, mask_value)`` then ``Any(axis=-1)``,
and the layers after them receive that tensor as the ``mask`` keyword of their call.

Each such entry is translated here into a pynn `OpLayer` config: `KERAS_OPS` names, for each
Keras op class, the `pynn.ops` function computing it and the config keys passed to it; the
function is applied to placeholder inputs of the shapes the file records, and the single
`OpLayer` it makes is what the model gets. Nothing from the file is ever run: the class name
only selects an entry of the table, and the arguments must be numbers, lists of numbers or
tensor references. An op class not in the table is refused, naming it.

Masks: pynn hands masks on by itself (from Embedding(mask_zero=True) and Masking, through
the layers that keep them, to the layers that read them), so the ``mask`` keyword Keras
records is not used; it must name a tensor made by an op entry (the masks Keras computes),
since a mask the user passed by hand would not be the one pynn hands on, and each recurrent
layer Keras hands a mask must read one in pynn's graph too (`check_masks`). The op entries
that only computed masks (including the ones combining masks, `MASK_OPS`) feed nothing the
outputs need: they are checked as data and left out of the model.

Op entries own no weights and Keras writes no HDF5 group for them (see keras_format.layout).
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

# Keras op class -> (pynn.ops function, Keras config keys handed to it as keyword arguments)
_BINARY = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum",
           "Power", "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual",
           "Matmul", "Where")
_UNARY = ("Absolute", "Abs", "Negative", "Exp", "Log", "Sqrt", "Square", "Sign", "Reciprocal",
          "Tanh", "Relu", "Sigmoid")


def _snake(name: str) -> str:
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return {"true_divide": "true_divide", "absolute": "abs", "matmul": "matmul"}.get(out, out)


KERAS_OPS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{cls: (_snake(cls), ()) for cls in _BINARY + _UNARY},
    "Sum": ("sum", ("axis", "keepdims")),
    "Mean": ("mean", ("axis", "keepdims")),
    "Max": ("max", ("axis", "keepdims")),
    "Min": ("min", ("axis", "keepdims")),
    # on boolean tensors (pynn: 1.0 / 0.0), "any" is the max and "all" the min
    "Any": ("max", ("axis", "keepdims")),
    "All": ("min", ("axis", "keepdims")),
    "LogicalNot": ("logical_not", ()),
    "Argmax": ("argmax", ("axis", "keepdims")),
    "Reshape": ("reshape", ("newshape",)),
    "ExpandDims": ("expand_dims", ("axis",)),
    "Squeeze": ("squeeze", ("axis",)),
    "Transpose": ("transpose", ("axes",)),
    "Concatenate": ("concatenate", ("axis",)),
    "Softmax": ("softmax", ("axis",)),
    **{cls: (cls.lower(), ()) for cls in ("Softplus", "Softsign", "Silu", "Selu")},
}
_BOOLEAN_ONLY = ("Any", "All", "LogicalNot")   # equal to pynn's op on 0/1 inputs only
# Ops Keras runs only to combine masks (merging layers, Concatenate): checked and left out
# with the mask they compute, never translated (pynn hands masks on by itself)
# (class -> (no pynn function, the config keys))
MASK_OPS: dict[str, tuple[None, tuple[str, ...]]] = {
    "LogicalOr": (None, ()), "LogicalAnd": (None, ()), "OnesLike": (None, ("dtype",)),
    "ZerosLike": (None, ("dtype",)), "Cast": (None, ("dtype",))}
# config keys Keras writes that must hold these values for pynn's op to compute the same
_NEUTRAL = {"initial": None}


def is_op_entry(entry: Any) -> bool:
    """Whether a functional config's layer entry is one of Keras's op layers."""
    return isinstance(entry, dict) and isinstance(entry.get("module"), str) \
        and entry["module"].startswith("keras.src.ops")


def _is_ref(x: Any) -> bool:
    return isinstance(x, dict) and x.get("class_name") == "__keras_tensor__"


def _ref_info(ref: Any, what: str) -> tuple[tuple[Any, ...], tuple[int, ...], str]:
    cfg = ref.get("config")
    hist = cfg.get("keras_history") if isinstance(cfg, dict) else None
    shape = cfg.get("shape") if isinstance(cfg, dict) else None
    if not isinstance(hist, list) or len(hist) != 3 or not isinstance(shape, list) \
            or not shape or not all(isinstance(d, int) and not isinstance(d, bool)
                                    and 0 < d < 2**31 for d in shape[1:]):
        raise ValueError(f"{what}: malformed tensor reference {str(ref)[:120]}")
    return tuple(hist), tuple(shape[1:]), str(cfg.get("dtype", "float32"))


def _number(value: Any, what: str) -> Any:
    """A constant argument: a number or a (nested) list of numbers."""
    if isinstance(value, list):
        return [_number(v, what) for v in value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what}: argument {str(value)[:80]!r} is neither a tensor nor a "
                         f"number")
    return value


def _call_of(entry: dict[str, Any], tables: Mapping[str, tuple[Any, ...]]
             ) -> tuple[str, str, dict[str, Any], list[Any]]:
    """(class, "layer ... (Keras op ...)", config, args) of an op entry, after checking its
    class is in `tables` (class -> (..., accepted config keys)), its config keys, and that it
    is one call without keywords."""
    cls = entry.get("class_name")
    raw = entry.get("config")
    cfg: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = entry.get("name") or cfg.get("name")
    what = f"layer {name!r} (Keras op {cls})"
    if not isinstance(cls, str) or cls not in tables:
        raise ValueError(f"{what}: unknown Keras op class {cls!r}; pynn reads the ops "
                         f"{sorted(tables)}")
    keys = tables[cls][1]
    for key in sorted(set(cfg) - set(keys) - {"name"}):
        if key not in _NEUTRAL or cfg[key] != _NEUTRAL[key]:
            raise ValueError(f"{what}: pynn's op takes no {key!r} (the file sets it to "
                             f"{cfg[key]!r})")
    nodes = entry.get("inbound_nodes")
    if not isinstance(nodes, list) or len(nodes) != 1 or not isinstance(nodes[0], dict) \
            or not isinstance(nodes[0].get("args"), list):
        raise ValueError(f"{what}: expected one call with an 'args' list")
    if nodes[0].get("kwargs"):
        raise ValueError(f"{what}: keyword arguments {sorted(nodes[0]['kwargs'])[:4]} are not "
                         f"supported; Keras's ops take their options in the config")
    return cls, what, cfg, nodes[0]["args"]


def _check_mask_op(entry: dict[str, Any]) -> None:
    """An op entry that only computes a mask: checked as data (its class, config keys,
    arguments: tensor references, numbers and lists of them), then left out."""
    _, what, _, args = _call_of(entry, {**KERAS_OPS, **MASK_OPS})

    def check(value: Any) -> int:
        if _is_ref(value):
            _ref_info(value, what)
            return 1
        if isinstance(value, list):
            return sum(check(v) for v in value)
        _number(value, what)
        return 0

    if not sum(check(v) for v in args):
        raise ValueError(f"{what}: takes no tensor of the model")


def _op_to_pynn(entry: dict[str, Any]) -> dict[str, Any]:
    """One Keras op entry as a pynn OpLayer entry (see the module's docstring)."""
    from pynn import ops
    from pynn.layers import Input
    from pynn.layers.ops_layer import OpLayer

    cls, what, cfg, raw_args = _call_of(entry, KERAS_OPS)
    name = entry.get("name") or cfg.get("name")
    fn_name, keys = KERAS_OPS[cls]
    refs: list[Any] = []
    placeholders: list[Any] = []

    def arg(value: Any) -> Any:
        if _is_ref(value):
            _, shape, dtype = _ref_info(value, what)
            if cls in _BOOLEAN_ONLY and dtype != "bool":
                raise ValueError(f"{what}: pynn reads {cls} on boolean tensors only (this "
                                 f"one is {dtype})")
            refs.append(value)
            placeholder = Input(shape=shape or (1,))
            placeholder._pynn_scalar = not shape   # Keras's (None,): one value per sample
            placeholders.append(placeholder)
            return placeholder
        if isinstance(value, list) and value and all(_is_ref(v) for v in value):
            return [arg(v) for v in value]   # the tensors of Concatenate
        return _number(value, what)

    args = [arg(v) for v in raw_args]
    if not refs:
        raise ValueError(f"{what}: takes no tensor of the model")
    kwargs = {k: (tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k])
              for k in keys if k in cfg}
    try:
        out = getattr(ops, fn_name)(*args, **kwargs)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{what}: {exc}") from None
    layer = getattr(out, "_history", (None,))[0]
    if not isinstance(layer, OpLayer) or [id(t) for t in layer._inbound_nodes[-1].inputs] \
            != [id(p) for p in placeholders]:
        raise ValueError(f"{what}: has no single pynn op with these arguments")
    conf = layer.get_config()
    conf["name"] = name
    return {"class_name": "OpLayer", "config": conf, "name": name,
            "inbound_nodes": [{"args": [refs[0] if len(refs) == 1 else refs], "kwargs": {}}]}


def ops_from_keras(layers: list[Any], outputs: Any = None) -> list[Any]:
    """A Keras functional config's ``layers`` list with its op entries as pynn OpLayer
    entries, the ``mask`` keywords of every call dropped (after checking that each names a
    tensor made by an op entry), and the op entries that fed only masks left out (after
    checking them as data); `outputs` is the config's ``output_layers``."""
    entries = [e for e in layers if isinstance(e, dict)]
    op_names = {e.get("name") for e in entries if is_op_entry(e)}
    known = {e.get("name") for e in entries}
    for e in entries:
        missing = _layer_names(e.get("inbound_nodes")) - known
        if missing:
            raise ValueError(f"layer {e.get('name')!r}: is called on tensors of layers "
                             f"{sorted(missing)[:4]} that the config does not hold")
    # the ops whose results a layer's input or an output needs, directly or through ops
    ops = {e["name"]: e for e in entries if e.get("name") in op_names}
    used = _layer_names(outputs)
    for e in entries:
        nodes = e.get("inbound_nodes")
        if e.get("name") not in op_names and isinstance(nodes, list):
            used |= _layer_names([n.get("args") if isinstance(n, dict) else n for n in nodes])
    todo = list(used & set(ops))
    while todo:
        for n in _layer_names(ops[todo.pop()].get("inbound_nodes")) & set(ops) - used:
            used.add(n)
            todo.append(n)
    out = []
    for entry in layers:
        if is_op_entry(entry):
            if entry.get("name") in used:
                out.append(_op_to_pynn(entry))
            else:
                _check_mask_op(entry)
            continue
        for node in entry.get("inbound_nodes") or [] if isinstance(entry, dict) else []:
            _check_mask(node, entry.get("name"), op_names)
        out.append(entry)
    return out


def _layer_names(value: Any) -> set[str]:
    """The layer names of every tensor reference (or [name, node, tensor] triple) in value."""
    if _is_ref(value):
        hist = (value.get("config") or {}).get("keras_history")
        return {hist[0]} if isinstance(hist, list) and hist and isinstance(hist[0], str) \
            else set()
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) \
            and all(isinstance(v, int) for v in value[1:]):
        return {value[0]}
    if isinstance(value, dict):
        return set().union(*(_layer_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_layer_names(v) for v in value))
    return set()


def _check_mask(node: Any, layer: Any, op_names: set[Any]) -> None:
    """The ``mask`` keyword of a call, if any, names tensors made by op entries (the masks
    Keras computes). It stays in the config: the functional rebuild reads a call's args only,
    and `check_masks` compares it with the masks pynn hands on."""
    if not isinstance(node, dict) or not isinstance(node.get("kwargs"), Mapping) \
            or "mask" not in node["kwargs"]:
        return
    masks = node["kwargs"]["mask"]
    for ref in masks if isinstance(masks, list) else [masks]:
        if ref is None:
            continue
        if not _is_ref(ref):
            raise ValueError(f"layer {layer!r}: malformed mask argument {str(ref)[:80]}")
        hist, _, _ = _ref_info(ref, f"layer {layer!r}")
        if hist[0] not in op_names:
            raise ValueError(f"layer {layer!r}: is called with the mask {hist[0]!r} passed by "
                             f"hand; pynn hands masks on from Embedding(mask_zero=True) and "
                             f"Masking only")


def check_masks(model: Any, config: Mapping[str, Any]) -> None:
    """Every recurrent layer (or Bidirectional) that Keras called with a mask reads one in
    pynn's graph of `model` too; otherwise pynn would compute something else than Keras (a
    mask pynn does not hand on through the layers between), and the file is refused."""
    from pynn.layers.recurrent import RNN, Bidirectional

    want: set[str] = set()

    def walk(cfg: Mapping[str, Any]) -> None:
        for entry in (cfg.get("config") or {}).get("layers", []):
            if entry.get("class_name") in ("Functional", "Model"):
                walk(entry)
            if any(isinstance(n, dict) and isinstance(n.get("kwargs"), Mapping)
                   and n["kwargs"].get("mask") is not None
                   for n in entry.get("inbound_nodes") or []):
                want.add(entry.get("name"))

    walk(config)
    if not want:
        return
    rnn_names: dict[str, list[str]] = {}

    def collect(m: Any) -> None:
        for layer in m._sublayers():
            if isinstance(layer, Bidirectional):
                rnn_names[layer.name] = [layer.forward_layer.name, layer.backward_layer.name]
            elif isinstance(layer, RNN):
                rnn_names[layer.name] = [layer.name]
            elif hasattr(layer, "_sublayers") and hasattr(layer, "_build_spec"):
                collect(layer)

    collect(model)
    masked = {n.name: len(n.inputs) > 1 for n in model._build_spec().nodes if n.op == "rnn"}
    for name in sorted(want & set(rnn_names)):
        if not all(masked.get(n, False) for n in rnn_names[name]):
            raise ValueError(f"layer {name!r}: Keras hands it a mask that pynn does not hand "
                             f"on to it (through the layers between it and the Embedding or "
                             f"Masking layer); pynn would compute other results than Keras")


def check_op_shapes(model: Any, config: Mapping[str, Any]) -> None:
    """Each op layer of the built `model` was called on tensors of the shapes its entry in
    `config` (the translated functional config) records: the op was translated for those
    (its Keras axes count them), so a file that lies about them is refused."""
    from pynn.layers.ops_layer import OpLayer, scalar_sample

    cfg = config.get("config") or {}
    if config.get("class_name") not in ("Functional", "Model"):
        return
    layers = {lay.name: lay for lay in model._sublayers()}
    for entry in cfg.get("layers", []):
        layer = layers.get(entry.get("name"))
        if entry.get("class_name") in ("Functional", "Model", "Sequential") and layer is not None:
            check_op_shapes(layer, entry)
        if not isinstance(layer, OpLayer) or not layer._inbound_nodes:
            continue
        arg = entry["inbound_nodes"][0]["args"][0]
        refs = arg if isinstance(arg, list) else [arg]
        want = [scalar_sample(_ref_info(r, f"layer {layer.name!r}")[1]) for r in refs]
        have = [tuple(t.sample_shape) for t in layer._inbound_nodes[0].inputs]
        if want != have:
            raise ValueError(f"layer {layer.name!r}: the file records inputs of shapes "
                             f"{want}, the model gives {have}")


# --- writing: pynn's op layers as Keras's op entries --------------------------------------------
_NN = ("Relu", "Sigmoid", "Softmax", "Softplus", "Softsign", "Silu", "Selu")
_BY_FN = {_snake(cls): cls for cls in _BINARY + _UNARY if cls not in ("Abs", "TrueDivide")}
_BY_ACTIVATION = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax",
                  "softplus": "Softplus", "softsign": "Softsign", "silu": "Silu",
                  "selu": "Selu"}
_REDUCTIONS = {"sum": "Sum", "mean": "Mean", "max": "Max", "min": "Min"}


def _keras_op(op: str, attrs: Mapping[str, Any], scalar_out: bool
              ) -> tuple[str, dict[str, Any]] | None:
    """(Keras op class, its config less the name) computing pynn's `op` with `attrs`, or
    None when Keras has no single op for it."""
    fn = attrs.get("fn")
    if op in ("binary", "binary_scalar") and fn in _BY_FN:
        return _BY_FN[fn], {}
    if op == "unary" and fn in _BY_FN and fn != "power":
        return _BY_FN[fn], {}
    if op == "activation" and attrs.get("activation") in _BY_ACTIVATION \
            and not attrs.get("act_params"):
        cls = _BY_ACTIVATION[attrs["activation"]]
        return cls, ({"axis": -1} if cls == "Softmax" else {})
    if op == "reduce" and fn in _REDUCTIONS:
        cfg: dict[str, Any] = {"axis": list(attrs["axes"]),
                               "keepdims": bool(attrs.get("keepdims", False))}
        return _REDUCTIONS[fn], ({**cfg, "initial": None} if fn in ("max", "min") else cfg)
    if op == "reshape":
        return "Reshape", {"newshape": [-1] if scalar_out else [-1, *attrs["target_shape"]]}
    if op == "concatenate":
        return "Concatenate", {"axis": int(attrs["axis"])}
    if op == "permute":
        return "Transpose", {"axes": [0, *attrs["dims"]]}
    if op in ("matmul", "where"):
        return op.capitalize(), {}
    return None


def op_to_keras(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """A pynn OpLayer entry of a functional config (``{"class_name": "OpLayer", "config",
    "name", "inbound_nodes"}``) as the op entry Keras writes for the same keras.ops call, or
    None when Keras has no single op for it (the entry then stays pynn's own)."""
    cfg = entry["config"]
    op, attrs, operands = cfg["op"], cfg["attrs"], cfg["operands"]
    found = _keras_op(op, attrs, bool(cfg.get("scalar_out")))
    nodes = entry.get("inbound_nodes") or []
    if found is None or len(nodes) != 1:
        return None
    cls, kcfg = found
    arg = nodes[0]["args"][0]
    refs = arg if isinstance(arg, list) else [arg]
    args: list[Any] = []
    for operand in operands:
        if isinstance(operand, int):
            args.append(refs[operand])
        else:   # a constant: nested lists of numbers, in its per-sample shape
            import numpy as np

            args.append(np.asarray(operand["value"], dtype=np.float64)
                        .reshape(operand["shape"]).tolist())
    if op == "binary_scalar":
        scalar = float(attrs["scalar"])
        args = [scalar, refs[0]] if attrs.get("reverse") else [refs[0], scalar]
    if op == "concatenate":
        args = [args]
    module = "keras.src.ops.nn" if cls in _NN else "keras.src.ops.numpy"
    return {"module": module, "class_name": cls, "config": {"name": cfg["name"], **kcfg},
            "registered_name": cls, "name": entry.get("name", cfg["name"]),
            "inbound_nodes": [{"args": args, "kwargs": {}}]}
