"""Model files: one safetensors file holding the weights as raw tensors and, in its metadata,
the architecture, the compile configuration and the optimizer's state. It is the model's state
(`pynn.models.state`, which pickling uses too) written out.

Format version 2 (written now):
    metadata: format="pynn.model", format_version="2", model_config=<JSON>,
              compile_config=<JSON or "null">,
              optimizer_state=<JSON: iterations, u_product, learning_rate,
                               slots={weight path: number of slots}, or "null">,
              layer_seeds=<JSON: {layer path: seed}>,
              weights=<JSON: the weight paths in the model's order>
    tensors:  "<weight path>" for every weight ("dense_1/kernel", "encoder/dense/bias"),
              "optimizer/<weight path>/<k>" for slot k of that weight's optimizer state
A weights-only file (format="pynn.weights") holds the weight tensors alone.

Format version 1 (still read): the weights as "weights.<i>" in get_weights order, the slots as
"optimizer.<i>.<k>" by engine parameter id, optimizer_state.slots keyed by that id, and the
Dropout seeds written into the model config.

Loading never executes code: configs are plain JSON mapped onto known layer classes, and an
unknown layer type, format or version is refused with a clear error. Building the model runs
no initializer (the file's weights replace them) and leaves pynn's random stream untouched.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pynn import layers as layers_mod
from pynn.models import _safetensors
from pynn.models import state as state_mod

if TYPE_CHECKING:
    from pynn.models.model import Model

FORMAT = "pynn.model"
WEIGHTS_FORMAT = "pynn.weights"
VERSION = 2
SLOT_PREFIX = "optimizer/"
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
        raise ValueError(f"filepath: pynn writes .keras, .safetensors (or .pynn) files "
                         f"(weights alone: also .weights.h5), got {path!r}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"filepath: {path!r} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"filepath: folder {folder!r} does not exist")
    return path


def _suffix(filepath, suffix):
    return isinstance(filepath, (str, os.PathLike)) and os.fspath(filepath).endswith(suffix)


def _other_format(filepath, weights_only):
    """Hands a Keras file to `keras_format` ("keras", "h5") or explains a file pynn does not
    read; None for a safetensors file (read below)."""
    if not isinstance(filepath, (str, os.PathLike)):
        return None
    from pynn.models import keras_format

    path = os.fspath(filepath)
    if os.path.isdir(path) and keras_format.describe(path):   # (another folder: OSError below)
        raise ValueError(f"{path}: {keras_format.describe(path)}; pynn reads Keras 3 .keras, "
                         f".weights.h5 and .safetensors files")
    if not os.path.isfile(path):
        return None   # the reader below says what is wrong
    kind = keras_format.sniff(path)
    if kind == "safetensors" or (kind == "unknown" and path.endswith((".safetensors", ".pynn"))):
        return None   # (a damaged safetensors file: its reader says what is wrong)
    if kind == "keras":
        return kind
    if kind == "h5":
        if weights_only:
            return kind
        raise ValueError(f"{path}: an HDF5 file; pynn reads models from .keras archives "
                         f"(Keras 3) and .safetensors files, and weights from .weights.h5 with "
                         f"model.load_weights (legacy Keras 2 .h5 models are not read)")
    other = keras_format.describe(path)
    raise ValueError(f"{path}: {other + ', ' if other else ''}not a model file pynn reads "
                     f"(neither a Keras 3 .keras zip archive, nor an HDF5 .weights.h5 file, "
                     f"nor a .safetensors file)")


def _slot_key(name, k):
    return f"{SLOT_PREFIX}{name}/{k}"


def save_model(model: Model, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Writes `model.get_state()` to a safetensors file (atomically: a temporary file in the
    same folder, renamed over `filepath` once complete); a path ending in .keras gets Keras
    3's archive instead (`pynn.models.keras_format`)."""
    if _suffix(filepath, ".keras"):
        from pynn.models import keras_format

        keras_format.save_model(model, filepath, overwrite=overwrite)
        return
    path = _check_path(filepath, overwrite)
    state = state_mod.get_state(model)
    tensors = dict(state["weights"])
    opt = state["optimizer"]
    opt_meta = None
    if opt is not None:
        opt_meta = {"iterations": opt["iterations"], "u_product": opt["u_product"],
                    "learning_rate": opt["learning_rate"], "slots": {}}
        for name, arrays in opt["slots"].items():
            opt_meta["slots"][name] = len(arrays)
            for k, arr in enumerate(arrays):
                key = _slot_key(name, k)
                if key in tensors:
                    raise ValueError(f"save: the weight named {key!r} has the name the file "
                                     f"gives to an optimizer slot; rename its layer")
                tensors[key] = arr
    metadata = {
        "format": FORMAT,
        "format_version": str(VERSION),
        "model_config": json.dumps(state["config"], allow_nan=False),
        "compile_config": json.dumps(state["compile_config"]),
        "optimizer_state": json.dumps(opt_meta),
        "layer_seeds": json.dumps(state["seeds"]),
        "weights": json.dumps(list(state["weights"])),
    }
    _safetensors.write(path, tensors, metadata)


