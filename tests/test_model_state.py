"""A model's state (`Model.get_state`/`set_state`, `Optimizer.get_state`/`set_state`): the one
path behind model files, `load_model` and pickling. Pickled models continue training bitwise
like the original."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import pynn
from pynn import _random
from pynn import layers as L


class Doubler(L.Layer):
    """A user's layer (not registered): pickle carries its class by reference."""

    def _emit(self, spec, inputs):
        return L.Add(name=self.name + "_add")._emit(spec, [inputs[0], inputs[0]])


def _data(n=40, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, c, n)


def _sequential(optimizer="adam"):
    m = pynn.Sequential([pynn.Input((6,)), L.Dense(8, activation="relu"),
                         L.BatchNormalization(), L.Dropout(0.3), L.Dense(8, activation="rrelu"),
                         L.Dense(3, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def _two_io():
    a, b = pynn.Input((6,), name="a"), pynn.Input((3,), name="b")
    shared = L.Dense(5, activation="tanh", name="shared")
    h = L.Concatenate(name="cat")([shared(a), L.Dense(4, name="proj")(b)])
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(2, name="reg")(L.Dropout(0.2, name="drop")(shared(a)))
    m = pynn.Model({"a": a, "b": b}, [cls, reg], name="two_io")
    m.compile(optimizer=pynn.optimizers.SGD(0.05, momentum=0.9),
              loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
    return m


def _nested():
    enc = pynn.Sequential([pynn.Input((6,)), L.Dense(4, activation="tanh")], name="encoder")
    dinp = pynn.Input((4,))
    dec = pynn.Model(dinp, L.Dense(6)(L.BatchNormalization()(dinp)), name="decoder")
    auto = pynn.Sequential([enc, dec], name="auto")
    auto.compile(optimizer="nadam", loss="mse")
    return auto


def _bytes(model):
    return [w.tobytes() for w in model.get_weights()]


def _fit(model, kind, epochs=1, seed=None):
    x, y = _data()
    if seed is not None:
        pynn.utils.set_random_seed(seed)
    if kind == "two_io":
        xb = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
        yr = np.random.default_rng(2).normal(size=(40, 2)).astype(np.float32)
        model.fit({"a": x, "b": xb}, [y, yr], epochs=epochs, batch_size=8, verbose=0)
    elif kind == "nested":
        model.fit(x, x, epochs=epochs, batch_size=8, verbose=0)
    else:
        model.fit(x, y, epochs=epochs, batch_size=8, verbose=0)


# --- Optimizer.get_state / set_state ---------------------------------------------------------
def test_optimizer_state_names_slots_by_weight():
    pynn.utils.set_random_seed(0)
    m = _sequential()
    fresh = m.optimizer.get_state()  # compiled, no graph yet: the fresh state
    assert fresh == {"iterations": 0, "learning_rate": pytest.approx(0.001), "u_product": 1.0,
                     "slots": {}}
    _fit(m, "seq")
    state = m.optimizer.get_state()
    assert state["iterations"] == 5
    assert list(state["slots"]) == list(m.get_weight_paths())
    for name, w in m.get_weight_paths().items():
        arrays = state["slots"][name]
        # Adam: first and second moments for what trains, nothing for moving statistics
        assert len(arrays) == (2 if w._trainable else 0)
        assert all(a.shape == w.shape and a.dtype == np.float32 for a in arrays)
    # the second moments are non-negative and something was accumulated
    kernel = f"{m.layers[0].name}/kernel"
    assert (state["slots"][kernel][1] >= 0).all() and state["slots"][kernel][1].any()
    # get_state copies: changing the copy changes nothing
    state["slots"][kernel][0][...] = 7
    assert not (m.optimizer.get_state()["slots"][kernel][0] == 7).any()


def test_optimizer_set_state_restores_training_exactly():
    x, y = _data()
    pynn.utils.set_random_seed(3)
    a = _sequential()
    _fit(a, "seq")
    b = _sequential()
    b.set_weights(a.get_weights())
    for la, lb in zip(a.layers, b.layers):   # the same masks and slopes
        for attr in ("_built_seed", "_seed"):
            if attr in la.__dict__:
                setattr(lb, attr, la.__dict__[attr])
    b.build()
    b._ensure_graph()
    # b's layers have other default names: the state is keyed by a's names
    renamed = {name_b: arrays for name_b, arrays in
               zip(b.get_weight_paths(), a.optimizer.get_state()["slots"].values())}
    state = dict(a.optimizer.get_state(), slots=renamed)
    b.optimizer.set_state(state)
    assert b.optimizer.iterations == a.optimizer.iterations == 5
    for m in (a, b):
        m.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert _bytes(a) == _bytes(b)


def test_optimizer_set_state_refuses_bad_states_before_writing():
    pynn.utils.set_random_seed(5)
    m = _sequential()
    _fit(m, "seq")
    good = m.optimizer.get_state()
    kernel = f"{m.layers[0].name}/kernel"

    def edited(**changes):
        state = {**good, "slots": {k: list(v) for k, v in good["slots"].items()}}
        for key, value in changes.items():
            if key.startswith("slot_"):
                state["slots"][kernel][int(key[-1])] = value
            elif key == "drop":
                state["slots"].pop(value)
            elif key == "add":
                state["slots"][value] = []
            else:
                state[key] = value
        return state

    cases = [
        (edited(drop=kernel), rf"no slots for weight '{kernel}'"),
        (edited(add="ghost/kernel"), r"slots for weight 'ghost/kernel', which the model does "),
        (edited(slot_1=np.zeros((8, 6), np.float32)),
         rf"slot 1 of weight '{kernel}': expected shape \(6, 8\), got \(8, 6\)"),
        (edited(slot_0=np.zeros((6, 8))),
         rf"slot 0 of weight '{kernel}': expected a float32 array, got float64"),
        (edited(slot_0=np.full((6, 8), np.nan, np.float32)), "contains NaN or Inf"),
        (edited(iterations=-1), r"iterations: expected an integer in \[0, 2\*\*62\), got -1"),
        (edited(iterations=1.5), "iterations"),
        (edited(learning_rate=float("inf")), "learning_rate: expected a finite number"),
        (edited(learning_rate=-0.1), "learning_rate: expected a non-negative number"),
        (edited(slots=[]), "slots: expected a dict"),
        ({"iterations": 1}, "expected the keys"),
    ]
    state = good["slots"][kernel][0].copy()
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            m.optimizer.set_state(bad)
    with pytest.raises(ValueError, match=rf"weight '{kernel}' expected 2 slot array\(s\) \(Adam\), "
                                         rf"got 1"):
        m.optimizer.set_state({**good, "slots": {**good["slots"], kernel: [state]}})
    with pytest.raises(TypeError, match="state: expected the dict of Optimizer.get_state"):
        m.optimizer.set_state([1, 2])
    # nothing was written by the refused states
    after = m.optimizer.get_state()
    assert after["iterations"] == good["iterations"]
    assert after["slots"][kernel][0].tobytes() == state.tobytes()
    # an optimizer not attached to a model takes only a fresh state
    loose = pynn.optimizers.Adam()
    loose.set_state({"iterations": 0, "learning_rate": 0.5, "slots": {}})
    assert loose.learning_rate == 0.5
    with pytest.raises(ValueError, match="not attached to a model yet"):
        loose.set_state(good)


# --- Model.get_state / set_state ---------------------------------------------------------------
def test_model_set_state_between_two_builds_of_one_architecture():
    pynn.utils.set_random_seed(6)
    a = _sequential()
    _fit(a, "seq")
    b = _sequential()      # same architecture, other default layer names
    assert list(a.get_weight_paths()) != list(b.get_weight_paths())
    b.set_state(a.get_state())
    assert _bytes(a) == _bytes(b)
    assert b.optimizer.iterations == 5
    _fit(a, "seq", seed=1)
    _fit(b, "seq", seed=1)
    assert _bytes(a) == _bytes(b)
    # another architecture is refused, naming a weight, and left as it was
    other = pynn.Sequential([pynn.Input((6,)), L.Dense(9), L.Dense(3)])
    before = _bytes(other)
    with pytest.raises(ValueError, match=r"weight '\w+/kernel' of the model is missing"):
        other.set_state(a.get_state())
    assert _bytes(other) == before
    with pytest.raises(TypeError, match="state: expected the dict of get_state"):
        other.set_state("weights.safetensors")
    with pytest.raises(ValueError, match="expected the keys"):
        other.set_state({"weights": {}, "extra": 1})


# --- pickling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["seq", "two_io", "nested"])
def test_pickled_model_continues_training_bitwise(kind):
    make = {"seq": _sequential, "two_io": _two_io, "nested": _nested}[kind]
    pynn.utils.set_random_seed(11)
    model = make()
    _fit(model, kind, seed=1)
    blob = pickle.dumps(model)
    pynn.utils.set_random_seed(99)
    before = _random.next_seed()
    pynn.utils.set_random_seed(99)
    copy = pickle.loads(blob)
    assert _random.next_seed() == before     # unpickling drew nothing from pynn's stream
    assert type(copy) is type(model) and copy is not model
    assert copy.get_config() == model.get_config()
    assert copy.get_compile_config() == model.get_compile_config()
    assert _bytes(copy) == _bytes(model)
    s0, s1 = model.optimizer.get_state(), copy.optimizer.get_state()
    assert s0["iterations"] == s1["iterations"] > 0
    assert s0["learning_rate"] == s1["learning_rate"] and s0["u_product"] == s1["u_product"]
    assert {k: [a.tobytes() for a in v] for k, v in s0["slots"].items()} == \
        {k: [a.tobytes() for a in v] for k, v in s1["slots"].items()}
    # one more epoch on both (same shuffling seed): identical, and really trained
    trained = _bytes(model)
    _fit(model, kind, seed=2)
    _fit(copy, kind, seed=2)
    assert _bytes(copy) == _bytes(model)
    assert _bytes(model) != trained


def test_pickling_an_unbuilt_or_uncompiled_model():
    m = pynn.Sequential([L.Dense(3), L.Dense(2)])
    m.compile(optimizer="sgd", loss="mse")
    copy = pickle.loads(pickle.dumps(m))
    assert not copy.built and copy.compiled
    assert copy.get_compile_config() == m.get_compile_config()
    built = pynn.Sequential([pynn.Input((3,)), L.Dense(2)])
    copy = pickle.loads(pickle.dumps(built))
    assert not copy.compiled and _bytes(copy) == _bytes(built)


def test_pickling_a_model_with_a_users_layer():
    pynn.utils.set_random_seed(12)
    m = pynn.Sequential([pynn.Input((4,)), L.Dense(3), Doubler(name="twice")])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    copy = pickle.loads(pickle.dumps(m))
    assert isinstance(copy.layers[1], Doubler)
    assert copy.predict(x, verbose=0).tobytes() == m.predict(x, verbose=0).tobytes()
    np.testing.assert_allclose(m.predict(x, verbose=0), 2 * (x @ m.layers[0].kernel.value
                                                             + m.layers[0].bias.value), rtol=1e-6)


def test_pickling_refuses_what_cannot_be_rebuilt():
    class Net(pynn.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net.build((None, 3))
    with pytest.raises(TypeError, match="subclassed model"):
        pickle.dumps(net)
    inp = pynn.Input((3,))
    lam = pynn.Model(inp, L.Lambda(lambda t: t)(L.Dense(2)(inp)))
    with pytest.raises(TypeError, match="Lambda layer"):
        pickle.dumps(lam)


def test_pickling_refuses_a_diverged_model():
    m = _sequential()
    m.weights[0].value[0, 0] = np.nan
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        pickle.dumps(m)
