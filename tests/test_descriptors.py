"""The core's descriptor tables (activations, losses, optimizers) and what is derived from them.

Each family has one table in C++: names, aliases, parameters with defaults and valid ranges.
The bindings read names and check settings through it (one strict parser per family), and
pynn.activations, pynn.losses and pynn.optimizers take their name lists, signatures and
defaults from it. These tests pin the tables against independent sources (the NumPy twins in
pynn.reference, Keras 3's documented defaults) and check that every consumer agrees.
"""
from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest

import pynn
from pynn import _core, activations, losses, optimizers
from pynn.reference import losses as ref_losses
from pynn.reference import optimizers as ref_optimizers

OPT = {d["name"]: d for d in _core.optimizer_descriptors()}
LOSS = {d["name"]: d for d in _core.loss_descriptors()}
ACT = {d["name"]: d for d in _core.activation_descriptors()}


def _fields(kind):
    return {f["name"]: f for f in OPT[kind]["fields"]}


def _inside(f, v):
    lo_ok = v >= f["min"] if f["min_inclusive"] else v > f["min"]
    hi_ok = v <= f["max"] if f["max_inclusive"] else v < f["max"]
    return lo_ok and hi_ok


# --- optimizers ------------------------------------------------------------------------------
def test_optimizer_table_lists_the_keras_optimizers_in_engine_order():
    assert list(OPT) == ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw", "nadam",
                         "adamax"]
    assert [d["kind"] for d in OPT.values()] == list(range(8))
    assert optimizers.names() == sorted(OPT)
    for kind, d in OPT.items():
        cls = optimizers.get(kind).__class__
        assert cls.__name__ == d["class_name"] and cls.kind == kind
        # every optimizer takes the shared arguments (AdamW names weight_decay explicitly)
        assert {"learning_rate", "weight_decay", "clipnorm", "clipvalue",
                "global_clipnorm"} <= set(_fields(kind))
        assert d["exclusive"] == [("clipnorm", "global_clipnorm")]


@pytest.mark.parametrize("kind", list(OPT))
def test_optimizer_defaults_match_the_twin_and_the_python_signature(kind):
    # the twin (pynn.reference.optimizers) spells Keras 3's signatures out independently
    ref_cls = type(ref_optimizers.get(kind))
    ref_defaults = {}
    for klass in reversed(ref_cls.__mro__):
        if "__init__" in vars(klass):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.default is not inspect.Parameter.empty:
                    ref_defaults[p.name] = p.default
    cls = type(optimizers.get(kind))
    sig = inspect.signature(cls)
    explicit = [f["name"] for f in OPT[kind]["fields"] if f["explicit"]]
    assert [p for p in sig.parameters if p != "kwargs"] == explicit
    for name, f in _fields(kind).items():
        if name in sig.parameters:
            assert sig.parameters[name].default == f["default"], name
        if name in ref_defaults:
            assert f["default"] == ref_defaults[name], name
        if f["default"] is not None and f["type"] == "float":
            assert _inside(f, f["default"]), name
    # the core's own defaults (an empty config) are the table's
    cfg = _core.optimizer_config(kind)
    for name, f in _fields(kind).items():
        assert cfg[name] == f["default"], name
    # and a default-constructed Python object reports them
    got = cls().get_config()
    for name, f in _fields(kind).items():
        assert got[name] == f["default"], name


@pytest.mark.parametrize("kind", list(OPT))
def test_optimizer_ranges_are_enforced_at_the_bounds(kind):
    for name, f in _fields(kind).items():
        if f["type"] != "float":
            with pytest.raises(TypeError, match=rf"{kind}: expected {name} to be a bool"):
                _core.optimizer_config(kind, {name: 1})
            continue
        for bound, inclusive in ((f["min"], f["min_inclusive"]), (f["max"], f["max_inclusive"])):
            if not math.isfinite(bound):
                continue
            if inclusive:
                _core.optimizer_config(kind, {name: bound})
            else:
                with pytest.raises(ValueError, match=re.escape(name)) as err:
                    _core.optimizer_config(kind, {name: bound})
                assert kind in str(err.value)
        with pytest.raises(ValueError, match=rf"expected a finite {name}"):
            _core.optimizer_config(kind, {name: float("inf")})
        with pytest.raises(TypeError, match=rf"expected {name} to be a number, got str"):
            _core.optimizer_config(kind, {name: "0.1"})
        if f["nullable"]:
            assert _core.optimizer_config(kind, {name: None})[name] is None
        else:
            with pytest.raises(ValueError, match=rf"{kind}: expected .*{name}.*got None"):
                _core.optimizer_config(kind, {name: None})