def _read(filepath, expected_format):
    """(tensors, metadata, format version) of a pynn file."""
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
    return tensors, meta, int(version)


def _json(meta, key, path):
    # A missing key reads as null; anything else must be plain JSON (the reader refuses deep
    # nesting, duplicate keys and NaN/Infinity with a ValueError).
    return _safetensors.parse_json(meta.get(key, "null"), f"{path}: metadata {key!r}")


def _optimizer_meta(meta, tensors, path):
    """The optimizer_state metadata (None, or a dict whose 'slots' maps a key, a weight path
    in version 2 and an engine parameter id in version 1, to a slot count), checked."""
    opt = _json(meta, "optimizer_state", path)
    if opt is None:
        return None
    slots = opt.get("slots") if isinstance(opt, dict) else None
    if not isinstance(slots, dict):
        raise ValueError(f"{path}: malformed optimizer state (expected a dict with 'slots')")
    for key, count in slots.items():
        # a slot count beyond the tensors present cannot be right (and bounds the work)
        if type(count) is not int or not 0 <= count <= len(tensors):
            raise ValueError(f"{path}: optimizer state: slot count of {key!r} must be an "
                             f"integer in [0, {len(tensors)}], got {count!r}")
    if sum(slots.values()) > len(tensors):
        raise ValueError(f"{path}: optimizer state: {sum(slots.values())} slots listed, the "
                         f"file holds {len(tensors)} tensors")
    return opt


def _named_layout(tensors, meta, opt_meta, path):
    """Version 2: ({weight path: array} in the model's order, {weight path: [slot arrays or
    None]}). Every tensor must be a listed weight or a slot of the optimizer state."""
    order = _json(meta, "weights", path)
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order) \
            or len(set(order)) != len(order):
        raise ValueError(f"{path}: metadata 'weights' must list the weight names, each once")
    slot_keys, slots = set(), {}
    if opt_meta is not None:
        for name, count in opt_meta["slots"].items():
            keys = [_slot_key(name, k) for k in range(count)]
            slot_keys.update(keys)
            slots[name] = [tensors.get(k) for k in keys]
    missing = [n for n in order if n not in tensors]
    if missing:
        raise ValueError(f"{path}: weight {missing[0]!r} is missing from the file")
    listed = set(order)
    extra = [k for k in tensors if k not in listed and k not in slot_keys]
    if extra:
        raise ValueError(f"{path}: tensor {extra[0]!r} is neither a listed weight nor an "
                         f"optimizer slot")
    return {n: tensors[n] for n in order}, slots


def _positional_weights(model, tensors, path):
    """Version 1: the "weights.<i>" tensors by the model's weight paths."""
    own = list(state_mod.weight_paths(model))
    want = {f"weights.{i}" for i in range(len(own))}
    have = {k for k in tensors if k.startswith("weights.")}
    if have != want:
        missing = sorted(want - have, key=lambda k: int(k.split(".")[1]))
        if missing:
            i = int(missing[0].split(".")[1])
            raise ValueError(f"{path}: tensor {missing[0]!r} (weight {own[i]!r} of the model) "
                             f"is missing")
        raise ValueError(f"{path}: tensor(s) {sorted(have - want)[:5]} do not match any of the "
                         f"model's {len(own)} weights (weights.0..weights.{len(own) - 1})")
    return {name: tensors[f"weights.{i}"] for i, name in enumerate(own)}


def _positional_slots(model, opt_meta, tensors, path):
    """Version 1: the "optimizer.<pid>.<k>" tensors by weight path (parameter ids follow the
    compiled graph's parameter order)."""
    names = state_mod.param_paths(model, model._build_spec())
    slots = {}
    for key, count in opt_meta["slots"].items():
        if not _DIGITS.fullmatch(key) or int(key) >= len(names):
            raise ValueError(f"{path}: optimizer state: no parameter {key!r} (the model has "
                             f"{len(names)})")
        slots[names[int(key)]] = [tensors.get(f"optimizer.{key}.{k}") for k in range(count)]
    return slots


