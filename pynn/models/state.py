"""A model's state, the one description that model files, `load_model` and pickling share.

    {"config":         the model's config ({"class_name", "config"}, as layers.serialize),
     "weights":        {weight path: float32 array}, every weight of the model once,
     "seeds":          {layer path: int}, the seeds layers drew from pynn's stream when they
                       were built (dropout masks, rrelu slopes), so training continues exactly,
     "compile_config": the compile configuration or None,
     "optimizer":      Optimizer.get_state() or None}

Weight paths are unique within a model and look like Keras 3's: "<layer>/<weight>"
("dense_1/kernel", "batch_normalization/moving_mean"); a nested model prefixes its own name
("encoder/dense/kernel"); a layer that appears several times (shared, or in two nested
models) is listed once, under the first path that reaches it. Should two paths coincide (two
layers given the same name), the later one gets a "_1", "_2"... suffix; the order is the
model's, so the same architecture always gives the same names.

Weights are matched by path. A state whose paths differ from the model's only by the counters
of default layer names ("dense_7/kernel" for "dense_1/kernel": the same architecture built
again in one session) is matched by position instead, when every pair agrees in that generic
path; a weight missing, extra or of another shape is refused with a ValueError naming it.

Rebuilding a model from a state (`model_from_state`) runs no initializer and leaves pynn's
global random stream untouched: the weights are allocated, then overwritten by the saved ones.
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pynn.models.model import Model

STATE_KEYS = ("config", "weights", "seeds", "compile_config", "optimizer")
# Attributes in which pynn's layers keep the seed they drew when built (Dropout: the mask
# stream; Dense and Activation with rrelu: the slopes).
_SEED_ATTRS = ("_built_seed", "_seed")


def _unique(path, used):
    name, k = path, 1
    while name in used:
        name, k = f"{path}_{k}", k + 1
    return name


def _walk(model):
    """[(layer path, layer)] for every layer under `model`, depth first in the model's
    order, each layer once; nested models are listed too, then their own layers."""
    from pynn.models.model import Model

    out, seen, used = [], set(), set()

    def visit(m, prefix):
        m._maybe_trace()
        for layer in m._sublayers():
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            path = _unique(prefix + layer.name, used)
            used.add(path)
            out.append((path, layer))
            if isinstance(layer, Model):
                visit(layer, path + "/")

    visit(model, "")
    return out


def layer_paths(model) -> dict:
    """{layer path: layer}, nested models included."""
    return dict(_walk(model))


def weight_paths(model) -> dict:
    """{weight path: Weight} in the order of ``model.weights``."""
    from pynn.models.model import Model

    out: dict[str, Any] = {}
    seen = set()
    for lpath, layer in _walk(model):
        if isinstance(layer, Model):
            continue
        for w in layer._all_weights():
            if id(w) not in seen:
                seen.add(id(w))
                out[_unique(f"{lpath}/{w.name}", out)] = w
    by_id = {id(w): p for p, w in out.items()}
    ordered: dict[str, Any] = {}
    for w in model._all_weights():
        # (a weight the walk did not reach, from an unusual layer, keeps its own path)
        path = by_id.get(id(w)) or _unique(w.path, set(out) | set(ordered))
        ordered[path] = w
    return ordered


def param_paths(model, spec=None) -> list:
    """The weight path of each parameter of the model's compiled graph (or of `spec`), in
    parameter order."""
    by_id = {id(w): p for p, w in weight_paths(model).items()}
    names: list[str] = []
    used: set[str] = set()
    for ref in (model._spec if spec is None else spec).params:
        name = by_id.get(id(ref.owner)) or _unique(ref.name, used)
        used.add(name)
        names.append(name)
    return names


# --- reading a model's state ------------------------------------------------------------------
def get_weights_by_path(model) -> dict:
    """{weight path: copy of its value}; a weight holding NaN or Inf is refused (ValueError)."""
    model._require_built("get_state")
    weights = {}
    for path, w in weight_paths(model).items():
        if not np.all(np.isfinite(w.value)):
            raise ValueError(f"{model.name}: weight {path!r} contains NaN or Inf (did training "
                             f"diverge?); refusing to save a broken model")
        weights[path] = w.numpy()
    return weights


def get_state(model) -> dict:
    """The state of a built model (see the module's docstring). Refuses (ValueError) a model
    whose weights or optimizer slots hold NaN or Inf: such a state could not be restored."""
    from pynn import layers as layers_mod

    weights = get_weights_by_path(model)
    seeds = {}
    for lpath, layer in _walk(model):
        for attr in _SEED_ATTRS:
            value = layer.__dict__.get(attr)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                seeds[lpath] = int(value)
                break
    opt_state = None
    if model.compiled and model.optimizer is not None:
        # compiled but not trained yet: building the graph gives the fresh optimizer state
        net = model._ensure_graph()
        if model.optimizer._net is net:
            opt_state = model.optimizer.get_state()
            for name, arrays in opt_state["slots"].items():
                if not all(np.all(np.isfinite(a)) for a in arrays):
                    raise ValueError(f"{model.name}: optimizer state of weight {name!r} "
                                     f"contains NaN or Inf (did training diverge?); refusing "
                                     f"to save it")
    return {"config": layers_mod.serialize(model), "weights": weights, "seeds": seeds,
            "compile_config": model.get_compile_config(), "optimizer": opt_state}


# --- restoring it -----------------------------------------------------------------------------
def _checked_weights(model, weights):
    """([(Weight, array)], {state path: model path} for renamed paths) for `weights` (path ->
    array), after checking that it names every weight of the model exactly once with the
    right shape, float32 and finite values."""
    if not isinstance(weights, dict):
        raise ValueError(f"weights: expected a dict (weight path -> array), got "
                         f"{type(weights).__name__}")
    own = weight_paths(model)
    rename = {}
    if set(own) != set(weights):
        renamed = _same_structure(own, weights)
        if renamed is not None:
            rename = dict(zip(weights, own))
            weights = renamed
    missing = [p for p in own if p not in weights]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"weight {missing[0]!r} of the model is missing{more}; found "
                         f"{_some(weights)}")
    extra = [p for p in weights if p not in own]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ValueError(f"weight {extra[0]!r} is not a weight of the model{more}; its "
                         f"weights are {_some(own)}")
    pairs = []
    for path, w in own.items():
        arr = weights[path]
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
            kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            raise ValueError(f"weight {path!r} has dtype {kind}, expected float32")
        if arr.shape != w.shape:
            raise ValueError(f"weight {path!r} has shape {arr.shape}, the model expects "
                             f"{w.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"weight {path!r} contains NaN or Inf")
        pairs.append((w, arr))
    return pairs, rename


_COUNTER = re.compile(r"_[0-9]+$")


def _generic(path):
    """A path without the counters pynn appends to default layer names ("dense_3/kernel"
    -> "dense/kernel")."""
    return "/".join(_COUNTER.sub("", part) for part in path.split("/"))


def _same_structure(own, weights):
    """`weights` keyed by the model's paths when it describes the same layers under other
    default layer names (the same model built again in one session numbers its layers on:
    dense_2, dense_3...): as many weights, in the same order, each pair with the same path up
    to those counters. Else None. (Shapes are checked afterwards, naming the weight.)"""
    if len(own) != len(weights):
        return None
    out = {}
    for path, name in zip(own, weights):
        if _generic(path) != _generic(name):
            return None
        out[path] = weights[name]
    return out


def _some(names, n=5):
    names = list(names)
    return f"{names[:n]}{'...' if len(names) > n else ''}"


def _checked_seeds(model, seeds):
    if seeds is None:
        return []
    if not isinstance(seeds, dict):
        raise ValueError(f"seeds: expected a dict (layer path -> integer), got "
                         f"{type(seeds).__name__}")
    layers = layer_paths(model)
    if any(p not in layers for p in seeds):
        # the same architecture under other default names: the layers that drew a seed, in
        # order, when their paths agree up to the counters (as for weights)
        drew = [p for p, lay in layers.items() if any(a in lay.__dict__ for a in _SEED_ATTRS)]
        if len(drew) == len(seeds) and all(_generic(a) == _generic(b)
                                           for a, b in zip(drew, seeds)):
            seeds = dict(zip(drew, seeds.values()))
    out = []
    for path, value in seeds.items():
        layer = layers.get(path)
        if layer is None:
            raise ValueError(f"seeds: {path!r} is not a layer of the model")
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or not 0 <= value < 2**63:
            raise ValueError(f"seeds: layer {path!r}: expected an integer in [0, 2**63), got "
                             f"{value!r}")
        attr = next((a for a in _SEED_ATTRS if a in layer.__dict__), None)
        if attr is None:
            raise ValueError(f"seeds: layer {path!r} ({type(layer).__name__}) draws no "
                             f"random seed")
        out.append((layer, attr, int(value)))
    return out


def set_state(model, state, compile=True, custom_objects=None) -> None:
    """Restores a state from `get_state` into a model of the same architecture: its weights
    (by path), layer seeds and, with `compile` and a compile config in the state, its compile
    configuration and optimizer state. ``state["config"]`` is not used here (see
    `model_from_state`). Weights and seeds are all checked before any is written."""
    if not isinstance(state, dict):
        raise TypeError(f"state: expected the dict of get_state(), got "
                        f"{type(state).__name__}")
    unknown = [k for k in state if k not in STATE_KEYS]
    if unknown or "weights" not in state:
        raise ValueError(f"state: expected the keys {list(STATE_KEYS)} (weights required), got "
                         f"{sorted(map(str, state))}")
    model._require_built("set_state")
    pairs, rename = _checked_weights(model, state["weights"])
    seeds = _checked_seeds(model, state.get("seeds"))
    compile_cfg = state.get("compile_config")
    if compile_cfg is not None and not isinstance(compile_cfg, dict):
        raise ValueError(f"compile_config: expected a dict or None, got "
                         f"{type(compile_cfg).__name__}")
    changed = False
    for layer, attr, value in seeds:
        if layer.__dict__.get(attr) != value:
            setattr(layer, attr, value)
            changed = True
    if changed and model._graph is not None:
        model._invalidate_graph()   # the graph holds the old seeds
    for w, arr in pairs:
        np.copyto(w.value, arr)
    if compile and compile_cfg is not None:
        try:
            model.compile_from_config(compile_cfg, custom_objects)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"invalid compile config ({type(exc).__name__}: {exc})") from None
        opt_state = state.get("optimizer")
        if opt_state is not None:
            if rename and isinstance(opt_state, dict) and isinstance(opt_state.get("slots"), dict):
                opt_state = {**opt_state, "slots": {rename.get(k, k): v
                                                    for k, v in opt_state["slots"].items()}}
            model._ensure_graph()
            model.optimizer.set_state(opt_state)


class restoring:
    """Context for rebuilding a model from saved state: weights start as zeros (no
    initializer runs) and seeds drawn while building come from a private stream, so pynn's
    global random stream is left as it was."""

    def __enter__(self):
        from pynn import _random
        from pynn.layers.layer import skip_initializers

        self._contexts = [skip_initializers(), _random.detached()]
        for c in self._contexts:
            c.__enter__()
        return self

    def __exit__(self, *exc):
        for c in reversed(self._contexts):
            c.__exit__(*exc)


def model_from_state(state: dict[str, Any], compile: bool = True,
                     custom_objects: Mapping[str, Any] | None = None) -> Model:
    """A new model from a state: built from its config without drawing initial weights, then
    given the state's weights, seeds, compile configuration and optimizer state."""
    from pynn import layers as layers_mod

    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError("state: expected the dict of get_state(), with a 'config'")
    with restoring():
        model = layers_mod.deserialize(state["config"], custom_objects)
    set_state(model, state, compile=compile, custom_objects=custom_objects)
    return model  # type: ignore[return-value]  # get_state()'s config is always a model's


# --- pickling ---------------------------------------------------------------------------------
def reduce_model(model: Model) -> tuple[Any, ...]:
    """``__reduce__`` of a model: rebuilt from its state on unpickling. Classes of the user's
    own layers travel by reference (as pickle does for any class)."""
    from pynn import layers as layers_mod
    from pynn.layers.lambda_layer import Lambda
    from pynn.models.model import Model
    from pynn.models.sequential import Sequential

    custom = {}
    for path, layer in [(model.name, model)] + _walk(model):
        cls = type(layer)
        if isinstance(layer, Lambda):
            raise TypeError(f"pickle: layer {path!r} is a Lambda layer, whose function cannot "
                            f"be rebuilt from its config; rebuild such a model in Python and "
                            f"copy its weights")
        if isinstance(layer, Model) and cls not in (Model, Sequential):
            raise TypeError(f"pickle: {path!r} is a subclassed model ({cls.__name__}); pynn "
                            f"pickles models described by their config (Sequential and "
                            f"functional ones, nested or not)")
        if cls not in (Model, Sequential) and layers_mod._CLASSES.get(cls.__name__) is not cls:
            custom[layers_mod.serialize(layer)["class_name"]] = cls
    custom.update(_compile_objects(model))
    model._maybe_trace()
    if model._inputs is None:
        # not built yet (a Sequential without an input shape): no weights to carry
        state = {"config": layers_mod.serialize(model), "weights": None,
                 "compile_config": model.get_compile_config()}
    else:
        state = get_state(model)
    return _unpickle, (state, custom or None)


def _compile_objects(model):
    """The user's losses and metrics a model was compiled with, by the names its compile
    config gives them (they travel by reference, as the layers' classes do)."""
    from pynn import losses as losses_mod
    from pynn.saving import registered_name

    out = {}
    for lo in getattr(model, "_losses", None) or []:
        if lo is None or not lo.is_custom:
            continue
        if isinstance(lo, losses_mod.LossFunctionWrapper):
            out[registered_name(lo.fn) or lo.fn.__name__] = lo.fn
        else:
            out[registered_name(type(lo)) or type(lo).__name__] = type(lo)
    for mset in getattr(model, "_metric_sets", None) or []:
        for m in (mset.custom.values() if mset is not None else []):
            # a function metric travels as its function (wrapped in MeanMetricWrapper)
            obj = m._fn if type(m).__name__ == "MeanMetricWrapper" else type(m)
            out[registered_name(obj) or getattr(obj, "__name__", "")] = obj
    return out


def _unpickle(state, custom_objects=None):
    if state.get("weights") is None:
        from pynn import layers as layers_mod

        model = layers_mod.deserialize(state["config"], custom_objects)
        if state.get("compile_config") is not None:
            model.compile_from_config(state["compile_config"], custom_objects)
        return model
    return model_from_state(state, compile=True, custom_objects=custom_objects)
