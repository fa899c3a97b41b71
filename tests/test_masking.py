"""Masks as Keras 3 hands them on: from Embedding(mask_zero=True) and Masking through the
layers that support masking, merges and wrappers, into GlobalAveragePooling1D, the recurrent
layers, the loss and the metrics.

  * which layers keep, combine or drop a mask (the graph's recorded masks, no engine needed);
  * the engine's masked loss against its NumPy twin (`reference.graph.masked_row_weights`);
  * Keras 3 itself (torch backend) on the same weights and data: predict, evaluate (loss and
    accuracy, with and without sample weights) and the weights after two SGD steps of fit, for
    five masked models, on sequences padded at the end, at the start, in the middle, and
    wholly padded rows.

Tolerances: both sides compute in float32 with the same formulas; the sums differ only in
order (a few dozen terms of O(1)), so 1e-5 relative and absolute on outputs, losses and the
weights after two steps of SGD with learning rate 0.5 (a wrong mask weight moves the loss by
far more: a masked step carries about 1 / steps of it). The engine against the float64 twin:
1e-5 relative (float32 sums of a few dozen rows).
"""
from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import case_rng

import pynn
from pynn import layers as L
from pynn.layers.embedding import mask_of
from pynn.models.runtime import run_inference
from pynn.reference import graph as ref_graph

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    "ignore:.*does not support masking.*:UserWarning")

B, T, V = 6, 5, 9


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _ids(rng, full_row=True):
    """Token ids (B, T) padded with 0 at the end, at the start, in the middle, everywhere."""
    ids = rng.integers(1, V, (B, T)).astype(np.float32)
    ids[0, 3:] = 0        # right-padded
    ids[1, :2] = 0        # left-padded
    ids[2, 2] = 0         # a hole
    if full_row:
        ids[3, :] = 0     # nothing kept
    return ids


# --- which layers keep, combine or drop a mask -------------------------------------------------
def _masks(model):
    spec = model._build_spec()
    return spec, [mask_of(spec, t) for t in spec.outputs]


@pytest.mark.parametrize("layer,kept", [
    (lambda: L.Dense(3), True), (lambda: L.Activation("relu"), True),
    (lambda: L.Dropout(0.5), True), (lambda: L.LayerNormalization(), True),
    (lambda: L.BatchNormalization(), True), (lambda: L.GaussianNoise(0.1), True),
    (lambda: L.TimeDistributed(L.Dense(2)), True), (lambda: L.LSTM(2, return_sequences=True), True),
    (lambda: L.Bidirectional(L.GRU(2, return_sequences=True)), True),
    (lambda: L.LSTM(2), False), (lambda: L.GlobalAveragePooling1D(), False),
    (lambda: L.GlobalMaxPooling1D(), False), (lambda: L.Flatten(), False),
    (lambda: L.Reshape((T * 4,)), False), (lambda: L.Conv1D(2, 2, padding="same"), False),
])
def test_layers_keep_or_drop_the_mask(layer, kept):
    inp = pynn.Input((T,))
    out = layer()(L.Embedding(V, 4, mask_zero=True)(inp))
    spec, (m,) = _masks(pynn.Model(inp, out))
    assert (m is not None) == kept
    if kept:
        assert spec.shapes[m] == (T,)


def test_unmasked_models_get_no_mask_nodes():
    inp = pynn.Input((T,))
    h = L.Embedding(V, 4)(inp)
    out = L.Add()([L.Dense(4)(h), L.LSTM(4, return_sequences=True)(h)])
    spec, (m,) = _masks(pynn.Model(inp, out))
    assert m is None and not getattr(spec, "masks", {})
    assert [n.op for n in spec.nodes] == ["embedding", "dense", "rnn", "add"]


def _two_masked(merge):
    a, b = pynn.Input((T,)), pynn.Input((T,))
    ha = L.Embedding(V, 4, mask_zero=True)(a)
    hb = L.Embedding(V, 4, mask_zero=True)(b)
    return pynn.Model([a, b], merge([ha, hb])), ha, hb


