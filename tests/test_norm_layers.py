"""LayerNormalization, GroupNormalization, UnitNormalization, GaussianNoise, GaussianDropout,
AlphaDropout: the layer_norm, group_norm and noise graph ops against their NumPy twins
(pynn.reference.normalization), the twins against finite differences, and the layers against
Keras 3 itself on the same inputs and weights.

Tolerances. Forward, float32 engine against the float64 twin: the statistics are summed in
double and each output is a few float32 operations on O(1) values, so 1e-5 absolute (on
standardised outputs of size ~1-3). Central differences (float64, h = 1e-6) err by about
1e-10: rtol 1e-5 / atol 1e-7. The engine's gradients are float32 sums over at most a few
hundred terms: 2e-4 of the largest entry (a wrong or missing term is off by O(1)). Against
Keras (float32 on torch): 1e-5 absolute on standardised values.
"""
from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import case_rng, to_numpy
from test_ref_dense import numeric_grad

import pynn
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import graph as ref_graph
from pynn.reference import normalization as ref_norm


class Case:
    def __init__(self, op, shape, attrs, pshape):
        self.op, self.shape, self.attrs, self.pshape = op, shape, attrs, pshape

    def __repr__(self):
        return f"{self.op}{self.shape}{self.attrs}"

    def params(self, rng):
        n = int(self.attrs.get("scale", True)) + int(self.attrs.get("center", True))
        return [1.0 + 0.5 * rng.standard_normal(self.pshape) for _ in range(n)]

    def spec(self, ps):
        spec = GraphSpec()
        x = spec.add_input(self.shape)
        pids = [spec.add_param(ParamRef(p.astype(np.float32), f"p{k}")) for k, p in
                enumerate(ps)]
        spec.outputs = spec.add_node(self.op, [x], [self.shape], pids, self.attrs, self.op)
        return spec


CASES = [
    Case("layer_norm", (7,), {"axes": [-1]}, (7,)),
    Case("layer_norm", (1,), {"axes": [0]}, (1,)),                     # one member: y = beta
    Case("layer_norm", (3, 5), {"axes": [-1], "epsilon": 1e-5}, (5,)),
    Case("layer_norm", (3, 5), {"axes": [0]}, (3,)),                   # a leading axis
    Case("layer_norm", (2, 3, 4), {"axes": [0, 2]}, (2, 4)),           # non-adjacent axes
    Case("layer_norm", (4, 3, 2), {"axes": [1, 2], "center": False}, (3, 2)),
    Case("layer_norm", (33,), {"axes": [0], "scale": False, "center": False}, (33,)),
    Case("group_norm", (8,), {"groups": 2, "axis": -1}, (8,)),
    Case("group_norm", (5, 6), {"groups": 3, "axis": -1}, (6,)),
    Case("group_norm", (4, 3, 6), {"groups": 6, "axis": 2}, (6,)),     # one channel per group
    Case("group_norm", (6, 5), {"groups": 2, "axis": 0, "scale": False}, (6,)),  # channels first
    Case("group_norm", (2, 4, 3), {"groups": 1, "axis": 1, "center": False}, (4,)),
]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_matches_twin(case, batch):
    rng = case_rng("fwd", repr(case), batch)
    ps = case.params(rng)
    x = (2.0 + 3.0 * rng.standard_normal((batch,) + case.shape)).astype(np.float32)
    spec = case.spec(ps)
    got = np.empty_like(x)
    spec.to_core().predict([x], [got])
    want = ref_graph.predict(spec, [x])[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_twin_gradients_match_finite_differences(case):
    """d <R, y> / d (x, gamma, beta) from the twin's backward and from central differences."""
    rng = case_rng("fd", repr(case))
    arrays = [rng.standard_normal((2,) + case.shape)] + case.params(rng)
    node = type("N", (), {"attrs": case.attrs})()
    forward, backward = ref_graph.OPS[case.op]

    def project():
        return forward(node, arrays[:1], arrays[1:], None)

    y, saved = project()
    R = rng.standard_normal(y.shape)
    dxs, dps = backward(node, saved, R)
    grads = dxs + dps
    assert len(grads) == len(arrays)
    for a, g in zip(arrays, grads):
        assert g.shape == a.shape
        num = numeric_grad(lambda: float((R * project()[0]).sum()), a)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_core_gradients_match_twin(case):
    rng = case_rng("core", repr(case))
    ps = case.params(rng)
    x = rng.standard_normal((3,) + case.shape).astype(np.float32)
    spec = case.spec(ps)
    out, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    seed = rng.standard_normal(out[0].shape).astype(np.float32)
    _, want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
    got = spec.to_core().input_gradient([x], [seed])[0]
    assert np.abs(got - want[0]).max() <= 2e-4 * max(np.abs(want[0]).max(), 1e-3)
    if not ps:
        return
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    loss = ("mean_squared_error", False, 1.0, 1.0)
    g = spec.to_core([loss])
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    g.train_step([x], [target])
    _, _, want, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [loss])
    for k, b in enumerate(want):
        a = g.get_grad(k)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 2e-4 * np.abs(b).max(), k