def test_optimizer_parser_messages_name_field_range_and_value():
    with pytest.raises(ValueError, match=r"^sgd: expected momentum in \[0, 1\], got momentum=1.5$"):
        _core.optimizer_config("sgd", {"momentum": 1.5})
    with pytest.raises(ValueError, match=r"^rmsprop: expected momentum in \[0, 1\), got momentum=1$"):
        _core.optimizer_config("rmsprop", {"momentum": 1.0})
    with pytest.raises(ValueError, match=r"^adam: expected epsilon > 0, got epsilon=0$"):
        _core.optimizer_config("adam", {"epsilon": 0.0})
    with pytest.raises(ValueError, match=r"'beta_1' is not an argument of sgd \(it takes "
                                         r"learning_rate, momentum, nesterov, weight_decay"):
        _core.optimizer_config("sgd", {"beta_1": 0.9})
    with pytest.raises(TypeError, match="keys must be argument names"):
        _core.optimizer_config("sgd", {1: 0.9})
    with pytest.raises(TypeError, match="config: expected a dict"):
        _core.optimizer_config("sgd", [("momentum", 0.9)])
    # float32 holds the value or it is refused; huge Python ints too
    with pytest.raises(ValueError, match="finite learning_rate"):
        _core.optimizer_config("sgd", {"learning_rate": 1e39})
    with pytest.raises(ValueError, match="finite learning_rate"):
        _core.optimizer_config("sgd", {"learning_rate": 10 ** 400})
    # a value in range that float32 rounds onto an open bound is refused after rounding
    with pytest.raises(ValueError, match=r"adam: expected beta_2 in \[0, 1\)"):
        _core.optimizer_config("adam", {"beta_2": 1 - 1e-9})
    # NumPy scalars are numbers, NumPy bools are bools
    cfg = _core.optimizer_config("sgd", {"momentum": np.float32(0.5), "nesterov": np.bool_(True)})
    assert cfg["momentum"] == 0.5 and cfg["nesterov"] is True
    # optimizer names are case-insensitive, as pynn.optimizers.get
    assert _core.optimizer_config("Adam")["beta_1"] == 0.9


def test_every_engine_takes_optimizers_through_the_strict_parser():
    # Network and Graph used to take any dict leniently, with defaults of their own
    net = _core.Network(3)
    net.add_dense(2, "linear", [], True)
    g = _core.Graph()
    x = g.add_input([3])
    w = np.zeros((3, 2), np.float32)
    g.set_outputs(g.add_node("dense", [x], [g.add_param(w, "w")], {"units": 2, "use_bias": False}))
    for engine in (net, g):
        with pytest.raises(ValueError, match=r"sgd: expected momentum in \[0, 1\]"):
            engine.set_optimizer("sgd", {"momentum": 2.0})
        with pytest.raises(ValueError, match="'beta_1' is not an argument of sgd"):
            engine.set_optimizer("sgd", {"beta_1": 0.9})
        with pytest.raises(TypeError, match="expected amsgrad to be a bool"):
            engine.set_optimizer("adam", {"amsgrad": "yes"})
        with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
            engine.set_optimizer("adamx", {})
        # what is left out takes the Keras default of that optimizer
        for kind in OPT:
            engine.set_optimizer(kind, {})
            assert engine.learning_rate == pytest.approx(_fields(kind)["learning_rate"]["default"])
        engine.set_optimizer("sgd")
        assert engine.learning_rate == pytest.approx(0.01)