@pytest.mark.parametrize("merge", [L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum,
                                   L.Minimum, L.Concatenate])
def test_merges_keep_a_step_any_input_keeps(merge):
    model, _, _ = _two_masked(merge())
    a = np.array([[1, 2, 0, 0, 3]], np.float32)
    b = np.array([[0, 2, 0, 4, 0]], np.float32)
    spec, (m,) = _masks(model)
    assert m is not None
    spec.outputs = [m]
    got = run_inference(spec, [a, b])[0]
    np.testing.assert_array_equal(got, [[1, 1, 0, 1, 1]])


def test_merge_with_an_unmasked_input_has_no_mask():
    a, b = pynn.Input((T,)), pynn.Input((T, 4))
    h = L.Embedding(V, 4, mask_zero=True)(a)
    for merge in (L.Add(), L.Concatenate()):
        _, (m,) = _masks(pynn.Model([a, b], merge([h, b])))
        assert m is None


def test_concatenate_on_the_time_axis_joins_the_masks():
    a, b = pynn.Input((T,)), pynn.Input((2, 4))
    h = L.Embedding(V, 4, mask_zero=True)(a)
    spec, (m,) = _masks(pynn.Model([a, b], L.Concatenate(axis=1)([h, b])))
    assert spec.shapes[m] == (T + 2,)
    spec.outputs = [m]
    ids = np.array([[0, 1, 0, 2, 3]], np.float32)
    got = run_inference(spec, [ids, np.zeros((1, 2, 4), np.float32)])[0]
    np.testing.assert_array_equal(got, [[0, 1, 0, 1, 1, 1, 1]])


# --- the engine's masked loss against the twin ----------------------------------------------
@pytest.mark.parametrize("kind", ["sparse_categorical_crossentropy", "mean_squared_error",
                                  "categorical_crossentropy"])
@pytest.mark.parametrize("weighted", [False, True])
def test_engine_masked_loss_and_gradients_match_twin(kind, weighted):
    rng = case_rng("engine", kind, weighted)
    inp = pynn.Input((T,))
    h = L.Embedding(V, 4, mask_zero=True)(inp)
    out = L.Dense(3, activation="softmax")(L.GRU(4, return_sequences=True)(h))
    model = pynn.Model(inp, out)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])   # outputs far from uniform
    model.compile(pynn.optimizers.SGD(learning_rate=0.01), kind)
    model._ensure_graph()
    spec, g = model._spec, model._graph
    assert len(spec.outputs) == 2   # the model's output, then its mask for the loss
    ids = _ids(rng)
    if kind == "sparse_categorical_crossentropy":
        y = rng.integers(0, 3, (B, T)).astype(np.int32)
        y_engine = y
    else:
        y = rng.random((B, T, 3)).astype(np.float32)
        y /= y.sum(-1, keepdims=True)
        y_engine = y.reshape(B, -1)
    sw = (rng.random(B) + 0.5).astype(np.float32) if weighted else None
    entries = [(kind, False, 1.0, 1.0, 1), None]
    _, per, grads, _ = ref_graph.gradients(spec, [ids], [y, None], entries, [sw, None],
                                           training=False)
    outs = ref_graph.predict(spec, [ids])
    # (the step's gradients are those of the weights before it)
    _, losses, _, _ = g.train_step([ids], [y_engine, None], [sw, None], None, False)
    np.testing.assert_allclose(losses[0], per[0], rtol=1e-5)
    for pid, want in enumerate(grads):
        got = g.get_grad(pid)
        scale = max(np.abs(want).max(), 1e-3)
        np.testing.assert_allclose(got, want, atol=2e-4 * scale, err_msg=str(pid))
    # the mask matters: without it the loss is another number
    plain = ref_graph.loss(spec, outs, [y, None], [entries[0][:4], None], [sw, None])[1][0]
    assert abs(plain - per[0]) > 1e-3


