"""Keras 3 model files: `.keras` archives and `.weights.h5` weight files, both ways.

A `.keras` file is a zip archive (members stored, not compressed) holding exactly

    metadata.json      {"keras_version": ..., "date_saved": ...}
    config.json        the model's config as Keras serializes it, with "compile_config"
    model.weights.h5   the weights (and the optimizer's variables) in HDF5

Inside the HDF5 file every object that owns variables has a group ``<path>/vars`` whose
datasets are named "0", "1", ... in the object's own order, and whose attribute "name" is the
object's name. Paths are not layer names: a model's layers sit under ``<model path>/layers/``
named after their class in snake case, numbered per class in the model's layer order
(``dense``, ``dense_1``, ``conv2d``, ``p_re_lu``...); a nested model is such an entry with its
own ``layers/``. A Sequential's automatic InputLayer is not among its layers; a functional
model's InputLayers are. The optimizer's variables are ``optimizer/vars``: the iteration count,
the learning rate (absent when a schedule gives it: the compile config then holds the
schedule's config), then its slots (see `OPTIMIZERS`). A `.weights.h5` file is the same HDF5
layout on its own (with the optimizer's variables when the model is compiled, as
Keras writes it).

How each layer class is written is one entry of `LAYERS`: the weights its ``vars`` group holds,
in order, and optional hooks that translate its config to and from Keras's. To add a layer:

    LAYERS["Conv2DTranspose"] = KerasLayer(weights=own("kernel", "bias"))
    # a layer whose variables live in a sub-object (Keras's LSTM keeps them in its cell):
    LAYERS["LSTM"] = KerasLayer(weights=(("cell", ("kernel", "recurrent_kernel", "bias")),))
    # a wrapper: the wrapped layers are written by their own entries
    LAYERS["TimeDistributed"] = KerasLayer(sublayers=("layer",), nested_configs=("layer",))

The names are the layer's `Weight.name`s (`integers` lists those Keras keeps as int32, as
Normalization's sample count); a weight the layer does not have (a Dense without
bias) is skipped, as Keras skips it. Config keys Keras writes that the pynn class does not take
are dropped when they hold a neutral value (None, False, an initializer: the file's weights
replace initial values) and refused otherwise, naming the layer and the key. A class without an
entry (the user's own registered layers) keeps its config as it is and writes its weights in
the layer's own order. Check a new entry with a model holding the layer in
tests/test_keras_format.py: Keras loads pynn's file and predicts the same, pynn loads Keras's,
and pynn's HDF5 tree equals Keras's re-save of it (`_h5_tree`).

A functional config may hold Keras's op entries (``keras.ops`` calls, and the ops Keras
records to compute masks): `pynn.models.keras_ops` reads them as pynn op layers and writes
pynn's op layers as such entries; they own no variables, so they have no HDF5 group.

Loading treats the file as untrusted input: member names, sizes and compression ratios are
checked before anything is read; only the three members above are accepted; the configs are
strict JSON mapped onto pynn's classes or the user's registered ones (a Lambda layer, whose
Python bytecode Keras stores, is refused); every HDF5 dataset's shape and dtype is compared
with the weight the config describes before it is read; anything wrong is a ValueError.
Saving writes a temporary file in the target folder and renames it into place.
"""
from __future__ import annotations

import datetime
import inspect
import io
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pynn.models import _safetensors
from pynn.models.keras_ops import (
    check_masks,
    check_op_shapes,
    is_op_entry,
    op_to_keras,
    ops_from_keras,
)

if TYPE_CHECKING:
    from pynn.models.model import Model

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
MEMBERS = (METADATA, CONFIG, WEIGHTS)
KERAS_VERSION = "3.15.1"   # the Keras version whose layout is written (metadata.json)
# Bounds checked before reading a member: JSON members are small (a few KiB per layer), the
# weights member may be large but must not expand far beyond its stored size (Keras stores it
# uncompressed: the ratio is 1).
MAX_JSON = 16 * 2**20
MAX_WEIGHTS = 64 * 2**30
MAX_RATIO = 20
_ZIP_MAGIC = b"PK\x03\x04"
_H5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MODELS = ("Sequential", "Functional", "Model")


# --- the per-layer table ----------------------------------------------------------------------
@dataclass(frozen=True)
class KerasLayer:
    """How one layer class is written in Keras's format.

    weights: ((sub-path, (weight names in Keras's order)), ...); sub-path "" is the layer's
        own ``vars`` group, "cell" a group ``<layer>/cell/vars`` and so on.
    sublayers / nested_configs: for wrappers (Bidirectional, TimeDistributed), the
        attributes holding the wrapped layers and the config keys holding their configs.
    keras_only: arguments of Keras's class that pynn's lacks, with the value at which each
        means what pynn computes (dropped when the file holds that value, refused otherwise).
    to_keras / from_keras: the config translated for Keras / for pynn's class, when the
        generic translation (module names added / neutral Keras-only keys dropped) is not
        enough.
    """
    weights: tuple[tuple[str, tuple[str, ...]], ...] = ()
    keras_only: Mapping[str, Any] = field(default_factory=dict)
    sublayers: tuple[str, ...] = ()        # attributes holding wrapped layers, each written
    #                                        under "<layer>/<attribute>/" by its own entry
    nested_configs: tuple[str, ...] = ()   # config keys holding a wrapped layer's config
    to_keras: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    from_keras: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    integers: tuple[str, ...] = ()         # weights Keras keeps as int32 (pynn: float32)