def test_results_do_not_depend_on_threads_and_rows_are_independent():
    rng = case_rng("threads")
    x = rng.standard_normal((40, 16, 64)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((16, 64)), L.LayerNormalization(),
                             L.GroupNormalization(8), L.Dense(1)])
    model.compile("sgd", "mse")
    before = pynn.get_num_threads()
    runs = []
    try:
        for nt in (1, 2):
            pynn.set_num_threads(nt)
            runs.append(model.predict(x, verbose=0))
    finally:
        pynn.set_num_threads(before)
    assert np.array_equal(runs[0], runs[1])
    assert np.array_equal(model.predict(x[3:4], verbose=0), runs[0][3:4])


def test_non_contiguous_inputs():
    rng = case_rng("strided")
    base = rng.standard_normal((6, 10, 8)).astype(np.float32)
    x = base[::2, :, ::2]                        # strided view
    for layer in (L.LayerNormalization(axis=[1, 2]), L.GroupNormalization(2),
                  L.UnitNormalization(axis=1)):
        np.testing.assert_array_equal(layer(x), layer(np.ascontiguousarray(x)))


# --- against Keras 3 -------------------------------------------------------------------------


KERAS_CASES = [
    ("LayerNormalization", {}, (5, 6)),
    ("LayerNormalization", {"axis": [1, 2], "epsilon": 1e-5}, (3, 4)),
    ("LayerNormalization", {"axis": -1, "center": False}, (4, 3)),  # (Keras on torch fails
    # on non-trailing axes; those are checked against the twin above)
    ("GroupNormalization", {"groups": 2}, (4, 6)),
    ("GroupNormalization", {"groups": -1, "axis": -1}, (3, 4)),
    ("GroupNormalization", {"groups": 3, "axis": 1, "scale": False}, (6, 2)),
    ("UnitNormalization", {}, (5, 6)),
    ("UnitNormalization", {"axis": [1, 2]}, (2, 3)),
]


@pytest.mark.parametrize("name,kwargs,shape", KERAS_CASES)
def test_layers_match_keras(keras, name, kwargs, shape):
    rng = case_rng("keras", name, repr(kwargs))
    x = (1.0 + 2.0 * rng.standard_normal((4,) + shape)).astype(np.float32)
    x[0] = 0.0                                    # a constant sample, and a zero vector
    ours = getattr(L, name)(**kwargs)
    theirs = getattr(keras.layers, name)(**kwargs)
    theirs.build((None,) + shape)
    ours.build((None,) + shape)
    ours.built = True
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in ours.get_weights()]
    assert [w.shape for w in weights] == [tuple(v.shape) for v in theirs.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    want = to_numpy(theirs(x))
    np.testing.assert_allclose(ours(x), want, rtol=0, atol=1e-5)
    keys = [k for k in ("axis", "epsilon", "center", "scale", "groups")
            if k in theirs.get_config()]
    assert {k: ours.get_config()[k] for k in keys} == {k: theirs.get_config()[k] for k in keys}


def test_alpha_dropout_constants_match_keras(keras):
    """The affine map (a, b) and the dropped value, from Keras's own output at rate 0.3."""
    layer = keras.layers.AlphaDropout(0.3, seed=1)
    x = np.linspace(-1, 1, 4000, dtype=np.float32).reshape(40, 100)
    y = to_numpy(layer(x, training=True))
    a, b, ap = ref_norm.alpha_dropout_affine(0.3)
    kept = np.isclose(y, a * x + b, atol=1e-6)
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y[~kept], a * ap + b, atol=1e-6)