def test_masked_row_weights_follow_keras():
    w = ref_graph.masked_row_weights(np.array([1, 0, 1, 1]), np.array([2.0, 5.0, 1.0, 1.0]))
    np.testing.assert_allclose(w, [2 * 4 / 3, 0, 4 / 3, 4 / 3])
    np.testing.assert_array_equal(ref_graph.masked_row_weights(np.zeros(3), None), 0)


# --- Keras 3 itself ---------------------------------------------------------------------------
def _emb_lstm(lib, layers):
    inp = lib.Input((T,))
    h = layers.Embedding(V, 4, mask_zero=True, name="emb")(inp)
    h = layers.LSTM(5, name="rnn")(h)
    return lib.Model(inp, layers.Dense(3, activation="softmax", name="out")(h))


def _masking_gru(lib, layers):
    inp = lib.Input((T, 3))
    h = layers.Masking(0.0, name="masking")(inp)
    h = layers.GRU(5, return_sequences=True, name="rnn")(h)
    return lib.Model(inp, layers.Dense(3, activation="softmax", name="out")(h))


def _emb_gap(lib, layers):
    inp = lib.Input((T,))
    h = layers.Embedding(V, 4, mask_zero=True, name="emb")(inp)
    h = layers.Dense(6, activation="tanh", name="hid")(h)
    h = layers.GlobalAveragePooling1D(name="gap")(h)
    return lib.Model(inp, layers.Dense(3, activation="softmax", name="out")(h))


def _add_branches(lib, layers, merge="Add"):
    a, b = lib.Input((T,)), lib.Input((T,))
    ha = layers.LSTM(4, return_sequences=True, name="ra")(
        layers.Embedding(V, 3, mask_zero=True, name="ea")(a))
    hb = layers.GRU(4, return_sequences=True, name="rb")(
        layers.Embedding(V, 3, mask_zero=True, name="eb")(b))
    h = getattr(layers, merge)(name="merge")([ha, hb])
    return lib.Model([a, b], layers.Dense(3, activation="softmax", name="out")(h))


def _concat_branches(lib, layers):
    return _add_branches(lib, layers, "Concatenate")


def _bidi(lib, layers):
    inp = lib.Input((T,))
    h = layers.Embedding(V, 3, mask_zero=True, name="emb")(inp)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True), name="bi")(h)
    return lib.Model(inp, layers.TimeDistributed(layers.Dense(3, activation="softmax"),
                                                 name="out")(h))


CASES = {"emb_lstm": _emb_lstm, "masking_gru_seq": _masking_gru, "emb_gap": _emb_gap,
         "add_branches": _add_branches, "concat_branches": _concat_branches, "bidi_seq": _bidi}


def _data(case, rng):
    """(x, y, loss) for a case; the GAP model gets no wholly padded row (Keras's mean over no
    steps is 0 / 0)."""
    ids = _ids(rng, full_row=case != "emb_gap")
    if case == "masking_gru_seq":
        x = np.where(ids[..., None] == 0, 0.0, rng.standard_normal((B, T, 3))).astype(np.float32)
    elif case in ("add_branches", "concat_branches"):
        other = _ids(rng)[::-1].copy()   # masked elsewhere: the OR of the two masks counts
        x = [ids, other]
    else:
        x = ids
    if case in ("emb_lstm", "emb_gap"):
        return x, rng.integers(0, 3, B), "sparse_categorical_crossentropy"
    if case == "bidi_seq":
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (B, T))]
        return x, y, "categorical_crossentropy"
    return x, rng.integers(0, 3, (B, T)), "sparse_categorical_crossentropy"


def _pair(keras, case, rng):
    build = CASES[case] if isinstance(case, str) else case
    km, pm = build(keras, keras.layers), build(pynn, L)
    for kl in km.layers:   # by name: the two models may list their layers in other orders
        ws = [w + (rng.standard_normal(w.shape) * 0.3).astype(np.float32)
              for w in kl.get_weights()]
        if ws:
            kl.set_weights(ws)
            pm.get_layer(kl.name).set_weights(ws)
    return km, pm