def test_python_optimizers_check_through_the_table():
    with pytest.raises(ValueError, match=r"momentum in \[0, 1\]"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match=r"rho in \[0, 1\)"):
        optimizers.Adadelta(rho=1.0)
    with pytest.raises(ValueError, match="only one of clipnorm and global_clipnorm"):
        optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match=r"SGD: argument\(s\) not recognized: \['rho'\]"):
        optimizers.SGD(rho=0.9)
    with pytest.raises(TypeError, match="SGD\\(\\): too many positional arguments"):
        optimizers.SGD(0.1, 0.9, True, 4)
    # pynn's classes still ask for a positive learning rate (the engine also takes 0)
    with pytest.raises(ValueError, match="learning_rate: expected a positive number"):
        optimizers.SGD(learning_rate=0)
    # positional arguments follow Keras's order; bools are coerced as before
    opt = optimizers.AdamW(0.002, 0.01, 0.8)
    assert (opt.learning_rate, opt.weight_decay, opt.get_config()["beta_1"]) == (0.002, 0.01, 0.8)
    assert optimizers.SGD(nesterov=1).get_config()["nesterov"] is True
    assert isinstance(optimizers.AdamW(), optimizers.Adam)
    assert isinstance(optimizers.Adamax(), optimizers.Nadam)
    # the engine gets None for what is off, and takes it
    cfg = optimizers.RMSprop(clipvalue=0.5)._engine_config()
    assert cfg["clipnorm"] is None and cfg["clipvalue"] == 0.5
    assert _core.optimizer_config("rmsprop", cfg)["clipvalue"] == 0.5


# --- losses ----------------------------------------------------------------------------------
def test_loss_table_matches_the_twin_and_pynn_losses():
    public = [n for n, d in LOSS.items() if not d["internal"]]
    internal = [n for n, d in LOSS.items() if d["internal"]]
    assert public == list(ref_losses.NAMES)
    assert internal == list(ref_losses.GRAPH_NAMES) == ["mean_of_output"]
    assert list(_core.loss_names()) == list(LOSS)
    assert [d["kind"] for d in LOSS.values()] == list(range(len(LOSS)))
    for name, d in LOSS.items():
        assert d["from_logits"] == (name in ref_losses.CROSS_ENTROPIES)
        if d["internal"]:
            assert d["class_name"] == "" and d["target"] == "none"
            assert name not in losses._CLASSES
            continue
        cls = losses._CLASSES[name]
        assert cls.__name__ == d["class_name"] and cls.kind == name
        assert getattr(losses, d["class_name"]) is cls and getattr(losses, name)._pynn_loss == name
        for alias in d["aliases"]:
            assert type(losses.get(alias)) is cls
    assert LOSS["sparse_categorical_crossentropy"]["target"] == "labels"
    assert set(losses.CLASSIFICATION_KINDS) == set(ref_losses.CROSS_ENTROPIES)
    assert [p["name"] for p in LOSS["huber"]["params"]] == ["delta"]
    assert inspect.signature(losses.Huber).parameters["delta"].default == 1.0


def test_loss_config_is_strict():
    assert _core.loss_config("huber") == {"delta": 1.0}
    assert _core.loss_config("binary_crossentropy", {"from_logits": True}) == {"from_logits": True}
    assert _core.loss_config("mean_squared_error") == {}
    with pytest.raises(ValueError, match=r"^huber: expected delta > 0, got delta=0$"):
        _core.loss_config("huber", {"delta": 0})
    with pytest.raises(TypeError, match="expected delta to be a number"):
        _core.loss_config("huber", {"delta": True})
    with pytest.raises(ValueError, match=r"'from_logits' is not a parameter of huber \(it takes delta\)"):
        _core.loss_config("huber", {"from_logits": True})
    with pytest.raises(ValueError, match="kind: unknown loss 'mse'"):
        _core.loss_config("mse")
    with pytest.raises(ValueError, match="expected delta > 0"):
        losses.Huber(delta=-1.0)
    assert losses.Huber(delta=2).get_config()["delta"] == 2.0
    # the engines check the same table
    net = _core.Network(3)
    net.add_dense(2, "linear", [], True)
    with pytest.raises(ValueError, match="huber: expected delta > 0"):
        net.set_loss("huber", False, -1.0)
    with pytest.raises(ValueError, match="kind: unknown loss 'hinge'"):
        net.set_loss("hinge", False, 1.0)
    g = _core.Graph()
    x = g.add_input([3])
    g.set_outputs(g.add_node("activation", [x], [], {"activation": "linear"}))
    with pytest.raises(ValueError, match=r"losses\[0\]: huber: expected delta > 0"):
        g.set_losses([("huber", False, 0.0, 1.0)])


