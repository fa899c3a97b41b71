"""Model files: one safetensors file holding the weights as raw tensors and, in its metadata,
the architecture, the compile configuration and the optimizer's state.

    metadata: format="pynn.model", format_version="1", model_config=<JSON>,
              compile_config=<JSON or "null">, optimizer_state=<JSON>
    tensors:  "weights.<i>" (the model's weights in get_weights order),
              "optimizer.<i>.<slot>" (optimizer slots of weight i)

Loading never executes code: configs are plain JSON mapped onto known layer classes, and an
unknown layer type, format or version is refused with a clear error.
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from pynn import layers as layers_mod
from pynn.models import _safetensors

FORMAT = "pynn.model"
WEIGHTS_FORMAT = "pynn.weights"
VERSION = 1
_DIGITS = re.compile(r"[0-9]{1,9}")
# A model file's header holds one short entry per tensor and the JSON configs: a few KiB for
# usual models, far below this. The bound keeps the cost of parsing an untrusted header (Python
# objects take several times the JSON's size) small.
MAX_HEADER = 16 * 2**20


def _check_path(filepath, overwrite):
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"filepath: expected a str or os.PathLike, got {type(filepath).__name__}")
    path = os.fspath(filepath)
    if not path.endswith(".safetensors") and not path.endswith(".pynn"):
        raise ValueError(f"filepath: pynn writes .safetensors (or .pynn) files, got {path!r}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"filepath: {path!r} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"filepath: folder {folder!r} does not exist")
    return path


def _weights(model):
    model._require_built("save")
    weights = model.get_weights()
    for i, w in enumerate(weights):
        if not np.all(np.isfinite(w)):
            raise ValueError(f"save: weight {i} contains NaN or Inf (did training diverge?); "
                             f"refusing to write a broken model")
    return weights


def _model_config(model):
    """The model's config, with the seed each Dropout layer actually drew at build time (when
    the layer exposes it) so that a loaded model's dropout masks continue the same sequence and
    training resumes exactly."""
    from pynn import layers as layers_mod

    config = layers_mod.serialize(model)

    def fix(cfg, model):
        entries = [e for e in cfg["layers"] if e.get("class_name") != "InputLayer"]
        layers = [lay for lay in model.layers if type(lay).__name__ != "InputLayer"]
        for entry, layer in zip(entries, layers):
            conf = entry.get("config", {})
            if entry.get("class_name") == "Dropout" and conf.get("seed") is None:
                seed = getattr(layer, "_built_seed", None)
                if seed is not None:
                    conf["seed"] = int(seed)
            elif isinstance(conf, dict) and isinstance(conf.get("layers"), list):
                fix(conf, layer)

    fix(config["config"], model)
    return config


def save_model(model, filepath, overwrite=True):
    path = _check_path(filepath, overwrite)
    weights = _weights(model)
    tensors = {f"weights.{i}": w for i, w in enumerate(weights)}
    opt_state = None
    net = model._graph
    if net is None and model.compiled and getattr(model, "_inputs", None) is not None:
        net = model._ensure_graph()  # compiled, not trained yet: its optimizer state is fresh
    if (net is not None and model.compiled and model.optimizer is not None
            and model.optimizer._net is net):
        opt_state = {"iterations": int(net.iterations), "u_product": float(net.u_product),
                     "learning_rate": float(net.learning_rate), "slots": {}}
        for pid in range(net.num_params()):
            count = net.num_slots(pid)
            opt_state["slots"][str(pid)] = count
            for k in range(count):
                slot = net.get_slot(pid, k)
                if not np.all(np.isfinite(slot)):
                    raise ValueError(f"save: optimizer state of weight {pid} contains NaN or "
                                     f"Inf (did training diverge?); refusing to write it")
                tensors[f"optimizer.{pid}.{k}"] = slot
    metadata = {
        "format": FORMAT,
        "format_version": str(VERSION),
        "model_config": json.dumps(_model_config(model), allow_nan=False),
        "compile_config": json.dumps(model.get_compile_config()),
        "optimizer_state": json.dumps(opt_state),
    }
    _safetensors.write(path, tensors, metadata)


def _read(filepath, expected_format):
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"filepath: expected a str or os.PathLike, got {type(filepath).__name__}")
    tensors, meta = _safetensors.read(filepath, max_header=MAX_HEADER)
    path = os.fspath(filepath)
    fmt = meta.get("format")
    if fmt not in (FORMAT, WEIGHTS_FORMAT):
        raise ValueError(f"{path}: not a pynn file (format {fmt!r})")
    if expected_format == FORMAT and fmt != FORMAT:
        raise ValueError(f"{path}: holds weights only; build the model and use load_weights")
    version = meta.get("format_version", "")
    if not _DIGITS.fullmatch(version):
        raise ValueError(f"{path}: invalid format_version {version!r}")
    if int(version) > VERSION:
        raise ValueError(f"{path}: written by a newer pynn (format version "
                         f"{version}; this pynn reads up to {VERSION})")
    if int(version) < 1:
        raise ValueError(f"{path}: unknown format version {version!r}")
    return tensors, meta


def _json(meta, key, path):
    # A missing key reads as null; anything else must be plain JSON (the reader refuses deep
    # nesting, duplicate keys and NaN/Infinity with a ValueError).
    return _safetensors.parse_json(meta.get(key, "null"), f"{path}: metadata {key!r}")


# Loading refuses to build a network whose weights the file cannot hold: the shapes implied
# by the architecture are computed from the JSON alone and compared with the tensors actually
# present before the engine allocates anything, so a tampered config such as
# Dense(units=10**12) costs nothing (the tensors' sizes are bounded by the file's size).
_PARAMS_OF = {
    "Dense": lambda c, shp: [(shp[-1], c["units"])] + ([(c["units"],)]
                                                       if c.get("use_bias", True) else []),
    "BatchNormalization": lambda c, shp: [(shp[-1],)] * (int(bool(c.get("scale", True)))
                                                         + int(bool(c.get("center", True))) + 2),
    "PReLU": lambda c, shp: [tuple(shp)],
}
_SAME_SHAPE = ("Activation", "Dropout", "ELU", "LeakyReLU", "ReLU", "Softmax", "Identity",
               "PReLU", "BatchNormalization")


def _expected_shapes(cfg, path):
    """The weight shapes, in get_weights order, that a plain Sequential config describes, or
    None when it holds layers this check does not follow (nested models...: the weight budget
    of loading still bounds what building may allocate); raises ValueError for a config that
    cannot be a pynn model (before anything is allocated)."""
    layers = cfg.get("layers") if isinstance(cfg, dict) else None
    if not isinstance(layers, list):
        raise ValueError(f"{path}: the model config has no 'layers' list")
    shapes = []
    shape = None
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict) or not isinstance(entry.get("config", {}), dict):
            raise ValueError(f"{path}: layer {i} of the model config is malformed")
        cls, conf = entry.get("class_name"), entry.get("config", {})
        if cls in ("Sequential", "Functional"):
            return None
        if not isinstance(cls, str) or cls not in layers_mod._CLASSES:
            raise ValueError(f"{path}: layer config: unknown layer type {cls!r}; pynn knows "
                             f"{sorted(layers_mod._CLASSES)}")
        given = conf.get("shape") if cls == "InputLayer" else conf.get("input_shape")
        if shape is None and given is not None:
            if (not isinstance(given, list) or not given or not all(
                    type(s) is int and s >= 1 for s in given)):
                raise ValueError(f"{path}: layer {i} ({cls}) has an invalid input shape "
                                 f"{given!r}")
            shape = tuple(given)
        if cls == "InputLayer":
            continue
        if shape is None:
            raise ValueError(f"{path}: the model config has no input shape")
        if cls == "Dense":
            units = conf.get("units")
            if type(units) is not int or units < 1:
                raise ValueError(f"{path}: layer {i} (Dense) has invalid units {units!r}")
        rule = _PARAMS_OF.get(cls)
        if rule is not None:
            shapes += rule(conf, shape)
        if cls == "Dense":
            shape = shape[:-1] + (conf["units"],)
        elif cls == "Flatten":
            shape = (math.prod(shape),)
        elif cls not in _SAME_SHAPE:
            return None
    if shape is None:
        raise ValueError(f"{path}: the model config has no input shape")
    return shapes


_CONFIG_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
                  RecursionError)


def _build_from_config(class_name, cfg, tensors, path, custom_objects=None):
    from pynn.layers.layer import weight_budget
    from pynn.models.sequential import Sequential

    if class_name == "Sequential":
        expected = _expected_shapes(cfg, path) or []
        for i, shape in enumerate(expected):
            have = tensors.get(f"weights.{i}")
            if have is None or tuple(have.shape) != tuple(shape):
                raise ValueError(f"{path}: weight {i} should have shape {tuple(shape)} by the "
                                 f"model config, the file holds "
                                 f"{None if have is None else tuple(have.shape)}")
    # Building allocates the weights the config describes: never more than the file holds
    # (a tampered config cannot make loading allocate without bound).
    budget = sum(int(t.size) for k, t in tensors.items() if k.startswith("weights."))
    try:
        with weight_budget(budget, path):
            if class_name == "Sequential":
                model = Sequential.from_config(cfg, custom_objects)
            else:
                from pynn.models.functional_config import model_from_config

                model = model_from_config(cfg, custom_objects)
    except MemoryError:
        raise
    except _CONFIG_ERRORS as exc:
        raise ValueError(f"{path}: invalid model config ({type(exc).__name__}: {exc})") from None
    if not model.built:
        raise ValueError(f"{path}: the model config has no input shape")
    return model


def _assign_weights(model, tensors, path):
    count = len(model.weights)
    names = {f"weights.{i}" for i in range(count)}
    have = {k for k in tensors if k.startswith("weights.")}
    if have != names:
        raise ValueError(f"{path}: expected weight tensors weights.0..weights.{count - 1}, "
                         f"found {sorted(have)[:5]}{'...' if len(have) > 5 else ''}")
    weights = [tensors[f"weights.{i}"] for i in range(count)]
    for i, w in enumerate(weights):
        if w.dtype != np.float32:
            raise ValueError(f"{path}: weight {i} has dtype {w.dtype}, expected float32")
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{path}: weight {i} contains NaN or Inf")
    model.set_weights(weights)


def load_model(filepath, compile=True, custom_objects=None):
    """Loads a model saved with `Sequential.save` (architecture, weights, and, with
    `compile`, its compile configuration and optimizer state so training resumes).

    Raises:
        TypeError: `filepath` is not a str or path-like.
        FileNotFoundError: there is no such file.
        ValueError: anything wrong with the file's content (not safetensors, truncated,
            corrupt, not a pynn model, a newer format version, an unknown layer type, a
            config that does not match the tensors, NaN weights...).
    """
    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else filepath
    tensors, meta = _read(filepath, FORMAT)
    cfg = _json(meta, "model_config", path)
    if not isinstance(cfg, dict) or cfg.get("class_name") not in ("Sequential", "Functional"):
        raise ValueError(f"{path}: unknown model type "
                         f"{cfg.get('class_name') if isinstance(cfg, dict) else cfg!r}")
    model = _build_from_config(cfg["class_name"], cfg.get("config"), tensors, path,
                               custom_objects)
    _assign_weights(model, tensors, path)
    compile_cfg = _json(meta, "compile_config", path)
    if compile and compile_cfg is not None:
        if not isinstance(compile_cfg, dict):
            raise ValueError(f"{path}: invalid compile config {compile_cfg!r}")
        try:
            model.compile_from_config(compile_cfg, custom_objects)
        except _CONFIG_ERRORS as exc:
            raise ValueError(f"{path}: invalid compile config ({type(exc).__name__}: "
                             f"{exc})") from None
        state = _json(meta, "optimizer_state", path)
        if state is not None:
            _restore_optimizer(model, state, tensors, path)
    return model


def _restore_optimizer(model, state, tensors, path):
    net = model._ensure_graph()
    bad = ValueError(f"{path}: malformed optimizer state")
    if not isinstance(state, dict):
        raise bad
    slots, iterations = state.get("slots"), state.get("iterations")
    u_product, lr = state.get("u_product"), state.get("learning_rate")
    if (not isinstance(slots, dict) or type(iterations) is not int
            or not 0 <= iterations < 2**62
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       for v in (u_product, lr))
            or not np.isfinite(u_product) or not (np.isfinite(lr) and lr >= 0)):
        raise bad
    for pid in range(net.num_params()):
        expected = net.num_slots(pid)
        count = slots.get(str(pid), -1)
        if type(count) is not int or count != expected:
            raise ValueError(f"{path}: optimizer state does not match the model")
        shape = tuple(net.param_info(pid)[1])
        for k in range(expected):
            arr = tensors.get(f"optimizer.{pid}.{k}")
            if (arr is None or arr.dtype != np.float32 or tuple(arr.shape) != shape
                    or not np.all(np.isfinite(arr))):
                raise ValueError(f"{path}: optimizer slot {pid}.{k} is missing or invalid")
            net.set_slot(pid, k, np.ascontiguousarray(arr))
    net.iterations = iterations
    net.u_product = float(u_product)
    if lr > 0:
        model.optimizer.learning_rate = float(lr)
    else:  # a rate that underflowed float32 when it was set: keep it as the engine had it
        net.learning_rate = 0.0


def save_weights(model, filepath, overwrite=True):
    """Writes only the weights (plus a little metadata) to a safetensors file."""
    path = _check_path(filepath, overwrite)
    weights = _weights(model)
    _safetensors.write(path, {f"weights.{i}": w for i, w in enumerate(weights)},
                       {"format": WEIGHTS_FORMAT, "format_version": str(VERSION)})


def load_weights(model, filepath):
    """Reads weights saved by `save_weights` or `save` into a built model of the same shape."""
    model._require_built("load_weights")
    tensors, _ = _read(filepath, WEIGHTS_FORMAT)
    _assign_weights(model, tensors, os.fspath(filepath))
