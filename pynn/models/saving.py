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
import os

import numpy as np

from pynn.models import _safetensors

FORMAT = "pynn.model"
WEIGHTS_FORMAT = "pynn.weights"
VERSION = 1


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


def save_model(model, filepath, overwrite=True):
    path = _check_path(filepath, overwrite)
    weights = _weights(model)
    tensors = {f"weights.{i}": w for i, w in enumerate(weights)}
    opt_state = None
    net = model._net
    if model.compiled and model.optimizer is not None and model.optimizer._net is net:
        opt_state = {"iterations": int(net.iterations), "u_product": float(net.u_product),
                     "learning_rate": float(net.learning_rate), "slots": {}}
        for pid in range(net.num_params()):
            count = net.num_slots(pid)
            opt_state["slots"][str(pid)] = count
            for k in range(count):
                tensors[f"optimizer.{pid}.{k}"] = net.get_slot(pid, k)
    metadata = {
        "format": FORMAT,
        "format_version": str(VERSION),
        "model_config": json.dumps({"class_name": "Sequential", "config": model.get_config()}),
        "compile_config": json.dumps(model.get_compile_config()),
        "optimizer_state": json.dumps(opt_state),
    }
    _safetensors.write(path, tensors, metadata)


def _read(filepath, expected_format):
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"filepath: expected a str or os.PathLike, got {type(filepath).__name__}")
    tensors, meta = _safetensors.read(filepath)
    fmt = meta.get("format")
    if fmt not in (FORMAT, WEIGHTS_FORMAT):
        raise ValueError(f"{os.fspath(filepath)}: not a pynn file (format {fmt!r})")
    if expected_format == FORMAT and fmt != FORMAT:
        raise ValueError(f"{os.fspath(filepath)}: holds weights only; build the model and use "
                         f"load_weights")
    version = meta.get("format_version", "")
    if not version.isdigit():
        raise ValueError(f"{os.fspath(filepath)}: invalid format_version {version!r}")
    if int(version) > VERSION:
        raise ValueError(f"{os.fspath(filepath)}: written by a newer pynn (format version "
                         f"{version}; this pynn reads up to {VERSION})")
    return tensors, meta


def _json(meta, key, path):
    try:
        return json.loads(meta.get(key, "null"))
    except ValueError:
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON") from None


def _assign_weights(model, tensors, path):
    count = sum(len(layer._param_ids) for layer in model.layers)
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


def load_model(filepath, compile=True):
    """Loads a model saved with `Sequential.save` (architecture, weights, and, with
    `compile`, its compile configuration and optimizer state so training resumes)."""
    from pynn.models.sequential import Sequential

    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else filepath
    tensors, meta = _read(filepath, FORMAT)
    cfg = _json(meta, "model_config", path)
    if not isinstance(cfg, dict) or cfg.get("class_name") != "Sequential":
        raise ValueError(f"{path}: unknown model type "
                         f"{cfg.get('class_name') if isinstance(cfg, dict) else cfg!r}")
    model = Sequential.from_config(cfg.get("config"))
    if not model.built:
        raise ValueError(f"{path}: the model config has no input shape")
    _assign_weights(model, tensors, path)
    compile_cfg = _json(meta, "compile_config", path)
    if compile and compile_cfg is not None:
        try:
            model.compile_from_config(compile_cfg)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: invalid compile config ({exc})") from None
        state = _json(meta, "optimizer_state", path)
        if state is not None:
            _restore_optimizer(model, state, tensors, path)
    return model


def _restore_optimizer(model, state, tensors, path):
    net = model._net
    try:
        slots = state["slots"]
        iterations = int(state["iterations"])
        u_product = float(state["u_product"])
        lr = float(state["learning_rate"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: malformed optimizer state") from None
    if iterations < 0 or not np.isfinite(u_product) or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"{path}: malformed optimizer state")
    for pid in range(net.num_params()):
        expected = net.num_slots(pid)
        if int(slots.get(str(pid), -1)) != expected:
            raise ValueError(f"{path}: optimizer state does not match the model")
        for k in range(expected):
            arr = tensors.get(f"optimizer.{pid}.{k}")
            if arr is None or arr.dtype != np.float32 or not np.all(np.isfinite(arr)):
                raise ValueError(f"{path}: optimizer slot {pid}.{k} is missing or invalid")
            net.set_slot(pid, k, np.ascontiguousarray(arr))
    net.iterations = iterations
    net.u_product = u_product
    model.optimizer.learning_rate = lr


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