def own(*names: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The weights of a layer that keeps them in its own ``vars`` group, in this order."""
    return (("", tuple(names)),)


def _input_to_keras(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"batch_shape": [None, *cfg["shape"]], "dtype": "float32", "sparse": False,
            "ragged": False, "name": cfg["name"], "optional": False}


def _input_from_keras(cfg: dict[str, Any]) -> dict[str, Any]:
    shape = cfg.get("batch_shape", cfg.get("shape"))
    if not isinstance(shape, list) or not shape:
        raise ValueError(f"InputLayer {cfg.get('name')!r}: expected a batch_shape list, got "
                         f"{shape!r}")
    for key in ("sparse", "ragged", "optional"):
        if cfg.get(key):
            raise ValueError(f"InputLayer {cfg.get('name')!r}: {key}=True inputs are not "
                             f"supported by pynn")
    return {"name": cfg.get("name"), "shape": shape[1:] if "batch_shape" in cfg else shape}


def _batchnorm_from_keras(cfg: dict[str, Any]) -> dict[str, Any]:
    # renorm's own settings mean nothing without renorm (refused by the generic rule if set)
    if not cfg.get("renorm"):
        cfg = {k: v for k, v in cfg.items() if k not in ("renorm_momentum", "renorm_clipping")}
    return cfg


def _discretization_to_keras(cfg: dict[str, Any]) -> dict[str, Any]:
    # Keras's Discretization takes no `trainable` argument (it writes a plain dtype instead)
    out = {k: v for k, v in cfg.items() if k != "trainable"}
    out["dtype"] = "float32"
    return out


_WEIGHTLESS = (
    "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "Flatten", "Reshape",
    "Permute", "RepeatVector", "Identity", "Add", "Average", "Concatenate", "Dot", "Maximum",
    "Minimum", "Multiply", "Subtract", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
    "AveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D")
LAYERS: dict[str, KerasLayer] = {name: KerasLayer() for name in _WEIGHTLESS}
LAYERS.update({
    "InputLayer": KerasLayer(to_keras=_input_to_keras, from_keras=_input_from_keras),
    "Dense": KerasLayer(weights=own("kernel", "bias")),
    "Conv1D": KerasLayer(weights=own("kernel", "bias")),
    "Conv2D": KerasLayer(weights=own("kernel", "bias")),
    "DepthwiseConv1D": KerasLayer(weights=own("kernel", "bias")),
    "DepthwiseConv2D": KerasLayer(weights=own("kernel", "bias")),
    "SeparableConv1D": KerasLayer(weights=own("depthwise_kernel", "pointwise_kernel", "bias")),
    "SeparableConv2D": KerasLayer(weights=own("depthwise_kernel", "pointwise_kernel", "bias")),
    "BatchNormalization": KerasLayer(
        weights=own("gamma", "beta", "moving_mean", "moving_variance"),
        from_keras=_batchnorm_from_keras),
    "PReLU": KerasLayer(weights=own("alpha")),
    "ReLU": KerasLayer(keras_only={"max_value": None, "negative_slope": 0.0, "threshold": 0.0}),
    "Embedding": KerasLayer(weights=own("embeddings")),
    "Masking": KerasLayer(),
    # Keras keeps a recurrent layer's variables in its cell
    "SimpleRNN": KerasLayer(weights=(("cell", ("kernel", "recurrent_kernel", "bias")),)),
    "LSTM": KerasLayer(weights=(("cell", ("kernel", "recurrent_kernel", "bias")),)),
    "GRU": KerasLayer(weights=(("cell", ("kernel", "recurrent_kernel", "bias")),)),
    "Bidirectional": KerasLayer(sublayers=("forward_layer", "backward_layer"),
                                nested_configs=("layer", "backward_layer")),
    "TimeDistributed": KerasLayer(sublayers=("layer",), nested_configs=("layer",)),
    "LayerNormalization": KerasLayer(weights=own("gamma", "beta")),
    "GroupNormalization": KerasLayer(weights=own("gamma", "beta")),
    # the adapted statistics are non-trainable variables, the sample count last
    "Normalization": KerasLayer(weights=own("mean", "variance", "count"),
                                integers=("count",)),
})
LAYERS.update({name: KerasLayer() for name in (
    "UnitNormalization", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Rescaling", "CategoryEncoding")})
LAYERS["Discretization"] = KerasLayer(to_keras=_discretization_to_keras)
LAYERS.update({name: KerasLayer() for name in (
    "UpSampling1D", "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
    "Cropping2D")})


def _no_trainable_to_keras(cfg: dict[str, Any]) -> dict[str, Any]:
    # Keras's SpatialDropout1D/2D take no `trainable` argument
    return {k: v for k, v in cfg.items() if k != "trainable"}


LAYERS.update({name: KerasLayer(to_keras=_no_trainable_to_keras)
               for name in ("SpatialDropout1D", "SpatialDropout2D")})
# the augmentation layers hold no weights
LAYERS.update({name: KerasLayer() for name in (
    "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom")})
LAYERS.update({name: KerasLayer(weights=own("kernel", "bias"))
               for name in ("Conv1DTranspose", "Conv2DTranspose")})

# The optimizer's slots in Keras's ``optimizer/vars``, after the iteration count and the
# learning rate: for each block, every trainable weight in the model's order with the listed
# pynn slot indices (a block of two interleaves them per weight, as Keras's Adam does: m, v of
# the first weight, then of the second...). An optimizer (or a configuration, see
# `_slot_blocks`) not listed carries its compile configuration only.
OPTIMIZERS: dict[str, tuple[tuple[int, ...], ...]] = {
    "SGD": ((0,),),
    "Adam": ((0, 1),),
    "AdamW": ((0, 1),),
    "Adagrad": ((0,),),
    "RMSprop": ((0,),),
    "Adadelta": ((0, 1),),
    "Adamax": ((0, 1),),
    "Nadam": ((0, 1),),
}
# Scalars Keras keeps after the slots: Nadam's running product of its momentum schedule
# (the key of pynn's Optimizer.get_state)
TRAILING: dict[str, tuple[str, ...]] = {"Nadam": ("u_product",)}


def _slot_blocks(opt_cfg: Mapping[str, Any]) -> tuple[tuple[int, ...], ...] | None:
    cls = opt_cfg.get("class_name")
    cfg = opt_cfg.get("config") or {}
    if cls == "SGD" and not cfg.get("momentum"):
        return ()
    if cls in ("Adam", "AdamW") and cfg.get("amsgrad"):
        return ((0, 1), (2,))   # Keras adds the velocity_hat of every weight after m, v
    if cls == "RMSprop":   # pynn's slots: velocity [, momentum] [, average_gradient]
        extra = [bool(cfg.get("momentum")), bool(cfg.get("centered"))]
        return ((0,),) + tuple((k,) for k in range(1, 1 + sum(extra)))
    return OPTIMIZERS.get(cls) if isinstance(cls, str) else None


def _trailing(model: Any) -> tuple[str, ...]:
    return TRAILING.get(type(model.optimizer).__name__, ())


# --- configs: pynn -> Keras -------------------------------------------------------------------
_MODULES = {"_initializer": "keras.initializers", "_regularizer": "keras.regularizers"}


def _nested_to_keras(key: str, value: Any) -> Any:
    for suffix, module in _MODULES.items():
        if key.endswith(suffix) and isinstance(value, dict) and "class_name" in value:
            return {"module": module, "class_name": value["class_name"],
                    "config": value.get("config", {}), "registered_name": None}
    return value


def to_keras_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A pynn layer/model config (``{"class_name", "config", ...}``) as Keras writes it."""
    cls = entry["class_name"]
    cfg = dict(entry["config"])
    module: str | None
    if cls in _MODELS:
        cfg["layers"] = [(e["class_name"] == "OpLayer" and op_to_keras(e)) or to_keras_config(e)
                         for e in cfg["layers"]]
        module = "keras" if cls == "Sequential" else "keras.src.models.functional"
        registered = None
    else:
        fmt = LAYERS.get(cls)
        if fmt is not None and fmt.to_keras is not None:
            cfg = fmt.to_keras(cfg)
        cfg = {k: _nested_to_keras(k, v) for k, v in cfg.items()}
        for key in fmt.nested_configs if fmt is not None else ():
            if isinstance(cfg.get(key), dict):
                cfg[key] = to_keras_config(cfg[key])
        module = "keras.layers" if fmt is not None else None
        registered = None if fmt is not None else cls
    out = {"module": module, "class_name": cls.split(">")[-1], "config": cfg,
           "registered_name": registered}
    out.update({k: v for k, v in entry.items() if k not in ("class_name", "config")})
    return out


def _compile_to_keras(cc: Mapping[str, Any]) -> dict[str, Any]:
    def obj(value, module):
        if not isinstance(value, dict) or "class_name" not in value:
            return value
        cfg = dict(value.get("config") or {})
        if module == "keras.losses" and "from_logits" in cfg and not cfg["from_logits"] \
                and "crossentropy" not in value["class_name"].lower() \
                and value["class_name"] not in ("BinaryFocalCrossentropy",):
            cfg.pop("from_logits")   # Keras's regression losses take no from_logits
        if isinstance(cfg.get("learning_rate"), dict):   # a schedule
            cfg["learning_rate"] = obj(cfg["learning_rate"], "keras.optimizers.schedules")
        return {"module": module, "class_name": value["class_name"], "config": cfg,
                "registered_name": None}

    loss = cc.get("loss")
    if isinstance(loss, dict) and "class_name" not in loss:
        loss = {k: obj(v, "keras.losses") for k, v in loss.items()}
    elif isinstance(loss, list):
        loss = [obj(v, "keras.losses") for v in loss]
    else:
        loss = obj(loss, "keras.losses")
    return {"optimizer": obj(cc["optimizer"], "keras.optimizers"), "loss": loss,
            "loss_weights": cc.get("loss_weights"), "metrics": cc.get("metrics"),
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


# --- configs: Keras -> pynn -------------------------------------------------------------------
# Keras's bookkeeping keys beside a serialized object's class name and config
_OBJECT_KEYS = ("module", "registered_name", "shared_object_id", "build_config",
                "compile_config")


def _strip_object(value: Any) -> Any:
    """A nested serialized object (initializer, regularizer, loss...) without Keras's
    bookkeeping keys."""
    if isinstance(value, dict) and "class_name" in value:
        out = {k: v for k, v in value.items() if k not in _OBJECT_KEYS}
        if isinstance(out.get("config"), dict):
            out["config"] = {k: v for k, v in out["config"].items()
                             if not (k in ("input_axes", "output_axes") and v is None)}
        return out
    return value


def _accepted(cls: type) -> set[str] | None:
    """The keyword arguments a pynn class's constructor takes (None: it takes any)."""
    from pynn.layers.layer import Layer

    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                        p.KEYWORD_ONLY)}
        if klass is Layer:   # its **kwargs takes batch_input_shape only
            return names | {"batch_input_shape"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def _fit_to_class(cls_name: str, cls: type, cfg: dict[str, Any]) -> dict[str, Any]:
    accepted = _accepted(cls)
    fmt = LAYERS.get(cls_name)
    keras_only = fmt.keras_only if fmt is not None else {}
    out = {}
    for key, value in cfg.items():
        if key in keras_only and (accepted is None or key not in accepted) \
                and value == keras_only[key] and type(value) is not bool:
            continue
        if key == "dtype":
            # a dtype policy: pynn computes in float32 (a mixed policy keeps float32
            # variables, which is what the file holds)
            name = (value.get("config") or {}).get("name") if isinstance(value, dict) else value
            if name not in (None, "float32", "mixed_bfloat16", "mixed_float16"):
                raise ValueError(f"layer {cfg.get('name')!r} ({cls_name}): dtype {name!r} is "
                                 f"not supported; pynn computes in float32")
            continue
        if accepted is None or key in accepted:
            out[key] = value
            continue
        neutral = value is None or value is False or value == {} or value == [] \
            or key.endswith("_initializer")
        if not neutral:
            raise ValueError(f"layer {cfg.get('name')!r} ({cls_name}): pynn's {cls_name} has no "
                             f"argument {key!r} (the file sets it to {value!r})")
    return out


def from_keras_config(entry: Any, custom_objects: Mapping[str, Any] | None = None,
                      depth: int = 0) -> dict[str, Any]:
    """A Keras layer/model config translated for pynn's classes (a pynn config passes through
    unchanged). Raises ValueError for a Lambda layer, an unknown class, or a setting pynn's
    class cannot honour."""
    from pynn import layers as layers_mod
    from pynn.saving import lookup

    if depth > 64:
        raise ValueError("model config: models nested more than 64 deep")
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config", {}), dict):
        raise ValueError(f"model config: expected {{'class_name': str, 'config': dict}}, got "
                         f"{str(entry)[:80]}")
    cls_name = entry["class_name"]
    registered = entry.get("registered_name")
    cfg = dict(entry.get("config", {}))
    if cls_name == "Lambda":
        raise ValueError(f"layer {cfg.get('name')!r} is a Lambda layer: Keras stores its Python "
                         f"code in the file and pynn never runs code from a file; rebuild the "
                         f"model in Python and load its weights (.weights.h5)")
    if cls_name in _MODELS:
        if not isinstance(cfg.get("layers"), list):
            raise ValueError(f"model config of {cfg.get('name')!r}: no 'layers' list")
        entries = cfg["layers"] if cls_name == "Sequential" else \
            ops_from_keras(cfg["layers"], cfg.get("output_layers"))
        cfg["layers"] = [from_keras_config(e, custom_objects, depth + 1) for e in entries]
        cfg = {k: v for k, v in cfg.items() if k not in ("dtype", "build_input_shape")}
    else:
        cls = layers_mod._CLASSES.get(cls_name)
        if cls is None:
            name = registered if isinstance(registered, str) else cls_name
            cls = lookup(name, custom_objects) or lookup(cls_name, custom_objects)
            if cls is None:
                raise ValueError(f"layer {cfg.get('name')!r}: unknown layer class {cls_name!r}; "
                                 f"pynn reads {sorted(set(LAYERS) | set(layers_mod._CLASSES))} "
                                 f"and classes registered with "
                                 f"pynn.saving.register_serializable")
            cls_name = name
        fmt = LAYERS.get(cls_name)
        nested = fmt.nested_configs if fmt is not None else ()
        cfg = {k: from_keras_config(v, custom_objects, depth + 1)
               if k in nested and isinstance(v, dict) else _strip_object(v)
               for k, v in cfg.items()}
        if fmt is not None and fmt.from_keras is not None:
            cfg = fmt.from_keras(cfg)
        if isinstance(cls, type):
            cfg = _fit_to_class(cls_name, cls, cfg)
    out = {"class_name": cls_name, "config": cfg}
    out.update({k: v for k, v in entry.items()
                if k in ("name", "inbound_nodes")})
    return out


def _compile_from_keras(cc: Any) -> dict[str, Any] | None:
    if not isinstance(cc, dict) or not cc:
        return None
    opt = _strip_object(cc.get("optimizer"))
    if isinstance(opt, str):
        opt = {"class_name": opt, "config": {}}
    if isinstance(opt, dict) and isinstance(opt.get("config"), dict):
        keep = {"name", "learning_rate", "weight_decay", "clipnorm", "clipvalue",
                "global_clipnorm", "beta_1", "beta_2", "epsilon", "amsgrad", "momentum",
                "nesterov", "rho", "centered", "initial_accumulator_value"}
        ocfg = opt["config"]
        if ocfg.get("use_ema"):
            raise ValueError("compile config: the optimizer's use_ema=True is not supported "
                             "by pynn")
        opt = {"class_name": opt.get("class_name"),
               "config": {k: v for k, v in ocfg.items() if k in keep}}
        if isinstance(ocfg.get("learning_rate"), dict):
            opt["config"]["learning_rate"] = _schedule_from_keras(ocfg["learning_rate"])
    loss = cc.get("loss")
    if isinstance(loss, dict) and "class_name" not in loss:
        loss = {k: _strip_loss(v) for k, v in loss.items()}
    elif isinstance(loss, list):
        loss = [_strip_loss(v) for v in loss]
    else:
        loss = _strip_loss(loss)
    return {"optimizer": opt, "loss": loss, "loss_weights": cc.get("loss_weights"),
            "metrics": cc.get("metrics")}


def _schedule_from_keras(value: dict[str, Any]) -> dict[str, Any]:
    """A learning-rate schedule as Keras serializes it, checked against pynn's schedules."""
    from pynn.optimizers import schedules

    sched = _strip_object(value)
    cls = sched.get("class_name")
    if not isinstance(cls, str) or not isinstance(getattr(schedules, cls, None), type) \
            or not issubclass(getattr(schedules, cls), schedules.LearningRateSchedule) \
            or not isinstance(sched.get("config"), dict):
        raise ValueError(f"compile config: unknown learning-rate schedule {cls!r}; pynn reads "
                         f"the schedules of pynn.optimizers.schedules")
    return {"class_name": cls, "config": dict(sched["config"])}


def _strip_loss(value: Any) -> Any:
    value = _strip_object(value)
    if isinstance(value, dict) and isinstance(value.get("config"), dict):
        cfg = {k: v for k, v in value["config"].items() if k != "dtype"}
        value = {**value, "config": cfg}
    return value


# --- the HDF5 layout --------------------------------------------------------------------------
def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass
class _Group:
    path: str            # the HDF5 group holding the datasets ("layers/dense/vars")
    name: str            # the object's name (the group's "name" attribute)
    weights: list[Any]   # pynn Weight objects, in dataset order
    integers: tuple[str, ...] = ()   # names of the weights stored as int32


def layout(model: Model, config: Mapping[str, Any]) -> list[_Group]:
    """Every ``vars`` group of the model's HDF5 file in order, each with the pynn weights it
    holds. `config` is the model's Keras config, whose layer order names the groups."""
    from pynn.models.model import Model as _Model

    groups: list[_Group] = []

    def walk(model_obj, cfg, prefix):
        groups.append(_Group(f"{prefix}vars", model_obj.name, []))
        used: dict[str, int] = {}
        entries = cfg["config"]["layers"]
        if cfg["class_name"] == "Sequential":
            entries = [e for e in entries if e["class_name"] != "InputLayer"]
        for entry in entries:
            if entry["class_name"] == "OpLayer" or is_op_entry(entry):
                continue   # an op owns no variables: Keras writes no group for it
            key = _snake(entry["class_name"].split(">")[-1])
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            name = entry["config"].get("name")
            path = f"{prefix}layers/{key}/"
            if entry["class_name"] == "InputLayer":
                groups.append(_Group(f"{path}vars", name, []))
                continue
            layer = _find_layer(model_obj, name)
            if isinstance(layer, _Model):
                walk(layer, entry, path)
                continue
            groups.extend(_layer_groups(layer, entry["class_name"], path))

    walk(model, config, "")
    return groups


def _layer_groups(layer: Any, class_name: str, path: str) -> list[_Group]:
    """The ``vars`` groups of one (non-model) layer under `path` ("layers/lstm/")."""
    fmt = LAYERS.get(class_name)
    if fmt is None:   # the user's own layer: its weights, in its order, in its own group
        return [_Group(f"{path}vars", layer.name, list(layer._all_weights()))]
    by_name = {w.name: w for w in layer.__dict__.get("_weights", [])}
    out = []
    if not any(sub == "" for sub, _ in fmt.weights):
        # Keras writes every layer's own group, empty when its variables live in a
        # sub-object (the sub-object's group then follows)
        out.append(_Group(f"{path}vars", layer.name, []))
    for sub, names in fmt.weights:
        ws = [by_name[n] for n in names if n in by_name]
        out.append(_Group(f"{path}{sub + '/' if sub else ''}vars", layer.name, ws,
                          fmt.integers))
    for attr in fmt.sublayers:
        inner = getattr(layer, attr)
        out.extend(_layer_groups(inner, type(inner).__name__, f"{path}{attr}/"))
    listed = {n for _, names in fmt.weights for n in names}
    if set(by_name) - listed:
        raise ValueError(f"layer {layer.name!r} ({class_name}) has weights "
                         f"{sorted(set(by_name) - listed)} that the Keras format table does "
                         f"not list (pynn.models.keras_format.LAYERS)")
    return out


def _find_layer(model, name):
    for layer in model._sublayers():
        if layer.name == name:
            return layer
    raise ValueError(f"model config: no layer named {name!r} in model {model.name!r}")


def _h5py():
    try:
        import h5py
    except ImportError:   # pragma: no cover - h5py is a dependency
        raise ImportError("reading and writing .keras and .h5 files needs h5py "
                          "(pip install h5py)") from None
    return h5py


# --- writing ----------------------------------------------------------------------------------
def _write_h5(model: Model, config: Mapping[str, Any], with_optimizer: bool) -> bytes:
    from pynn.models import state as state_mod

    h5py = _h5py()
    groups = layout(model, config)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for g in groups:
            grp = f.require_group(g.path)
            grp.attrs["name"] = g.name
            for i, w in enumerate(g.weights):
                if not np.all(np.isfinite(w.value)):
                    raise ValueError(f"{model.name}: weight {w.path!r} contains NaN or Inf; "
                                     f"refusing to save a broken model")
                data = w.value
                if w.name in g.integers:
                    data = np.rint(data).astype(np.int32)
                grp.create_dataset(str(i), data=data)
        if with_optimizer:
            _write_optimizer(f, model, groups, state_mod)
    return buf.getvalue()


def _trainable(groups):
    return [w for g in groups for w in g.weights if w.trainable]


def _scheduled(model: Any) -> bool:
    """Whether the learning rate comes from a schedule: Keras then keeps no learning-rate
    variable, and ``optimizer/vars`` holds the iteration count followed by the slots."""
    return getattr(model.optimizer, "_schedule", None) is not None


def _write_optimizer(f, model, groups, state_mod):
    if not model.compiled or model.optimizer is None:
        return
    blocks = _slot_blocks(model.get_compile_config()["optimizer"])
    if blocks is None:
        warnings.warn(f"save: the state of optimizer {type(model.optimizer).__name__} with "
                      f"this configuration has no Keras layout pynn writes; the file carries "
                      f"its configuration only", stacklevel=4)
        return
    model._ensure_graph()
    state = model.optimizer.get_state()
    paths = {id(w): p for p, w in state_mod.weight_paths(model).items()}
    it = int(state["iterations"])   # Keras (torch backend) keeps an int32 counter
    arrays: list[np.ndarray] = [np.asarray(it, dtype=np.int32 if it < 2**31 else np.int64)]
    if not _scheduled(model):
        arrays.append(np.asarray(state["learning_rate"], dtype=np.float32))
    for block in blocks:
        for w in _trainable(groups):
            slots = state["slots"].get(paths[id(w)], [])
            for k in block:
                if k >= len(slots):
                    return   # layouts disagree: keep the file loadable, without state
                # in the weight's Keras shape: a depthwise kernel's slots are kept in the
                # shape the conv op sees, (*k, 1, C * m), the same elements in the same order
                arrays.append(np.asarray(slots[k]).reshape(w.shape))
    arrays += [np.asarray(state[key], dtype=np.float32) for key in _trailing(model)]
    grp = f.require_group("optimizer/vars")
    grp.attrs["name"] = str(model.optimizer.name)
    for i, arr in enumerate(arrays):
        grp.create_dataset(str(i), data=arr)


def _atomic_write(path: str, write: Callable[[Any], None]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pynn-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(filepath: Any, suffix: str, overwrite: bool) -> str:
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"filepath: expected a str or os.PathLike, got {type(filepath).__name__}")
    path = os.fspath(filepath)
    if not path.endswith(suffix):
        raise ValueError(f"filepath: expected a name ending in {suffix}, got {path!r}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"filepath: {path!r} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"filepath: folder {folder!r} does not exist")
    return path


def model_config(model: Model) -> dict[str, Any]:
    """The model's config as Keras writes it (without compile_config)."""
    from pynn import layers as layers_mod

    model._require_built("save")
    return to_keras_config(layers_mod.serialize(model))


def save_model(model: Model, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Writes a Keras 3 `.keras` archive (see the module's docstring)."""
    path = _check_target(filepath, ".keras", overwrite)
    config = model_config(model)
    cc = model.get_compile_config()
    weights = _write_h5(model, config, with_optimizer=cc is not None)
    top = dict(config)
    if cc is not None:
        top["compile_config"] = _compile_to_keras(cc)
    meta = {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    _atomic_write(path, _write_zip(meta, top, weights))


def _write_zip(meta: dict[str, Any], top: dict[str, Any], weights: bytes
               ) -> Callable[[Any], None]:
    """The writer of a `.keras` archive's bytes, members in Keras's order, stored."""
    def write(fh):
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(METADATA, json.dumps(meta))
            zf.writestr(CONFIG, json.dumps(top, allow_nan=False))
            zf.writestr(WEIGHTS, weights)

    return write


def save_weights(model: Model, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Writes the weights as a Keras 3 `.weights.h5` file (with the optimizer's variables
    when the model is compiled, as Keras does)."""
    path = _check_target(filepath, ".weights.h5", overwrite)
    data = _write_h5(model, model_config(model), with_optimizer=model.compiled)
    _atomic_write(path, lambda fh: fh.write(data))


# --- reading ----------------------------------------------------------------------------------
def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: str) -> bytes:
    """A member's bytes, refusing more than `limit` (the header's size may lie)."""
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit or len(data) != info.file_size:
        raise ValueError(f"{path}: member {info.filename!r} holds more or fewer bytes than "
                         f"its entry says ({info.file_size})")
    return data


def _open_archive(path: str) -> dict[str, bytes]:
    """The members of a `.keras` archive, after checking names, sizes and ratios."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"{path}: not a valid .keras (zip) archive ({exc})") from None
    out: dict[str, bytes] = {}
    try:
        with zf:
            infos = zf.infolist()
            if len(infos) > 64:
                raise ValueError(f"{path}: the archive lists {len(infos)} members; a .keras "
                                 f"file holds {list(MEMBERS)}")
            for info in infos:
                name = info.filename
                if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") \
                        or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
                    raise ValueError(f"{path}: unsafe member name {name!r} in the archive")
                if name.endswith("/") and name.rstrip("/") == "assets":
                    continue   # an empty assets folder (Keras may write one)
                if name not in MEMBERS:
                    other = describe(path, [i.filename for i in infos])
                    if other is not None:
                        raise ValueError(f"{path}: {other}, not a .keras archive; pynn reads "
                                         f"Keras 3 .keras, .weights.h5 and .safetensors files")
                    raise ValueError(f"{path}: unknown member {name!r}; a .keras file pynn "
                                     f"reads holds {list(MEMBERS)} (assets are not supported)")
                if name in out:
                    raise ValueError(f"{path}: member {name!r} appears twice")
                limit = MAX_WEIGHTS if name == WEIGHTS else MAX_JSON
                if info.file_size > limit:
                    raise ValueError(f"{path}: member {name!r} declares {info.file_size} "
                                     f"bytes (limit {limit})")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise ValueError(f"{path}: member {name!r} uses an unsupported "
                                     f"compression method {info.compress_type}")
                if info.file_size > MAX_RATIO * max(info.compress_size, 1) + 4096:
                    raise ValueError(f"{path}: member {name!r} expands {info.file_size} / "
                                     f"{info.compress_size} times: refused as a zip bomb")
                out[name] = _read_member(zf, info, limit, path)
    except ValueError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
            zipfile.LargeZipFile) as exc:
        raise ValueError(f"{path}: corrupt .keras archive ({type(exc).__name__}: {exc})") \
            from None
    missing = [m for m in MEMBERS if m not in out]
    if missing:
        raise ValueError(f"{path}: the archive has no {missing[0]!r}; a .keras file holds "
                         f"{list(MEMBERS)}")
    return out


def _json(data: bytes, what: str) -> Any:
    return _safetensors.parse_json(data, what)


class _H5Reader:
    """Reads datasets from an untrusted HDF5 image, checking each before it is read."""

    def __init__(self, data: bytes | str, path: str):
        h5py = _h5py()
        self.path = path
        self.size = len(data) if isinstance(data, bytes) else os.path.getsize(data)
        try:
            source = io.BytesIO(data) if isinstance(data, bytes) else data
            self.file = h5py.File(source, "r")
        except Exception as exc:   # h5py raises OSError, ValueError, KeyError... on bad bytes
            raise ValueError(f"{path}: the weights are not a valid HDF5 file "
                             f"({type(exc).__name__}: {exc})") from None

    def close(self):
        try:
            self.file.close()
        except Exception:   # noqa: S110 - closing a broken file must not mask the real error
            pass

    def _get(self, name):
        """The object at `name`, following hard links only: a soft or external link (which
        could point into another file on this machine) is refused."""
        h5py = _h5py()
        try:
            obj = self.file
            for part in name.split("/"):
                if not isinstance(obj, h5py.Group):
                    return None
                link = obj.get(part, getlink=True)
                if link is None:
                    return None
                if not isinstance(link, h5py.HardLink):
                    raise ValueError(f"{self.path}: {name!r} is a link ({type(link).__name__})"
                                     f"; pynn follows no links inside or out of the file")
                obj = obj.get(part)
            return obj
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"{self.path}: corrupt HDF5 data at {name!r} "
                             f"({type(exc).__name__}: {exc})") from None

    def group_keys(self, name: str) -> list[str] | None:
        h5py = _h5py()
        grp = self._get(name)
        if grp is None:
            return None
        if not isinstance(grp, h5py.Group):
            raise ValueError(f"{self.path}: {name!r} is not an HDF5 group")
        try:
            keys = list(grp.keys())
        except Exception as exc:
            raise ValueError(f"{self.path}: corrupt HDF5 group {name!r} "
                             f"({type(exc).__name__}: {exc})") from None
        bad = [k for k in keys if not isinstance(k, str)]
        if bad:   # (h5py hands over a name that is not UTF-8 as bytes)
            raise ValueError(f"{self.path}: HDF5 group {name!r} holds a member whose name is "
                             f"not text: {bad[0]!r}")
        return keys

    def dataset(self, name: str, shape: tuple[int, ...], kinds: str = "f") -> np.ndarray:
        """The dataset `name`, which must have `shape` and a numeric dtype of one of `kinds`
        (checked on its header before any data is read)."""
        h5py = _h5py()
        ds = self._get(name)
        if ds is None:
            raise ValueError(f"{self.path}: dataset {name!r} (shape {shape}) is missing")
        if not isinstance(ds, h5py.Dataset):
            raise ValueError(f"{self.path}: {name!r} is not an HDF5 dataset")
        try:
            dshape, dtype = tuple(ds.shape or ()), ds.dtype
            # data kept in other files (external raw storage, virtual datasets) is refused
            foreign = ds.external is not None or ds.is_virtual
        except Exception as exc:
            raise ValueError(f"{self.path}: corrupt HDF5 dataset {name!r} "
                             f"({type(exc).__name__}: {exc})") from None
        if foreign:
            raise ValueError(f"{self.path}: dataset {name!r} keeps its data outside the file")
        if dshape != tuple(shape):
            raise ValueError(f"{self.path}: dataset {name!r} has shape {dshape}, the model "
                             f"config gives {tuple(shape)}")
        if dtype.fields is not None or dtype.kind not in kinds or dtype.itemsize > 8 or (
                kinds == "f" and dtype.itemsize != 4):   # the config's dtype: float32
            raise ValueError(f"{self.path}: dataset {name!r} has dtype {dtype}, expected "
                             f"{'float32' if kinds == 'f' else 'an integer'}")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > 8 * self.size + 4096:
            raise ValueError(f"{self.path}: dataset {name!r} is larger than the file")
        try:
            arr = np.asarray(ds[()])
        except Exception as exc:
            raise ValueError(f"{self.path}: cannot read dataset {name!r} "
                             f"({type(exc).__name__}: {exc})") from None
        if arr.shape != tuple(shape):
            raise ValueError(f"{self.path}: dataset {name!r} read with shape {arr.shape}")
        return arr


def _read_weights(reader: _H5Reader, groups: list[_Group]) -> list[tuple[Any, np.ndarray]]:
    pairs = []
    for g in groups:
        keys = reader.group_keys(g.path)
        if keys is None:
            if g.weights:
                raise ValueError(f"{reader.path}: the weights of layer {g.name!r} ({g.path}) "
                                 f"are missing")
            continue
        want = {str(i) for i in range(len(g.weights))}
        if set(keys) != want:
            raise ValueError(f"{reader.path}: {g.path} holds {sorted(keys)[:8]}, layer "
                             f"{g.name!r} has {len(g.weights)} weights")
        for i, w in enumerate(g.weights):
            arr = reader.dataset(f"{g.path}/{i}", w.shape,
                                 "iu" if w.name in g.integers else "f")
            arr = arr.astype(np.float32)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{reader.path}: weight {w.path!r} contains NaN or Inf")
            pairs.append((w, arr))
    return pairs


def _read_optimizer(reader, model, groups, path):
    """An Optimizer.set_state dict from ``optimizer/vars``, or None (with a warning) when the
    file has none or its layout is not one pynn maps."""
    from pynn.models import state as state_mod

    keys = reader.group_keys("optimizer/vars")
    if not keys:
        return None
    blocks = _slot_blocks(model.get_compile_config()["optimizer"])
    model._ensure_graph()
    fresh = model.optimizer.get_state()
    trainable = _trainable(groups)
    first = 1 if _scheduled(model) else 2   # the slots follow the count (and the rate)
    count = first + sum(len(b) for b in (blocks or ())) * len(trainable) + len(_trailing(model))
    if blocks is None or len(keys) != count or set(keys) != {str(i) for i in range(count)}:
        warnings.warn(f"{path}: the optimizer's saved variables ({len(keys)}) do not follow a "
                      f"layout pynn maps for {type(model.optimizer).__name__}; training "
                      f"resumes with a fresh optimizer state", stacklevel=4)
        return None
    paths = {id(w): p for p, w in state_mod.weight_paths(model).items()}
    iterations = reader.dataset("optimizer/vars/0", (), "iu")
    lr = reader.dataset("optimizer/vars/1", (), "f") if first == 2 \
        else np.float32(model.optimizer._schedule(int(iterations)))   # the rate at that step
    slots = {k: list(v) for k, v in fresh["slots"].items()}
    i = first
    for block in blocks:
        for w in trainable:
            for k in block:
                arr = reader.dataset(f"optimizer/vars/{i}", w.shape).astype(np.float32)
                have = slots.get(paths[id(w)])
                if have is None or k >= len(have):
                    warnings.warn(f"{path}: optimizer slots do not match pynn's for weight "
                                  f"{w.path!r}; training resumes with a fresh optimizer "
                                  f"state", stacklevel=4)
                    return None
                have[k] = arr.reshape(np.shape(have[k]))   # the engine's shape (see above)
                i += 1
    scalars = {key: float(reader.dataset(f"optimizer/vars/{i + k}", (), "f"))
               for k, key in enumerate(_trailing(model))}
    it = int(iterations)
    if not 0 <= it < 2**62 or not np.isfinite(lr) or float(lr) < 0:
        raise ValueError(f"{path}: optimizer iterations {it} / learning rate {float(lr)} out "
                         f"of range")
    if not all(np.isfinite(v) for v in scalars.values()):
        raise ValueError(f"{path}: optimizer variables {sorted(scalars)} are not finite")
    return {"iterations": it, "learning_rate": float(lr), "u_product": 1.0, "slots": slots,
            **scalars}


def _build(cfg: dict[str, Any], budget: int, path: str,
           custom_objects: Mapping[str, Any] | None) -> Model:
    from pynn import layers as layers_mod
    from pynn.layers.layer import weight_budget
    from pynn.models import state as state_mod
    from pynn.models.model import Model as _Model

    try:
        with weight_budget(budget, path), state_mod.restoring():
            model = layers_mod.deserialize(cfg, custom_objects)
    except MemoryError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise ValueError(f"{path}: invalid model config ({type(exc).__name__}: {exc})") \
            from None
    if not isinstance(model, _Model):
        raise ValueError(f"{path}: the config describes a {type(model).__name__}, not a model")
    if not model.built:
        raise ValueError(f"{path}: the model config has no input shape")
    return model


def load_model(filepath: str | os.PathLike[str], compile: bool = True,
               custom_objects: Mapping[str, Any] | None = None) -> Model:
    """Reads a Keras 3 `.keras` archive: architecture, weights and, with `compile`, the
    compile configuration and (for the optimizers in `OPTIMIZERS`) the optimizer state."""
    path = os.fspath(filepath)
    members = _open_archive(path)
    meta = _json(members[METADATA], f"{path}: {METADATA}")
    if not isinstance(meta, dict) or not isinstance(meta.get("keras_version"), str):
        raise ValueError(f"{path}: {METADATA} has no keras_version")
    if not meta["keras_version"].startswith("3."):
        raise ValueError(f"{path}: written by Keras {meta['keras_version']}; pynn reads the "
                         f"Keras 3 format")
    top = _json(members[CONFIG], f"{path}: {CONFIG}")
    if not isinstance(top, dict) or top.get("class_name") not in _MODELS:
        raise ValueError(f"{path}: {CONFIG} does not describe a Sequential or functional "
                         f"model")
    try:
        cfg = from_keras_config(top, custom_objects)
        compile_cfg = _compile_from_keras(top.get("compile_config")) if compile else None
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: invalid model config ({type(exc).__name__}: {exc})") \
            from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    model = _build(cfg, len(members[WEIGHTS]) // 4, path, custom_objects)
    try:
        check_op_shapes(model, cfg)
        check_masks(model, cfg)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    _load_h5(model, members[WEIGHTS], path, compile_cfg, custom_objects, cfg)
    return model


def _load_h5(model, data, path, compile_cfg=None, custom_objects=None, config=None,
             optimizer=False):
    """Reads the weights (and, after compiling with `compile_cfg` or when `optimizer` is set
    on a compiled model, the optimizer's state) from an HDF5 image; everything is read and
    checked before the model is changed."""
    reader = _H5Reader(data, path)
    try:
        try:
            groups = layout(model, config or model_config(model))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: cannot lay out the model ({exc})") from None
        pairs = _read_weights(reader, groups)
        if compile_cfg is not None:
            try:
                model.compile_from_config(compile_cfg, custom_objects)
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                raise ValueError(f"{path}: invalid compile config ({type(exc).__name__}: "
                                 f"{exc})") from None
        opt_state = None
        if (compile_cfg is not None or optimizer) and model.compiled:
            opt_state = _read_optimizer(reader, model, groups, path)
        for w, arr in pairs:   # the engine uses these arrays in place
            np.copyto(w.value, arr)
        if opt_state is not None:
            model.optimizer.set_state(opt_state)
    finally:
        reader.close()


def load_weights(model: Model, filepath: str | os.PathLike[str]) -> None:
    """Reads a Keras 3 `.weights.h5` file (or the weights of a `.keras` archive) into a built
    model of the same architecture, and the optimizer's state when the model is compiled and
    the file holds one pynn maps; everything is checked before anything is written."""
    path = os.fspath(filepath)
    model._require_built("load_weights")
    with open(path, "rb") as fh:
        head = fh.read(8)
    data = _open_archive(path)[WEIGHTS] if head.startswith(_ZIP_MAGIC) else _read_bounded(path)
    _load_h5(model, data, path, optimizer=True)


def _read_bounded(path: str) -> bytes:
    size = os.path.getsize(path)
    if size > MAX_WEIGHTS:
        raise ValueError(f"{path}: {size} bytes exceeds the {MAX_WEIGHTS}-byte limit")
    with open(path, "rb") as fh:
        return fh.read()


# --- JSON -------------------------------------------------------------------------------------
def to_json(model: Model, **kwargs: Any) -> str:
    """The model's architecture as Keras's JSON (``keras.models.model_from_json`` reads it)."""
    return json.dumps(model_config(model), allow_nan=False, **kwargs)


def model_from_json(json_string: str, custom_objects: Mapping[str, Any] | None = None) -> Model:
    """A model (fresh weights) from `to_json`'s output, pynn's or Keras's."""
    from pynn import layers as layers_mod
    from pynn.models.model import Model as _Model

    if not isinstance(json_string, (str, bytes)):
        raise TypeError(f"json_string: expected a str, got {type(json_string).__name__}")
    if len(json_string) > MAX_JSON:
        raise ValueError(f"json_string: {len(json_string)} characters exceeds {MAX_JSON}")
    top = _json(json_string if isinstance(json_string, bytes) else json_string.encode(),
                "json_string")
    cfg = from_keras_config(top, custom_objects)
    model = layers_mod.deserialize(cfg, custom_objects)
    if not isinstance(model, _Model):
        raise ValueError(f"json_string: describes a {type(model).__name__}, not a model")
    try:
        check_op_shapes(model, cfg)
        check_masks(model, cfg)
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"json_string: invalid model config ({type(exc).__name__}: {exc})") \
            from None
    return model


# --- telling formats apart --------------------------------------------------------------------
def sniff(path: str) -> str:
    """"keras", "h5", "safetensors" or "unknown", from a file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head.startswith(_ZIP_MAGIC):
        return "keras"
    if head.startswith(_H5_MAGIC):
        return "h5"
    if len(head) == 9 and head[8:9] == b"{" and \
            int.from_bytes(head[:8], "little") <= os.path.getsize(path):
        return "safetensors"
    return "unknown"


def describe(path: str, names: list[str] | None = None) -> str | None:
    """What a file pynn does not read is, when it is a common format (for the error message):
    `names` are a zip archive's members."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "a TensorFlow SavedModel folder"
        return None
    if names is not None:
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a PyTorch file (torch.save)"
        if names and all(n.endswith(".npy") for n in names):
            return "a NumPy .npz archive"
        return None
    with open(path, "rb") as fh:
        head = fh.read(64)
    if path.endswith(".onnx"):
        return "an ONNX model (pynn writes ONNX with model.export but does not read it)"
    if path.endswith(".pb"):
        return "a TensorFlow protobuf graph"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (pynn never unpickles: that can run code)"
    if head.lstrip()[:1] in (b"{", b"["):
        return ("a JSON text (a model's architecture alone reads with "
                "pynn.models.model_from_json)")
    return None