def _optimizer_state(opt_meta, slots, path):
    """An Optimizer.set_state dict from the metadata scalars and the slot arrays."""
    for name, arrays in slots.items():
        for k, arr in enumerate(arrays):
            if arr is None:
                raise ValueError(f"{path}: optimizer slot {k} of weight {name!r} is missing "
                                 f"from the file")
    state = {k: v for k, v in opt_meta.items() if k != "slots"}
    state["slots"] = slots
    return state


# Loading refuses to build a network whose weights the file cannot hold: the shapes implied
# by the architecture are computed from the JSON alone and compared with the tensors actually
# present before the engine allocates anything, so a tampered config such as
# Dense(units=10**12) costs nothing (the tensors' sizes are bounded by the file's size).
_PARAMS_OF = {
    "Dense": lambda c, shp: [("kernel", (shp[-1], c["units"]))]
    + ([("bias", (c["units"],))] if c.get("use_bias", True) else []),
    "BatchNormalization": lambda c, shp: [(n, (shp[-1],)) for n, on in (
        ("gamma", c.get("scale", True)), ("beta", c.get("center", True)),
        ("moving_mean", True), ("moving_variance", True)) if on],
    "PReLU": lambda c, shp: [("alpha", tuple(shp))],
}
_SAME_SHAPE = ("Activation", "Dropout", "ELU", "LeakyReLU", "ReLU", "Softmax", "Identity",
               "PReLU", "BatchNormalization")


def _expected_shapes(cfg, path):
    """[(layer name, weight name, shape)] in get_weights order that a plain Sequential config
    describes, or None when it holds layers this check does not follow (nested models...: the
    weight budget of loading still bounds what building may allocate); raises ValueError for a
    config that cannot be a pynn model (before anything is allocated)."""
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
        if cls == "InputLayer" or getattr(layers_mod._CLASSES[cls], "_host_step", False):
            continue   # (vocabulary layers run before the graph and have no weights)
        if shape is None:
            raise ValueError(f"{path}: the model config has no input shape")
        if cls == "Dense":
            units = conf.get("units")
            if type(units) is not int or units < 1:
                raise ValueError(f"{path}: layer {i} (Dense) has invalid units {units!r}")
        rule = _PARAMS_OF.get(cls)
        if rule is not None:
            shapes += [(conf.get("name"), wname, wshape) for wname, wshape in rule(conf, shape)]
        if cls == "Dense":
            shape = shape[:-1] + (conf["units"],)
        elif cls == "Flatten":
            shape = (math.prod(shape),)
        elif cls not in _SAME_SHAPE:
            return None
    if shape is None:
        raise ValueError(f"{path}: the model config has no input shape")
    return shapes


def _check_expected(expected, tensors, version, path):
    if version == 1:
        for i, (lname, wname, shape) in enumerate(expected):
            have = tensors.get(f"weights.{i}")
            if have is None:
                raise ValueError(f"{path}: tensor 'weights.{i}' (weight '{lname}/{wname}' of "
                                 f"the model) is missing")
            if tuple(have.shape) != tuple(shape):
                raise ValueError(f"{path}: weight {i} should have shape {tuple(shape)} by the "
                                 f"model config, the file holds "
                                 f"{None if have is None else tuple(have.shape)}")
        return
    seen = {}
    for lname, wname, shape in expected:
        if not isinstance(lname, str):
            return  # names given by the model at build time: checked after building
        key = f"{lname}/{wname}"
        if key in seen:
            return  # two layers of one name: paths get suffixes; checked after building
        seen[key] = shape
    for key, shape in seen.items():
        have = tensors.get(key)
        if have is None:
            raise ValueError(f"{path}: weight {key!r} of shape {tuple(shape)} (by the model "
                             f"config) is missing from the file")
        if tuple(have.shape) != tuple(shape):
            raise ValueError(f"{path}: weight {key!r} should have shape {tuple(shape)} by the "
                             f"model config, the file holds {tuple(have.shape)}")


_CONFIG_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
                  RecursionError)