# --- noise -----------------------------------------------------------------------------------
NOISE = [("gaussian_noise", 0.7), ("gaussian_dropout", 0.4), ("alpha_dropout", 0.25),
         ("alpha_dropout", 0.0)]


@pytest.mark.parametrize("kind,value", NOISE)
def test_noise_op_matches_twin_with_the_same_draws(kind, value):
    rng = case_rng("noise", kind, value)
    shape = (5, 7)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    target = rng.standard_normal((3,) + shape).astype(np.float32)
    spec = GraphSpec()
    t = spec.add_input(shape)
    spec.outputs = spec.add_node("noise", [t], [shape], [],
                                 {"kind": kind, "value": value, "seed": 1234}, "n")
    loss = ("mean_squared_error", False, 1.0, 1.0)
    g = spec.to_core([loss])
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    for step in range(2):          # the draws of step s use stream s * 4096 + node index
        got = g.train_step([x], [target], want_outputs=True)[3][0]
        draws = ref_norm.noise_draws(kind, 1234, step * 4096 + 0, x.shape)
        want, _ = ref_graph.forward(spec, [x], training=True, dropout_masks={0: draws})
        np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)
        if kind != "alpha_dropout" or value == 0:
            assert not np.array_equal(got, x) or value == 0
    # gradient: through the same multiplier
    seed = rng.standard_normal(x.shape).astype(np.float32)
    assert np.array_equal(g.input_gradient([x], [seed])[0], seed)   # inference: identity


def test_noise_statistics_and_inference_identity():
    x = np.full((200, 100), 2.0, np.float32)
    for layer, std in ((L.GaussianNoise(0.5, seed=3), 0.5), (L.GaussianDropout(0.2, seed=3),
                                                             2.0 * 0.5)):
        assert np.array_equal(layer(x), x)            # inference is the identity
        spec = GraphSpec()
        t = spec.add_input((100,))
        spec.outputs = layer._emit(spec, [t])
        g = spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
        g.set_optimizer("sgd", {"learning_rate": 0.0})
        y = g.train_step([x], [x], want_outputs=True)[3][0]
        # 20000 draws: the sample mean is within 5 standard errors (std / sqrt(n)) of 2, the
        # sample std within 5 of its own (about std / sqrt(2 n))
        n = y.size
        assert abs(y.mean() - 2.0) < 5 * std / np.sqrt(n)
        assert abs(y.std() - std) < 5 * std / np.sqrt(2 * n)


def test_noise_twin_gradient():
    rng = case_rng("noise-fd")
    x = rng.standard_normal((2, 6))
    for kind, value in NOISE:
        draws = ref_norm.noise_draws(kind, 5, 0, x.shape)
        y, mult = ref_norm.noise_forward(x, kind, value, draws)
        R = rng.standard_normal(y.shape)

        def f(kind=kind, value=value, draws=draws, R=R):
            return float((R * ref_norm.noise_forward(x, kind, value, draws)[0]).sum())

        num = numeric_grad(f, x)
        np.testing.assert_allclose(ref_norm.noise_backward(R, mult), num, rtol=1e-5,
                                   atol=1e-7)