# --- activations -----------------------------------------------------------------------------
def test_activation_table_drives_pynn_activations():
    assert [n for n, d in ACT.items() if d["elementwise"]] == list(_core.activation_names())
    assert ACT["softmax"]["elementwise"] is False and ACT["softmax"]["params"] == []
    assert activations.names() == sorted(ACT)
    assert activations.PARAMS == {
        "leaky_relu": (("negative_slope", 0.2),), "elu": (("alpha", 1.0),),
        "softplus": (("beta", 1.0),), "gelu": (("approximate", False),),
        "hard_tanh": (("min_val", -1.0), ("max_val", 1.0)),
        "soft_shrink": (("threshold", 0.5),), "hard_shrink": (("threshold", 0.5),),
        "rrelu": (("lower", 1.0 / 8.0), ("upper", 1.0 / 3.0))}
    assert activations.ALIASES == {None: "linear", "identity": "linear"}
    assert ACT["hard_tanh"]["ordered"] == "min_val <= max_val"
    for name, d in ACT.items():
        if d["elementwise"]:
            want = [np.float32(p["default"]) for p in d["params"]]
            assert list(_core.activation_defaults(name)) == want, name


def test_activation_params_are_checked_by_the_table():
    assert activations.resolve("leaky_relu", negative_slope=0.1) == ("leaky_relu", [0.1])
    assert activations.resolve("gelu", approximate=True) == ("gelu", [1.0])
    assert activations.resolve("rrelu", lower=0.1) == ("rrelu", [0.1, 1.0 / 3.0])
    assert activations.resolve("identity") == ("linear", [])
    cases = [
        ("softplus", {"beta": 0.0}, ValueError, r"activation 'softplus': expected beta > 0, got beta=0"),
        ("soft_shrink", {"threshold": -1}, ValueError, "expected threshold >= 0"),
        ("rrelu", {"lower": -0.1}, ValueError, "expected lower >= 0, got lower=-0.1"),
        ("rrelu", {"lower": 0.5, "upper": 0.2}, ValueError,
         "expected lower <= upper, got lower=0.5, upper=0.2"),
        ("hard_tanh", {"min_val": 2, "max_val": 1}, ValueError, "expected min_val <= max_val"),
        ("elu", {"alpha": float("nan")}, ValueError, "expected a finite alpha"),
        ("elu", {"alpha": "2"}, TypeError, "expected alpha to be a number"),
        ("elu", {"beta": 1.0}, ValueError, "unknown parameter 'beta'; it takes alpha"),
        ("relu", {"alpha": 1.0}, ValueError, "unknown parameter 'alpha'; it takes none"),
        ("gelu", {"approximate": "yes"}, TypeError, "expected approximate to be a bool"),
    ]
    for name, params, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            activations.resolve(name, **params)
        with pytest.raises(exc, match=msg):
            _core.activation_params(name, params)
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        _core.activation_params("nope")
    # the raw kernels check the same rules
    with pytest.raises(ValueError, match="rrelu': expected lower >= 0"):
        _core.rrelu_forward(np.zeros(3, np.float32), -0.5, 0.1)
    layer = pynn.layers.Dense(2, activation="softplus")
    assert layer._act_params == [1.0]


# --- the bindings ------------------------------------------------------------------------------
def _signatures(obj):
    """Every signature line of a pybind11 function, method or property accessor in `obj`."""
    for name in dir(obj):
        if name.startswith("__") and name != "__init__":
            continue
        a = getattr(obj, name)
        if isinstance(a, property):
            for acc in (a.fget, a.fset):
                if acc is not None:
                    yield f"{name} (property)", acc.__doc__ or ""
        elif isinstance(a, type) and name[:1].isupper():
            yield from ((f"{name}.{n}", d) for n, d in _signatures(a))
        elif callable(a):
            yield name, getattr(a, "__doc__", "") or ""


def test_every_binding_argument_has_a_name():
    unnamed = [name for name, doc in _signatures(_core) if re.search(r"\barg\d+\b", doc)]
    assert unnamed == []
