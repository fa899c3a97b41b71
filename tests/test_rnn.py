"""Recurrent networks and sequences: the rnn, embedding and slice graph ops and the layers on
them (SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed, Embedding, Masking).

  * the C++ op (float32) against its NumPy twin (pynn.reference.rnn, float64), forward and
    backward, on random shapes: T = 1, batch 1, units around the SIMD widths (7, 8, 9, 15,
    16, 17, 33), masks, go_backwards, return_state, both GRU variants;
  * the twin's gradients against central differences (float64);
  * Keras 3 itself (torch backend): the same weights give the same outputs, masks included;
  * training is bitwise identical on 1 and 2 threads; a row alone equals that row in a batch;
  * configs and .safetensors files round-trip; bad arguments name themselves.

Tolerances. Forward: float32 against float64 through T steps of sums of F + u products of
O(1) terms squashed by tanh/sigmoid (contractions): 2e-5 absolute over a few dozen steps
(float32 rounding of a sum of ~50 terms is ~50 * 6e-8 = 3e-6, far below; a wrong gate or a
swapped weight block moves outputs by ~0.1). Finite differences in float64 with h = 1e-6:
error ~1e-10, so rtol 1e-5 / atol 1e-7. The C++ gradients (float32) against the twin's
(float64): 2e-4 of the largest entry, as in test_conv.py; a missing step or term is orders of
magnitude bigger. Keras: both float32, the same formulas: 1e-5.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from test_ref_dense import numeric_grad

import pynn
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import graph as ref_graph
from pynn.reference import rnn as ref_rnn

GATES = {"simple": 1, "lstm": 4, "gru": 3}
# Keras's torch variables implement __array__ without NumPy 2's copy keyword (Keras's issue,
# not ours); everything else still turns warnings into errors.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


class Run:
    dtype = np.float64


class Case:
    """One rnn node: cell, sizes and attributes; `masked` adds a random 0/1 mask input."""

    def __init__(self, cell, T, F, u, masked=False, **attrs):
        self.cell, self.T, self.F, self.u, self.masked = cell, T, F, u, masked
        self.attrs = {"cell": cell, "units": u, **attrs}
        self.name = f"{cell}_T{T}_F{F}_u{u}{'_masked' if masked else ''}_" + "_".join(
            f"{k}" for k, v in attrs.items() if v is True)

    def __repr__(self):
        return self.name

    def params(self, rng):
        g = GATES[self.cell] * self.u
        ps = [rng.standard_normal((self.F, g)) * 0.5, rng.standard_normal((self.u, g)) * 0.5]
        if self.attrs.get("use_bias", True):
            two = self.cell == "gru" and self.attrs.get("reset_after", True)
            ps.append(rng.standard_normal((2, g) if two else (g,)) * 0.3)
        return [p.astype(np.float32).astype(np.float64) for p in ps]

    def inputs(self, rng, n):
        xs = [rng.standard_normal((n, self.T, self.F)).astype(np.float32).astype(np.float64)]
        if self.masked:
            m = (rng.random((n, self.T)) > 0.4).astype(np.float64)
            m[0, -1] = 0.0          # a masked last step
            xs.append(m)
        return xs

    def node(self):
        return type("N", (), {"attrs": self.attrs})()

    def spec(self, ps, xs):
        spec = GraphSpec()
        tids = [spec.add_input(x.shape[1:]) for x in xs]
        pids = [spec.add_param(ParamRef(np.ascontiguousarray(p, dtype=np.float32), f"p{k}"))
                for k, p in enumerate(ps)]
        y, _ = ref_rnn.OPS["rnn"][0](self.node(), [x[:1] for x in xs], ps, Run())
        spec.outputs = spec.add_node("rnn", tids, [y.shape[1:]], pids, self.attrs, self.name)
        return spec


CASES = [
    Case("lstm", 5, 3, 4),
    Case("lstm", 1, 2, 3, return_sequences=True),                 # T = 1
    Case("lstm", 6, 4, 8, return_sequences=True, return_state=True),
    Case("lstm", 4, 3, 9, go_backwards=True, return_state=True),
    Case("lstm", 7, 2, 17, masked=True, return_sequences=True),
    Case("lstm", 5, 3, 16, masked=True, go_backwards=True, return_sequences=True,
         time_order=True, zero_output_for_mask=True),
    Case("lstm", 4, 3, 7, use_bias=False, activation="relu", recurrent_activation="hard_sigmoid"),
    Case("simple", 6, 3, 15, return_sequences=True),
    Case("simple", 1, 1, 1),
    Case("simple", 5, 2, 33, masked=True, return_state=True, zero_output_for_mask=True),
    Case("gru", 5, 3, 4, return_sequences=True),
    Case("gru", 1, 4, 16, return_state=True),
    Case("gru", 6, 2, 9, masked=True, go_backwards=True, return_sequences=True),
    Case("gru", 5, 3, 8, reset_after=False, return_sequences=True),
    Case("gru", 4, 2, 17, reset_after=False, masked=True, return_state=True),
    Case("gru", 3, 2, 5, use_bias=False),
]


def _feed(xs):
    return [np.ascontiguousarray(x, dtype=np.float32) for x in xs]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_core_forward_matches_twin(case, batch):
    rng = _rng("fwd", case.name, batch)
    ps, xs = case.params(rng), case.inputs(rng, batch)
    spec = case.spec(ps, xs)
    want = ref_graph.predict(spec, xs)[0]
    got = np.empty(want.shape, np.float32)
    spec.to_core().predict(_feed(xs), [got])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


# finite differences cost O(parameters) forward passes: the small cases carry every feature
FD_CASES = [c for c in CASES if c.u <= 9 and c.T <= 6] + [
    Case("lstm", 4, 2, 3, masked=True, return_sequences=True),
    Case("lstm", 4, 2, 3, masked=True, go_backwards=True, return_sequences=True,
         time_order=True, zero_output_for_mask=True),
    Case("simple", 4, 2, 3, masked=True, return_state=True, zero_output_for_mask=True),
    Case("gru", 4, 2, 3, reset_after=False, masked=True, return_state=True),
]


@pytest.mark.parametrize("case", FD_CASES, ids=repr)
def test_twin_gradients_match_finite_differences(case):
    rng = _rng("fd", case.name)
    ps, xs = case.params(rng), case.inputs(rng, 2)
    forward, backward = ref_graph.OPS["rnn"]
    y, saved = forward(case.node(), xs, ps, Run())
    R = rng.standard_normal(y.shape)
    dxs, dps = backward(case.node(), saved, R)

    def f():
        return float((R * forward(case.node(), xs, ps, Run())[0]).sum())

    np.testing.assert_allclose(dxs[0], numeric_grad(f, xs[0]), rtol=1e-5, atol=1e-7)
    assert len(dps) == len(ps)
    for p, g in zip(ps, dps):
        assert g.shape == p.shape
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-5, atol=1e-7)


def _param_grads(g, nparams, xs, ys):
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    g.train_step(xs, ys)
    return [g.get_grad(p) for p in range(nparams)]


MSE = ("mean_squared_error", False, 1.0, 1.0)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_core_gradients_match_twin(case):
    rng = _rng("core", case.name)
    ps, xs = case.params(rng), case.inputs(rng, 3)
    spec = case.spec(ps, xs)
    out, cache = ref_graph.forward(spec, xs)
    seed = rng.standard_normal(out[0].shape)
    _, want = ref_graph.backward(spec, cache, [seed])
    got = spec.to_core().input_gradient(_feed(xs), [seed.astype(np.float32)])[0]
    assert np.abs(got - want[0]).max() <= 2e-4 * np.abs(want[0]).max()
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    got = _param_grads(spec.to_core([MSE]), len(ps), _feed(xs), [target])
    _, _, want, _ = ref_graph.gradients(spec, xs, [target], [MSE])
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 2e-4 * np.abs(b).max(), (case.name, k)


def test_non_contiguous_inputs_give_the_same_outputs():
    case = Case("lstm", 6, 4, 8, return_sequences=True)
    rng = _rng("strided")
    ps, xs = case.params(rng), case.inputs(rng, 4)
    want = ref_graph.predict(case.spec(ps, xs), xs)[0]
    inp = pynn.Input((6, 4))
    layer = L.LSTM(8, return_sequences=True)
    model = pynn.Model(inp, layer(inp))
    layer.set_weights([p.astype(np.float32) for p in ps])
    wide = np.zeros((4, 12, 8), np.float32)
    wide[:, ::2, ::2] = xs[0]
    strided = wide[:, ::2, ::2]
    fortran = np.asfortranarray(xs[0].astype(np.float32))
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    got = model.predict(np.ascontiguousarray(strided), verbose=0)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    np.testing.assert_array_equal(model.predict(strided, verbose=0), got)
    np.testing.assert_array_equal(model.predict(fortran, verbose=0), got)


# --- dropout ---------------------------------------------------------------------------------
DROP_CASES = [Case(cell, 5, 3, 4, return_sequences=True, dropout=0.3, recurrent_dropout=0.4,
                   seed=7, **extra)
              for cell, extra in [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}),
                                  ("simple", {})]]


def _drop_masks(n, case, stream):
    """The masks the op draws: the dropout op's masks of (seed, stream) over (n, F) inputs
    and of (seed + 0x5bd1e995, stream) over (n, u) states; an lstm or gru with
    recurrent_dropout has one of each per gate, drawn as one (n, G, F) and one (n, G, u) array."""
    from pynn import _core

    a = case.attrs
    gates = {"lstm": 4, "gru": 3}.get(case.cell)
    per_gate = (gates,) if gates and a["recurrent_dropout"] > 0 else ()
    mx = _core.dropout_forward(np.ones((n, *per_gate, case.F), np.float32),
                               a.get("dropout", 0.0), a["seed"], stream)[1]
    mh = _core.dropout_forward(np.ones((n, *per_gate, case.u), np.float32),
                               a["recurrent_dropout"], a["seed"] + 0x5bd1e995, stream)[1]
    return {"x": mx.astype(np.float64), "h": mh.astype(np.float64)}


@pytest.mark.parametrize("case", DROP_CASES, ids=repr)
def test_dropout_gradients_match_twin_with_the_same_masks(case):
    rng = _rng("drop", case.name)
    ps, xs = case.params(rng), case.inputs(rng, 3)
    spec = case.spec(ps, xs)
    out, _ = ref_graph.forward(spec, xs)
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    got = _param_grads(spec.to_core([MSE]), len(ps), _feed(xs), [target])
    # the first training step of a graph draws from stream 0 (step 0 * 4096 + node 0)
    masks = _drop_masks(3, case, 0)
    assert 0 < (masks["x"] == 0).sum() < masks["x"].size
    _, _, want, _ = ref_graph.gradients(spec, xs, [target], [MSE], dropout_masks={0: masks})
    for a, b in zip(got, want):
        assert np.abs(a - b).max() <= 2e-4 * np.abs(b).max()
    _, _, plain, _ = ref_graph.gradients(spec, xs, [target], [MSE])
    assert np.abs(plain[0] - want[0]).max() > 1e-2 * np.abs(want[0]).max()   # masks matter
    # inference ignores dropout
    y = np.empty(out[0].shape, np.float32)
    spec.to_core().predict(_feed(xs), [y])
    np.testing.assert_allclose(y, out[0], atol=2e-5)


@pytest.mark.parametrize("case", DROP_CASES[:3], ids=repr)
def test_twin_dropout_gradients_match_finite_differences(case):
    rng = _rng("drop_fd", case.name)
    ps, xs = case.params(rng), case.inputs(rng, 2)
    run = type("R", (), {"dtype": np.float64, "training": True, "node_index": 0,
                         "dropout_masks": {0: _drop_masks(2, case, 5)}})()
    forward, backward = ref_graph.OPS["rnn"]
    y, saved = forward(case.node(), xs, ps, run)
    R = rng.standard_normal(y.shape)
    dxs, dps = backward(case.node(), saved, R)

    def f():
        return float((R * forward(case.node(), xs, ps, run)[0]).sum())

    np.testing.assert_allclose(dxs[0], numeric_grad(f, xs[0]), rtol=1e-5, atol=1e-7)
    for p, g in zip(ps, dps):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-5, atol=1e-7)


# --- embedding and slice ---------------------------------------------------------------------
def _embedding_spec(table, shape):
    spec = GraphSpec()
    x = spec.add_input(shape)
    p = spec.add_param(ParamRef(table.astype(np.float32), "emb"))
    spec.outputs = spec.add_node("embedding", [x], [shape + (table.shape[1],)], [p],
                                 {"input_dim": table.shape[0], "output_dim": table.shape[1]})
    return spec


@pytest.mark.parametrize("vocab,dim,shape,n", [(5, 3, (4,), 3), (1, 1, (1,), 1),
                                               (50, 17, (3, 5), 2), (7, 64, (9,), 40)])
def test_embedding_gathers_and_scatter_adds(vocab, dim, shape, n):
    rng = _rng("emb", vocab, dim)
    table = rng.standard_normal((vocab, dim))
    x = rng.integers(0, vocab, (n,) + shape).astype(np.float32)
    x.flat[0] = x.flat[-1]                           # a repeated index: its rows add up
    spec = _embedding_spec(table, shape)
    got = np.empty((n,) + shape + (dim,), np.float32)
    spec.to_core().predict([x], [got])
    np.testing.assert_array_equal(got, table.astype(np.float32)[x.astype(int)])
    target = rng.standard_normal(got.shape).astype(np.float32)
    (dw,) = _param_grads(spec.to_core([MSE]), 1, [x], [target])
    _, _, (want,), _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [MSE])
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-6)
    # the twin's gradient against differences of 0.5 * sum(R * y)
    R = rng.standard_normal(got.shape)
    t64 = table.copy()

    def f():
        return float((R * ref_rnn.embedding_forward(x, t64)).sum())

    np.testing.assert_allclose(ref_rnn.embedding_backward(x, t64.shape, R), numeric_grad(f, t64),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad", [-1.0, 5.0, 2.5, np.nan])
def test_embedding_rejects_indices_outside_the_table(bad):
    spec = _embedding_spec(np.ones((5, 2)), (3,))
    x = np.array([[0, 1, bad]], np.float32)
    with pytest.raises(ValueError, match="index .* not an integer in \\[0, input_dim=5\\)"):
        spec.to_core().predict([x], [np.empty((1, 3, 2), np.float32)])


def test_slice_op_forward_and_backward():
    spec = GraphSpec()
    x = spec.add_input((5, 3))
    spec.outputs = spec.add_node("slice", [x], [(2, 3)], attrs={"begin": 2, "size": 2})
    xv = _rng("slice").standard_normal((4, 5, 3)).astype(np.float32)
    got = np.empty((4, 2, 3), np.float32)
    g = spec.to_core()
    g.predict([xv], [got])
    np.testing.assert_array_equal(got, xv[:, 2:4])
    seed = np.ones((4, 2, 3), np.float32)
    dx = g.input_gradient([xv], [seed])[0]
    want = np.zeros_like(xv)
    want[:, 2:4] = 1
    np.testing.assert_array_equal(dx, want)


# --- Keras 3 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _kout(y):
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(t.detach().cpu()) if hasattr(t, "detach") else np.asarray(t) for t in ys]


def _jitter(ws, rng):
    return [w + (rng.standard_normal(w.shape) * 0.3).astype(np.float32) for w in ws]


KERAS_LAYERS = [
    ("SimpleRNN", {}), ("SimpleRNN", {"return_sequences": True, "go_backwards": True}),
    ("LSTM", {}), ("LSTM", {"return_state": True}),
    ("LSTM", {"return_sequences": True, "go_backwards": True, "unit_forget_bias": False}),
    ("GRU", {"return_sequences": True}), ("GRU", {"return_state": True, "go_backwards": True}),
    ("GRU", {"reset_after": False, "return_sequences": True}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
]


@pytest.mark.parametrize("name,kw", KERAS_LAYERS, ids=lambda v: str(v))
def test_recurrent_layers_match_keras(keras, name, kw):
    rng = _rng("keras", name, sorted(kw.items()))
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    kl = getattr(keras.layers, name)(4, **kw)
    kl(x)
    ws = _jitter(kl.get_weights(), rng)
    kl.set_weights(ws)
    pl = getattr(L, name)(4, **kw)
    inp = pynn.Input((6, 5))
    model = pynn.Model(inp, pl(inp))
    assert [w.shape for w in pl.get_weights()] == [w.shape for w in ws]
    pl.set_weights(ws)
    got = model.predict(x, verbose=0)
    got = got if isinstance(got, list) else [got]
    want = _kout(kl(x))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_lstm_initial_weights_follow_keras(keras):
    pynn.utils.set_random_seed(0)
    layer = L.LSTM(3)
    layer.build((None, 4, 2))
    kernel, recurrent, bias = layer.get_weights()
    np.testing.assert_array_equal(bias, np.r_[np.zeros(3), np.ones(3), np.zeros(6)])
    # orthogonal recurrent kernel blocks: U U^T = I for the (3, 12) matrix's rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(3), atol=1e-5)
    assert kernel.shape == (2, 12)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_matches_keras(keras, merge_mode):
    rng = _rng("bidi", merge_mode)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    kl = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True),
                                    merge_mode=merge_mode)
    kl(x)
    ws = _jitter(kl.get_weights(), rng)
    kl.set_weights(ws)
    pl = L.Bidirectional(L.GRU(4, return_sequences=True), merge_mode=merge_mode)
    inp = pynn.Input((5, 3))
    model = pynn.Model(inp, pl(inp))
    pl.set_weights(ws)
    got = model.predict(x, verbose=0)
    for a, b in zip(got if isinstance(got, list) else [got], _kout(kl(x))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bidirectional_lstm_return_state_matches_keras(keras):
    rng = _rng("bidi_state")
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    kl = keras.layers.Bidirectional(keras.layers.LSTM(3, return_state=True))
    kl(x)
    ws = _jitter(kl.get_weights(), rng)
    kl.set_weights(ws)
    pl = L.Bidirectional(L.LSTM(3, return_state=True))
    inp = pynn.Input((4, 3))
    model = pynn.Model(inp, pl(inp))
    pl.set_weights(ws)
    got = model.predict(x, verbose=0)
    want = _kout(kl(x))
    assert len(got) == len(want) == 5
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple", "bidirectional", "masking"])
@pytest.mark.parametrize("seqs", [False, True])
def test_masks_match_keras(keras, kind, seqs):
    rng = _rng("mask", kind, seqs)
    ids = rng.integers(1, 9, (4, 7)).astype(np.int32)
    ids[0, 5:] = 0                   # padding at the end, at the start, and in the middle
    ids[1, :3] = 0
    ids[2, 3] = 0
    feats = np.where(ids[..., None] == 0, 0.0, rng.standard_normal((4, 7, 3))).astype(np.float32)

    def build(lib, layers):
        if kind == "masking":
            inp = lib.Input((7, 3))
            h = layers.Masking(0.0)(inp)
        else:
            inp = lib.Input((7,), dtype="int32")
            h = layers.Embedding(10, 3, mask_zero=True)(inp)
        rnn = {"lstm": layers.LSTM, "gru": layers.GRU, "simple": layers.SimpleRNN,
               "masking": layers.LSTM}.get(kind)
        if rnn is None:
            h = layers.Bidirectional(layers.LSTM(4, return_sequences=seqs))(h)
        else:
            h = rnn(4, return_sequences=seqs)(h)
        return lib.Model(inp, h)

    km, pm = build(keras, keras.layers), build(pynn, L)
    ws = _jitter(km.get_weights(), rng)
    km.set_weights(ws)
    pm.set_weights(ws)
    x = feats if kind == "masking" else ids
    want = _kout(km(x))[0]
    np.testing.assert_allclose(pm.predict(x.astype(np.float32), verbose=0), want, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_global_average_pooling_matches_keras(keras, keepdims):
    rng = _rng("gap", keepdims)
    ids = rng.integers(1, 9, (3, 6)).astype(np.int32)
    ids[0, 2:] = 0
    ids[1, :4] = 0

    def build(lib, layers):
        inp = lib.Input((6,))
        h = layers.Embedding(10, 4, mask_zero=True)(inp)
        h = layers.GRU(5, return_sequences=True)(h)
        return lib.Model(inp, layers.GlobalAveragePooling1D(keepdims=keepdims)(h))

    km, pm = build(keras, keras.layers), build(pynn, L)
    ws = _jitter(km.get_weights(), rng)
    km.set_weights(ws)
    pm.set_weights(ws)
    np.testing.assert_allclose(pm.predict(ids, verbose=0), _kout(km(ids))[0], rtol=1e-5,
                               atol=1e-5)


def test_embedding_and_time_distributed_match_keras(keras):
    rng = _rng("emb_keras")
    ids = rng.integers(0, 20, (3, 6))

    def build(lib, layers):
        inp = lib.Input((6,))
        h = layers.Embedding(20, 5)(inp)
        h = layers.LSTM(4, return_sequences=True)(h)
        return lib.Model(inp, layers.TimeDistributed(layers.Dense(2))(h))

    km, pm = build(keras, keras.layers), build(pynn, L)
    ws = _jitter(km.get_weights(), rng)
    km.set_weights(ws)
    pm.set_weights(ws)
    np.testing.assert_allclose(pm.predict(ids, verbose=0), _kout(km(ids))[0], rtol=1e-5,
                               atol=1e-5)


# --- training: determinism, learning, files --------------------------------------------------
def _text_model(seed):
    pynn.utils.set_random_seed(seed)
    model = pynn.Sequential([
        pynn.Input((9,)),
        L.Embedding(12, 6, mask_zero=True),
        L.Bidirectional(L.LSTM(8, return_sequences=True)),
        L.GRU(5, dropout=0.1, recurrent_dropout=0.2),
        L.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _text_data(n=64):
    rng = _rng("text")
    x = rng.integers(1, 12, (n, 9)).astype(np.float32)
    for i in range(n):
        x[i, rng.integers(4, 10):] = 0        # variable lengths, zero-padded
    y = (x[:, 0] % 3).astype(np.float32)      # the class is in the first token
    return x, y


def test_training_is_bitwise_identical_on_one_and_two_threads():
    x, y = _text_data()
    before = pynn.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            model = _text_model(5)
            model.fit(x, y, batch_size=16, epochs=2, verbose=0)
            weights.append(model.get_weights())
    finally:
        pynn.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_one_row_alone_equals_that_row_in_a_batch():
    x, _ = _text_data(40)
    model = _text_model(1)
    full = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x[7:8], verbose=0), full[7:8])


def test_a_masked_gru_learns_a_sequence_task():
    x, y = _text_data(256)
    pynn.utils.set_random_seed(2)
    model = pynn.Sequential([pynn.Input((9,)), L.Embedding(12, 6, mask_zero=True),
                             L.GRU(8, go_backwards=True), L.Dense(3, activation="softmax")])
    model.compile(pynn.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    assert hist.history["accuracy"][-1] > 0.9   # chance is 1/3


def test_model_saves_and_loads(tmp_path):
    x, y = _text_data(32)
    model = _text_model(2)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "text.safetensors"
    model.save(path)
    loaded = pynn.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(lay).__name__ for lay in loaded.layers] == \
        ["Embedding", "Bidirectional", "GRU", "Dense"]


def test_layer_configs_round_trip():
    made = [L.SimpleRNN(3, activation="relu", go_backwards=True),
            L.LSTM(4, return_sequences=True, unit_forget_bias=False, return_state=True),
            L.GRU(5, reset_after=False, recurrent_activation="hard_sigmoid"),
            L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode="sum"),
            L.TimeDistributed(L.Dense(3, activation="tanh")),
            L.Embedding(10, 4, mask_zero=True), L.Masking(-1.0)]
    for layer in made:
        again = L.deserialize(L.serialize(layer))
        assert type(again) is type(layer)
        assert again.get_config() == layer.get_config()


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="units"):
        L.LSTM(0)
    with pytest.raises(ValueError, match="merge_mode"):
        L.Bidirectional(L.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="stateful"):
        L.GRU(2, stateful=True)
    with pytest.raises(ValueError, match="input_dim"):
        L.Embedding(0, 3)
    with pytest.raises(ValueError, match="TimeDistributed supports"):
        L.TimeDistributed(L.LSTM(2))
    with pytest.raises(ValueError, match="activation"):
        L.SimpleRNN(2, activation="softmax")
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\)"):
        inp = pynn.Input((5,))
        L.LSTM(3)(inp)
    model = pynn.Sequential([pynn.Input((4,)), L.Embedding(5, 2), L.LSTM(2)])
    with pytest.raises(ValueError, match="input_dim=5"):
        model.predict(np.array([[0, 1, 2, 7]], np.float32), verbose=0)


ISA_CHECK = """
import numpy as np, pynn
from test_rnn import CASES, _feed, _rng
from pynn.reference import graph as ref_graph
worst = 0.0
for case in CASES[2:6] + CASES[10:15]:
    rng = _rng("isa", case.name)
    ps, xs = case.params(rng), case.inputs(rng, 3)
    spec = case.spec(ps, xs)
    out, cache = ref_graph.forward(spec, xs)
    got = np.empty(out[0].shape, np.float32)
    g = spec.to_core()
    g.predict(_feed(xs), [got])
    worst = max(worst, float(np.abs(got - out[0]).max()))
    seed = rng.standard_normal(out[0].shape)
    want = ref_graph.backward(spec, cache, [seed])[1][0]
    dx = g.input_gradient(_feed(xs), [seed.astype(np.float32)])[0]
    worst = max(worst, float(np.abs(dx - want).max() / np.abs(want).max()) / 10)
print(pynn.kernel_info()["arch"], worst)
"""


@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
def test_every_supported_kernel_runs_the_recurrent_op(arch):
    """The GEMM micro-kernels and the activation kernels differ per ISA: each path against
    the twin (forward within 2e-5; dx within 2e-4 of its largest entry, scaled by 1/10)."""
    import os
    import subprocess
    import sys

    from pynn import _core

    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU has no {arch}")
    env = dict(os.environ, PYNN_ARCH=arch)
    res = subprocess.run([sys.executable, "-c", ISA_CHECK], env=env, capture_output=True,
                         text=True, timeout=300, check=False,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr
    got_arch, worst = res.stdout.split()
    assert got_arch == arch
    assert float(worst) < 2e-5