def test_seeded_noise_layers_train_the_same_on_one_and_two_threads():
    rng = case_rng("fit")
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    results = []
    before = pynn.get_num_threads()
    try:
        for nt in (1, 2):
            pynn.set_num_threads(nt)
            pynn.utils.set_random_seed(7)
            model = pynn.Sequential([pynn.Input((8,)), L.GaussianNoise(0.3),
                                     L.Dense(16, activation="selu"), L.AlphaDropout(0.2),
                                     L.GaussianDropout(0.3), L.LayerNormalization(),
                                     L.Dense(1)])
            model.compile("adam", "mse")
            h = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
            results.append((h.history["loss"], model.get_weights()))
    finally:
        pynn.set_num_threads(before)
    assert results[0][0] == results[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(results[0][1], results[1][1]))


# --- configs, save and load ------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    rng = case_rng("save")
    model = pynn.Sequential([
        pynn.Input((4, 6)), L.LayerNormalization(axis=[1, 2], epsilon=1e-4),
        L.GroupNormalization(groups=3, center=False), L.UnitNormalization(),
        L.GaussianNoise(0.1, seed=1), L.GaussianDropout(0.1), L.AlphaDropout(0.1),
        L.Flatten(), L.Dense(2)])
    model.compile("adam", "mse")
    x = rng.standard_normal((8, 4, 6)).astype(np.float32)
    model.fit(x, rng.standard_normal((8, 2)).astype(np.float32), epochs=1, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = pynn.models.load_model(path)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(model.layers, back.layers):
        assert a.get_config() == b.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match="groups"):
        L.GroupNormalization(groups=4)(np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match="batch axis"):
        L.LayerNormalization(axis=0)(np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        L.LayerNormalization(axis=3)(np.zeros((2, 6), np.float32))
    with pytest.raises(TypeError, match="axis"):
        L.LayerNormalization(axis="x")
    with pytest.raises(ValueError, match="rate"):
        L.AlphaDropout(1.0)
    with pytest.raises(ValueError, match="stddev"):
        L.GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="epsilon"):
        L.LayerNormalization(epsilon=0.0)


# --- ActivityRegularization ------------------------------------------------------------------
def test_activity_penalty_gradient_matches_finite_differences():
    rng = case_rng("act-fd")
    x = rng.standard_normal((3, 4))
    g = ref_norm.activity_penalty(x, 0.3, 0.2)[1]
    num = numeric_grad(lambda: float(ref_norm.activity_penalty(x, 0.3, 0.2)[0]), x)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


def test_activity_regularization_core_gradient_matches_twin():
    rng = case_rng("act-core")
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    spec = GraphSpec()
    t = spec.add_input((3, 4))
    spec.outputs = L.ActivityRegularization(0.1, 0.05)._emit(spec, [t])
    out, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    seed = rng.standard_normal(out[0].shape).astype(np.float32)
    _, want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
    got = spec.to_core().input_gradient([x], [seed])[0]
    np.testing.assert_allclose(got, want[0], rtol=1e-6, atol=1e-7)


def test_activity_regularization_loss_and_training_match_keras(keras):
    rng = case_rng("act-keras")
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)

    def build(mod):
        inp = mod.Input((5,))
        h = mod.layers.Dense(4, activation="tanh")(inp)
        h = mod.layers.ActivityRegularization(l1=0.05, l2=0.1)(h)
        return mod.Model(inp, mod.layers.Dense(2)(h))

    ours, theirs = build(pynn), build(keras)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    ours.compile(pynn.optimizers.SGD(0.1), "mse")
    theirs.compile(keras.optimizers.SGD(0.1), "mse")
    # float32 sums of 16 x 4 penalties on both sides: 1e-5 relative
    np.testing.assert_allclose(ours.evaluate(x, y, batch_size=16, verbose=0),
                               theirs.evaluate(x, y, batch_size=16, verbose=0), rtol=1e-5)
    for _ in range(2):
        ours.train_on_batch(x, y)
        theirs.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), [to_numpy(v.value) for v in theirs.weights]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    layer = L.ActivityRegularization(l1=0.5)
    assert L.deserialize(L.serialize(layer)).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="l2"):
        L.ActivityRegularization(l2=-1.0)