def _build_from_config(class_name, cfg, weights, version, path, custom_objects=None):
    """The model a config describes, built without running initializers (its weights are
    zeros until the file's are assigned) and without drawing from pynn's random stream."""
    from pynn.layers.layer import weight_budget
    from pynn.models.sequential import Sequential

    if class_name == "Sequential":
        expected = _expected_shapes(cfg, path)
        if expected is not None:
            _check_expected(expected, weights, version, path)
    # Building allocates the weights the config describes: never more than the file holds
    # (a tampered config cannot make loading allocate without bound).
    budget = sum(int(t.size) for t in weights.values())
    try:
        with weight_budget(budget, path), state_mod.restoring():
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


def _weights_of_file(tensors, meta, version, path):
    """(weight tensors, optimizer metadata, slot arrays by weight path or None): the file's
    tensors split into weights and optimizer slots (version 1: still positional)."""
    opt_meta = _optimizer_meta(meta, tensors, path)
    if version == 1:
        return {k: v for k, v in tensors.items() if k.startswith("weights.")}, opt_meta, None
    weights, slots = _named_layout(tensors, meta, opt_meta, path)
    return weights, opt_meta, slots


def load_model(filepath: str | os.PathLike[str], compile: bool = True,
               custom_objects: Mapping[str, Any] | None = None) -> Model:
    """Loads a model saved with `Model.save` (architecture, weights, and, with `compile`, its
    compile configuration and optimizer state so training resumes exactly). Files of format
    version 1 (weights by position) load too.

    Raises:
        TypeError: `filepath` is not a str or path-like.
        FileNotFoundError: there is no such file.
        ValueError: anything wrong with the file's content (not safetensors, truncated,
            corrupt, not a pynn model, a newer format version, an unknown layer type, a
            config that does not match the tensors, a weight missing, extra or misshapen,
            NaN weights...).
    """
    if _other_format(filepath, weights_only=False) == "keras":
        from pynn.models import keras_format

        return keras_format.load_model(filepath, compile=compile, custom_objects=custom_objects)
    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else filepath
    tensors, meta, version = _read(filepath, FORMAT)
    cfg = _json(meta, "model_config", path)
    if not isinstance(cfg, dict) or cfg.get("class_name") not in ("Sequential", "Functional"):
        raise ValueError(f"{path}: unknown model type "
                         f"{cfg.get('class_name') if isinstance(cfg, dict) else cfg!r}")
    weights, opt_meta, slots = _weights_of_file(tensors, meta, version, path)
    model = _build_from_config(cfg["class_name"], cfg.get("config"), weights, version, path,
                               custom_objects)
    compile_cfg = _json(meta, "compile_config", path)
    try:
        state = {"weights": _positional_weights(model, weights, path) if version == 1
                 else weights,
                 "seeds": _json(meta, "layer_seeds", path) if version >= 2 else None,
                 "compile_config": compile_cfg if compile else None, "optimizer": None}
        if compile and compile_cfg is not None and opt_meta is not None:
            if version == 1:
                slots = _positional_slots(model, opt_meta, tensors, path)
            state["optimizer"] = _optimizer_state(opt_meta, slots, path)
        state_mod.set_state(model, state, custom_objects=custom_objects)
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(f"{path}:") else f"{path}: {msg}") from None
    return model


def save_weights(model: Model, filepath: str | os.PathLike[str],
                 overwrite: bool = True) -> None:
    """Writes only the weights, by path (plus a little metadata), to a safetensors file; a
    path ending in .weights.h5 gets Keras 3's HDF5 layout instead."""
    if _suffix(filepath, ".h5"):
        from pynn.models import keras_format

        keras_format.save_weights(model, filepath, overwrite=overwrite)
        return
    path = _check_path(filepath, overwrite)
    weights = state_mod.get_weights_by_path(model)
    _safetensors.write(path, weights, {"format": WEIGHTS_FORMAT, "format_version": str(VERSION),
                                       "weights": json.dumps(list(weights))})


def load_weights(model: Model, filepath: str | os.PathLike[str]) -> None:
    """Reads the weights of a file written by `save_weights` or `save` into a built model,
    matching them by path (version-1 files: by position). All are checked before any is
    written."""
    model._require_built("load_weights")
    if _other_format(filepath, weights_only=True) is not None:
        from pynn.models import keras_format

        keras_format.load_weights(model, filepath)
        return
    tensors, meta, version = _read(filepath, WEIGHTS_FORMAT)
    path = os.fspath(filepath)
    try:
        weights, _, _ = _weights_of_file(tensors, meta, version, path)
        if version == 1:
            weights = _positional_weights(model, weights, path)
        state_mod.set_state(model, {"weights": weights}, compile=False)
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(f"{path}:") else f"{path}: {msg}") from None