def _weights(model, names):
    return [w for name in names for w in model.get_layer(name).get_weights()]


def _compile(model, lib, loss):
    model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.5), loss=loss,
                  metrics=["accuracy"], weighted_metrics=["accuracy"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_models_match_keras(keras, case):
    rng = case_rng("keras", case)
    km, pm = _pair(keras, case, rng)
    x, y, loss = _data(case, rng)
    want = km.predict(x, verbose=0)
    np.testing.assert_allclose(pm.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
    _compile(km, keras, loss)
    _compile(pm, pynn, loss)
    # evaluate without and with sample weights: per sample, or per step for a sequence output
    # (Keras 3 does not broadcast (batch,) weights over the steps)
    seq = case in ("masking_gru_seq", "add_branches", "concat_branches", "bidi_seq")
    sw = (rng.random((B, T) if seq else B) + 0.5).astype(np.float32)
    for weights in (None, sw):
        kv = km.evaluate(x, y, sample_weight=weights, batch_size=B, verbose=0,
                         return_dict=True)
        pv = pm.evaluate(x, y, sample_weight=weights, batch_size=B, verbose=0,
                         return_dict=True)
        assert set(pv) == set(kv)
        for key in kv:
            np.testing.assert_allclose(pv[key], kv[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # two SGD steps (two batches of 3, no shuffling, weighted) give Keras's weights
    names = [kl.name for kl in km.layers if kl.weights]
    before = _weights(pm, names)
    kh = km.fit(x, y, sample_weight=sw, batch_size=3, epochs=1, shuffle=False, verbose=0)
    ph = pm.fit(x, y, sample_weight=sw, batch_size=3, epochs=1, shuffle=False, verbose=0)
    after = _weights(pm, names)
    assert any(not np.array_equal(a, c) for a, c in zip(after, before))
    for a, b in zip(after, _weights(km, names)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ph.history["loss"], kh.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(ph.history["accuracy"], kh.history["accuracy"], rtol=1e-5)


def test_gap_over_a_wholly_padded_row_is_nan_as_in_keras(keras):
    rng = case_rng("gap_nan")
    km, pm = _pair(keras, "emb_gap", rng)
    ids = _ids(rng, full_row=True)
    want = km.predict(ids, verbose=0)
    got = pm.predict(ids, verbose=0)
    assert np.isnan(want[3]).all() and np.isnan(got[3]).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_masked_custom_loss_matches_keras(keras):
    """A loss function of one's own (per-step values): Keras weighs it by the mask too."""
    rng = case_rng("custom_loss")
    km, pm = _pair(keras, "masking_gru_seq", rng)
    x, _, _ = _data("masking_gru_seq", rng)
    y = rng.random((B, T, 3)).astype(np.float32)

    def loss_for(ops):
        def sq_err(y_true, y_pred):
            return ops.mean(ops.square(y_pred - y_true), axis=-1)
        return sq_err

    for model, lib in ((km, keras), (pm, pynn)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.5), loss=loss_for(lib.ops))
    sw = (rng.random((B, T)) + 0.5).astype(np.float32)
    for weights in (None, sw):
        want = km.evaluate(x, y, sample_weight=weights, batch_size=B, verbose=0)
        got = pm.evaluate(x, y, sample_weight=weights, batch_size=B, verbose=0)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    km.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    pm.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    names = [kl.name for kl in km.layers if kl.weights]
    for a, b in zip(_weights(pm, names), _weights(km, names)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _gru_seq(lib, layers):
    inp = lib.Input((T, 3))
    h = layers.GRU(5, return_sequences=True, name="rnn")(inp)
    return lib.Model(inp, layers.Dense(3, activation="softmax", name="out")(h))


@pytest.mark.parametrize("masked", [True, False])
def test_sum_reduction_over_steps_matches_keras(keras, masked):
    """reduction="sum": Keras sums over every kept step (no rescaling by the mask)."""
    rng = case_rng("sum", masked)
    km, pm = _pair(keras, "masking_gru_seq" if masked else _gru_seq, rng)
    x, y, _ = _data("masking_gru_seq", rng)
    for model, lib in ((km, keras), (pm, pynn)):
        loss = lib.losses.SparseCategoricalCrossentropy(reduction="sum")
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05), loss=loss)
    want = km.evaluate(x, y, batch_size=B, verbose=0)
    np.testing.assert_allclose(pm.evaluate(x, y, batch_size=B, verbose=0), want, rtol=1e-5)
    km.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    pm.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    names = [kl.name for kl in km.layers if kl.weights]
    for a, b in zip(_weights(pm, names), _weights(km, names)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_masked_training_is_bitwise_identical_on_1_and_2_threads():
    rng = case_rng("threads")
    x, y, loss = _data("add_branches", rng)
    sw = (rng.random((B, T)) + 0.5).astype(np.float32)
    results = []
    before = pynn.get_num_threads()
    try:
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            pynn.utils.set_random_seed(3)
            model = _add_branches(pynn, L)
            _compile(model, pynn, loss)
            hist = model.fit(x, y, sample_weight=sw, batch_size=2, epochs=2, verbose=0)
            results.append((model.get_weights(), hist.history))
    finally:
        pynn.set_num_threads(before)
    (w1, h1), (w2, h2) = results
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2


def test_an_explicit_mask_argument_is_a_clear_error():
    inp = pynn.Input((T, 4))
    with pytest.raises(ValueError, match="mask"):
        L.Dense(2)(inp, mask=inp)


# --- BatchNormalization: training statistics over the kept steps (Keras) -------------------------
@pytest.mark.parametrize("rows,kept", [(7, [1, 0, 1, 1, 0, 0, 1]), (4, [0, 0, 1, 0]),
                                       (3, [0, 0, 0])])
def test_masked_batchnorm_twin_matches_finite_differences(rows, kept):
    from test_ref_dense import numeric_grad

    rng = case_rng("bn_fd", rows)
    x = rng.standard_normal((rows, 3))
    keep = np.array(kept, bool)
    gamma, beta, r = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal((rows, 3))

    def f():
        y = ref_graph.masked_batchnorm_forward_train(x, keep, gamma, beta, np.zeros(3),
                                                     np.ones(3), 0.9, 1e-3)[0]
        return float((y * r).sum())

    _, xhat, inv_std, _, _ = ref_graph.masked_batchnorm_forward_train(
        x, keep, gamma, beta, np.zeros(3), np.ones(3), 0.9, 1e-3)
    dx, dgamma, dbeta = ref_graph.masked_batchnorm_backward(r, xhat, inv_std, keep, gamma)
    # float64 central differences, h = 1e-6: error ~1e-9 relative
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dgamma, numeric_grad(f, gamma), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dbeta, numeric_grad(f, beta), rtol=1e-5, atol=1e-7)


def _bn_seq(lib, layers):
    inp = lib.Input((T,))
    h = layers.Embedding(V, 4, mask_zero=True, name="emb")(inp)
    h = layers.BatchNormalization(momentum=0.8, name="bn")(h)
    h = layers.GRU(4, return_sequences=True, name="rnn")(h)
    return lib.Model(inp, layers.Dense(3, activation="softmax", name="out")(h))


def test_engine_masked_batchnorm_matches_twin():
    rng = case_rng("bn_engine")
    model = _bn_seq(pynn, L)
    model.compile(pynn.optimizers.SGD(learning_rate=0.01), "sparse_categorical_crossentropy")
    model._ensure_graph()
    spec, g = model._spec, model._graph
    assert [n.op for n in spec.nodes if n.op == "batchnorm" and len(n.inputs) == 2]
    ids, y = _ids(rng), rng.integers(0, 3, (B, T)).astype(np.int32)
    entries = [("sparse_categorical_crossentropy", False, 1.0, 1.0, 1), None]
    _, per, grads, _ = ref_graph.gradients(spec, [ids], [y, None], entries)
    outs, cache = ref_graph.forward(spec, [ids], training=True)
    bn = model.get_layer("bn")
    _, losses, _, _ = g.train_step([ids], [y, None], None, None, False)
    np.testing.assert_allclose(losses[0], per[0], rtol=1e-5)
    for pid, want in enumerate(grads):
        if want is not None:
            scale = max(np.abs(want).max(), 1e-3)
            np.testing.assert_allclose(g.get_grad(pid), want, atol=2e-4 * scale, err_msg=str(pid))
    stats = [cache.moving_stats[pid] for pid in sorted(cache.moving_stats)]
    np.testing.assert_allclose(bn.get_weights()[2:], stats, rtol=1e-5, atol=1e-6)


def test_masked_batchnorm_matches_keras(keras):
    rng = case_rng("bn_keras")
    km, pm = _pair(keras, _bn_seq, rng)
    x, y = _ids(rng), rng.integers(0, 3, (B, T))
    for model, lib in ((km, keras), (pm, pynn)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.5),
                      loss="sparse_categorical_crossentropy")
    km.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    pm.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    names = [kl.name for kl in km.layers if kl.weights]
    for a, b in zip(_weights(pm, names), _weights(km, names)):   # moving statistics included
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pm.evaluate(x, y, batch_size=B, verbose=0),
                               km.evaluate(x, y, batch_size=B, verbose=0), rtol=1e-5)


@pytest.mark.parametrize("batch,steps,c", [(1, 1, 1), (4, 5, 3), (2, 17, 16), (3, 4, 17)])
@pytest.mark.parametrize("kept", ["some", "none", "all"])
def test_core_masked_batchnorm_matches_twin(batch, steps, c, kept):
    """The batchnorm op with a mask input, in a training step (after a dense op, whose weight
    gradients go through the batchnorm's dx), against the twin: gradients of every weight and
    the moving statistics after the step. 2e-4 of the largest gradient (float32 vs float64)."""
    from pynn.models.graph_spec import GraphSpec, ParamRef

    rng = case_rng("bn_core", batch, steps, c, kept)
    x = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    mask = {"some": rng.random((batch, steps)) < 0.6, "none": np.zeros((batch, steps), bool),
            "all": np.ones((batch, steps), bool)}[kept].astype(np.float32)
    ps = [rng.standard_normal((3, c)), rng.standard_normal(c), rng.random(c) + 0.5,
          rng.standard_normal(c), rng.standard_normal(c), rng.random(c) + 0.5]
    spec = GraphSpec()
    tx, tm = spec.add_input((steps, 3)), spec.add_input((steps,))
    pids = [spec.add_param(ParamRef(np.array(p, np.float32), f"p{k}", trainable=k < 4))
            for k, p in enumerate(ps)]
    (h,) = spec.add_node("dense", [tx], [(steps, c)], pids[:2],
                         {"units": c, "activation": "linear", "use_bias": True})
    spec.outputs = spec.add_node("batchnorm", [h, tm], [(steps, c)], pids[2:],
                                 {"momentum": 0.9, "epsilon": 1e-3})
    target = rng.standard_normal((batch, steps, c)).astype(np.float32)
    mse = [("mean_squared_error", False, 1.0, 1.0)]
    _, _, want, _ = ref_graph.gradients(spec, [x, mask], [target], mse)
    _, cache = ref_graph.forward(spec, [x, mask], training=True)
    g = spec.to_core(mse)
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    g.train_step([x.reshape(batch, -1), mask], [target.reshape(batch, -1)])
    for k in range(4):
        np.testing.assert_allclose(g.get_grad(k), want[k],
                                   atol=2e-4 * max(np.abs(want[k]).max(), 1e-3), err_msg=str(k))
    for k in (4, 5):   # moving mean and variance, written in place by the step
        np.testing.assert_allclose(spec.params[k].value, cache.moving_stats[pids[k]],
                                   rtol=1e-5, atol=1e-6)
