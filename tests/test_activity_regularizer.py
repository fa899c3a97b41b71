"""activity_regularizer on any layer and the constraints of the recurrent and depthwise layers,
held to Keras 3's numbers.

Keras adds ``regularizer(y) / batch_size`` to the loss for every output y of a layer call
that has an activity_regularizer; pynn appends an ``activity_regularization`` node (the
identity, with that penalty) to each output of such a layer (Layer._emit_node).
"""
from __future__ import annotations

import numpy as np
import pytest
from keras_helpers import case_rng, to_numpy

import pynn
from pynn import layers as L

pytestmark = [
    # Keras's torch backend calls np.array on tensors, which NumPy 2 flags as deprecated
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:keras"),
]


def _matches_keras(keras, key, x_shape, y_cols, body):
    """Model(inp, body(mod, inp)) built in pynn and in Keras with the same weights: the same
    loss from evaluate and from three SGD steps, and the same weights after them."""
    rng = case_rng(*key)
    x = rng.standard_normal(x_shape).astype(np.float32)
    y = rng.standard_normal((x_shape[0], y_cols)).astype(np.float32)
    models = []
    for mod in (pynn, keras):
        inp = mod.Input(x_shape[1:])
        models.append(mod.Model(inp, body(mod, inp)))
    ours, theirs = models
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    ours.compile(pynn.optimizers.SGD(0.1), "mse")
    theirs.compile(keras.optimizers.SGD(0.1), "mse")
    # The losses are float32 sums of a few hundred terms on both sides, summed in different
    # orders: 1e-5 relative. Weights after three steps: 1e-5 absolute (they are O(1)).
    np.testing.assert_allclose(ours.evaluate(x, y, batch_size=len(x), verbose=0),
                               theirs.evaluate(x, y, batch_size=len(x), verbose=0), rtol=1e-5)
    for _ in range(3):
        a = ours.train_on_batch(x, y)
        b = theirs.train_on_batch(x, y)
        np.testing.assert_allclose(np.ravel(a)[0], np.ravel(b)[0], rtol=1e-5)
    for a, b in zip(ours.get_weights(), [to_numpy(v.value) for v in theirs.weights]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    return ours


@pytest.mark.parametrize("reg", [("L1", {"l1": 0.05}), ("L2", {"l2": 0.1}),
                                 ("L1L2", {"l1": 0.03, "l2": 0.07})])
def test_dense_activity_regularizer_matches_keras(keras, reg):
    def body(mod, inp):
        r = getattr(mod.regularizers, reg[0])(**reg[1])
        h = mod.layers.Dense(4, activation="tanh", activity_regularizer=r)(inp)
        return mod.layers.Dense(2)(h)

    _matches_keras(keras, ("act-dense", reg[0]), (16, 5), 2, body)


def test_conv_and_lstm_activity_regularizers_match_keras(keras):
    def body(mod, inp):
        h = mod.layers.Conv1D(4, 3, activation="relu",
                              activity_regularizer=mod.regularizers.L2(0.02))(inp)
        h = mod.layers.LSTM(5, return_sequences=True,
                            activity_regularizer=mod.regularizers.L1(0.01))(h)
        return mod.layers.Dense(2)(mod.layers.GlobalAveragePooling1D()(h))

    _matches_keras(keras, ("act-conv-lstm",), (8, 9, 3), 2, body)


def test_every_output_of_a_layer_is_penalized_as_in_keras(keras):
    # return_state: Keras penalizes the sequence and both states, even those the model's
    # output does not use; a graph that dropped the unused states' penalties would differ.
    def body(mod, inp):
        seq, h, c = mod.layers.LSTM(5, return_state=True,
                                    activity_regularizer=mod.regularizers.L1L2(0.02, 0.05))(inp)
        return mod.layers.Dense(5)(seq)

    _matches_keras(keras, ("act-states",), (6, 4, 3), 5, body)


def test_bidirectional_inner_activity_regularizer_matches_keras(keras):
    def body(mod, inp):
        h = mod.layers.Bidirectional(
            mod.layers.GRU(3, activity_regularizer=mod.regularizers.L2(0.1)),
            activity_regularizer=mod.regularizers.L1(0.02))(inp)
        return mod.layers.Dense(2)(h)

    _matches_keras(keras, ("act-bidir",), (6, 4, 3), 2, body)


@pytest.mark.parametrize("threads", [1, 2])
def test_activity_regularizer_is_the_activity_regularization_layer(threads):
    # The argument and the layer are the same op: bitwise the same training.
    rng = case_rng("act-same")
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)

    def run(inline):
        pynn.utils.set_random_seed(5)
        reg = pynn.regularizers.L1L2(0.01, 0.02)
        if inline:
            hidden = [L.Dense(8, activation="relu", activity_regularizer=reg)]
        else:
            hidden = [L.Dense(8, activation="relu"), L.ActivityRegularization(0.01, 0.02)]
        m = pynn.Sequential([L.Input((6,))] + hidden + [L.Dense(3, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        hist = m.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        return m.get_weights(), hist.history["loss"]

    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(threads)
        (wa, la), (wb, lb) = run(True), run(False)
    finally:
        pynn.set_num_threads(before)
    assert la == lb
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    # and the penalty is there: without it the loss differs
    pynn.utils.set_random_seed(5)
    plain = pynn.Sequential([L.Input((6,)), L.Dense(8, activation="relu"),
                             L.Dense(3, activation="softmax")])
    plain.compile("adam", "sparse_categorical_crossentropy")
    assert plain.fit(x, y, batch_size=16, epochs=1, verbose=0,
                     shuffle=False).history["loss"][0] != la[0]


def test_masks_flow_through_the_penalty():
    # Embedding(mask_zero) -> LSTM(return_sequences, activity_regularizer) -> average pool:
    # the pool must still skip the masked steps, so predictions equal the unregularized model's.
    rng = case_rng("act-mask")
    tokens = rng.integers(1, 9, (5, 6))
    tokens[:, 4:] = 0

    def build(reg):
        pynn.utils.set_random_seed(2)
        return pynn.Sequential([L.Input((6,)), L.Embedding(10, 4, mask_zero=True),
                                L.LSTM(3, return_sequences=True, activity_regularizer=reg),
                                L.GlobalAveragePooling1D(), L.Dense(2)])

    with_reg, without = build(pynn.regularizers.L2(0.5)), build(None)
    without.set_weights(with_reg.get_weights())
    np.testing.assert_array_equal(with_reg.predict(tokens, verbose=0),
                                  without.predict(tokens, verbose=0))
    # a model that ignored the mask would average the padded steps too
    unmasked = pynn.Sequential([L.Input((6,)), L.Embedding(10, 4),
                                L.LSTM(3, return_sequences=True),
                                L.GlobalAveragePooling1D(), L.Dense(2)])
    unmasked.set_weights(with_reg.get_weights())
    assert not np.array_equal(unmasked.predict(tokens, verbose=0),
                              with_reg.predict(tokens, verbose=0))


def test_config_and_files_keep_the_regularizer(tmp_path, keras):
    rng = case_rng("act-files")
    x = rng.standard_normal((10, 5)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    m = pynn.Sequential([L.Input((5,)),
                         L.Dense(4, activation="tanh",
                                 activity_regularizer=pynn.regularizers.L1L2(0.1, 0.2)),
                         L.Dense(2)])
    m.compile("sgd", "mse")
    cfg = m.layers[0].get_config()
    assert cfg["activity_regularizer"] == {"class_name": "L1L2",
                                           "config": {"l1": 0.1, "l2": 0.2}}
    again = L.Dense.from_config(cfg)
    assert again.activity_regularizer.l1 == 0.1 and again.activity_regularizer.l2 == 0.2
    assert "activity_regularizer" not in L.Dense(3).get_config()   # as Keras: only when set
    path = tmp_path / "m.keras"
    m.save(path)
    loaded = pynn.saving.load_model(path)
    np.testing.assert_array_equal(loaded.evaluate(x, y, verbose=0), m.evaluate(x, y, verbose=0))
    # Keras reads pynn's file, penalty included
    theirs = keras.saving.load_model(path)
    np.testing.assert_allclose(theirs.evaluate(x, y, verbose=0), m.evaluate(x, y, verbose=0),
                               rtol=1e-5)
    # and pynn reads a file Keras wrote
    kpath = tmp_path / "k.keras"
    inp = keras.Input((5,))
    h = keras.layers.Dense(3, activation="relu",
                           activity_regularizer=keras.regularizers.L2(0.3))(inp)
    km = keras.Model(inp, keras.layers.Dense(2)(h))
    km.compile(keras.optimizers.SGD(0.1), "mse")
    km.save(kpath)
    ours = pynn.saving.load_model(kpath)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0),
                               rtol=1e-5)


def test_bad_activity_regularizers_are_named():
    with pytest.raises(ValueError, match="activity_regularizer: unknown name 'l3'"):
        L.Dense(2, activity_regularizer="l3")
    with pytest.raises(TypeError, match="activity_regularizer: expected None"):
        L.Conv2D(2, 3, activity_regularizer=object())

    class Custom(pynn.regularizers.Regularizer):
        def __call__(self, x):
            return 0.0

    with pytest.raises(TypeError, match="activity_regularizer: a Regularizer subclass"):
        L.LSTM(2, activity_regularizer=Custom())
    with pytest.raises(TypeError, match="kernel_regularizer: a Regularizer"):
        L.Dense(2, kernel_regularizer=Custom())
    with pytest.raises(ValueError, match="l1"):
        L.Dense(2, activity_regularizer=pynn.regularizers.L1(-1.0))


# --- constraints on the recurrent and depthwise layers -----------------------------------------
@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_constraints_match_keras(keras, cell):
    def body(mod, inp):
        h = getattr(mod.layers, cell)(
            4, kernel_constraint=mod.constraints.MaxNorm(0.6),
            recurrent_constraint=mod.constraints.UnitNorm(axis=0),
            bias_constraint=mod.constraints.NonNeg())(inp)
        return mod.layers.Dense(2)(h)

    ours = _matches_keras(keras, ("rnn-constraints", cell), (6, 5, 3), 2, body)
    rnn = ours.layers[1]
    kernel, recurrent, bias = (w.numpy() for w in rnn.weights)
    # the constraints hold after the last step (they are not vacuous for these weights)
    assert np.sqrt((kernel ** 2).sum(axis=0)).max() <= 0.6 + 1e-6
    np.testing.assert_allclose(np.sqrt((recurrent ** 2).sum(axis=0)), 1.0, rtol=1e-5)
    assert bias.min() >= 0.0
    cfg = rnn.get_config()
    assert type(rnn).from_config(cfg).get_config() == cfg


def test_embedding_constraint_matches_keras(keras):
    rng = case_rng("emb-constraint")
    tokens = rng.integers(0, 7, (8, 5))
    y = rng.standard_normal((8, 2)).astype(np.float32)
    models = []
    for mod in (pynn, keras):
        inp = mod.Input((5,))
        h = mod.layers.Embedding(7, 4, embeddings_constraint=mod.constraints.MaxNorm(0.3,
                                                                                    axis=1))(inp)
        models.append(mod.Model(inp, mod.layers.Dense(2)(mod.layers.Flatten()(h))))
    ours, theirs = models
    theirs.set_weights(ours.get_weights())
    ours.compile(pynn.optimizers.SGD(0.5), "mse")
    theirs.compile(keras.optimizers.SGD(0.5), "mse")
    for _ in range(3):
        ours.train_on_batch(tokens, y)
        theirs.train_on_batch(tokens, y)
    for a, b in zip(ours.get_weights(), [to_numpy(v.value) for v in theirs.weights]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)   # O(0.1) weights, 3 steps
    emb = ours.layers[1].get_weights()[0]
    norms = np.sqrt((emb ** 2).sum(axis=1))
    assert norms.max() <= 0.3 + 1e-6 and np.isclose(norms.max(), 0.3)   # active, not vacuous
    cfg = ours.layers[1].get_config()
    assert L.Embedding.from_config(cfg).get_config() == cfg


@pytest.mark.parametrize("kind", ["DepthwiseConv2D", "SeparableConv2D"])
def test_depthwise_constraints_match_keras(keras, kind):
    def body(mod, inp):
        extra = {"pointwise_constraint": mod.constraints.MaxNorm(0.5)} \
            if kind == "SeparableConv2D" else {}
        args = (2, 3) if kind == "SeparableConv2D" else (3,)
        h = getattr(mod.layers, kind)(*args, depthwise_constraint=mod.constraints.MaxNorm(0.4),
                                      bias_constraint=mod.constraints.NonNeg(), **extra)(inp)
        return mod.layers.Dense(2)(mod.layers.GlobalAveragePooling2D()(h))

    ours = _matches_keras(keras, ("dw-constraints", kind), (4, 6, 6, 3), 2, body)
    layer = ours.layers[1]
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.parametrize("read", [False, True])
def test_input_gradients_leave_the_penalties_out(read):
    # Model.input_gradient (saliency) is the outputs' gradient: a penalty on the path (read)
    # or on an output nothing reads must not add its term, in the core or the twin.
    from pynn.models.graph_spec import GraphSpec
    from pynn.reference import graph as ref_graph

    rng = case_rng("act-input-grad", read)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    seed = rng.standard_normal((5, 4)).astype(np.float32)

    def grads(with_penalty):
        spec = GraphSpec()
        t = spec.add_input((4,))
        if with_penalty:
            (p,) = L.ActivityRegularization(0.3, 0.2)._emit(spec, [t])
            t = p if read else t
        spec.outputs = L.Activation("tanh")._emit(spec, [t])
        out, cache = ref_graph.forward(spec, [x.astype(np.float64)])
        _, want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
        return spec.to_core().input_gradient([x], [seed])[0], want[0]

    (got, want), (plain, plain_twin) = grads(True), grads(False)
    np.testing.assert_array_equal(got, plain)
    np.testing.assert_allclose(want, plain_twin, rtol=0, atol=0)
    # float32 tanh' = 1 - tanh^2 near saturation: ~1e-7 absolute from a 1-ulp tanh
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # through a model, for every layer with a regularizer
    i = pynn.Input((4,))
    h = L.Dense(6, activation="tanh", activity_regularizer=pynn.regularizers.L2(0.7))(i)
    m = pynn.Model(i, L.Dense(2)(h))
    i2 = pynn.Input((4,))
    m2 = pynn.Model(i2, L.Dense(2)(L.Dense(6, activation="tanh")(i2)))
    m2.set_weights(m.get_weights())
    np.testing.assert_array_equal(m.input_gradient(x), m2.input_gradient(x))


def test_the_penalty_of_an_unread_output_trains_as_the_twin_says():
    # A penalty on an LSTM state nothing reads: the training gradient (twin) includes its
    # term, and pynn's step moves the weights as Keras's does (test_every_output_...).
    from pynn.models.graph_spec import GraphSpec
    from pynn.reference import graph as ref_graph

    rng = case_rng("act-unread-twin")
    x = rng.standard_normal((5, 4))
    spec = GraphSpec()
    t = spec.add_input((4,))
    L.ActivityRegularization(0.3, 0.2)._emit(spec, [t])   # read by nothing
    spec.outputs = L.Activation("tanh")._emit(spec, [t])
    _, cache = ref_graph.forward(spec, [x], training=True)
    _, with_pen = ref_graph.backward(spec, cache, [np.zeros((5, 4))])
    np.testing.assert_allclose(with_pen[0], (0.3 * np.sign(x) + 0.4 * x) / 5, rtol=1e-12)


def test_shared_layer_called_twice_is_penalized_per_call_as_in_keras(keras):
    rng = case_rng("act-shared")
    x = rng.standard_normal((12, 5)).astype(np.float32)
    y = rng.standard_normal((12, 2)).astype(np.float32)
    weights = {"pre": [rng.standard_normal((5, 5)), rng.standard_normal(5)],
               "shared": [rng.standard_normal((5, 4)), rng.standard_normal(4)],
               "out": [rng.standard_normal((8, 2)), rng.standard_normal(2)]}
    models = []
    for mod in (pynn, keras):
        layers = {"pre": mod.layers.Dense(5),
                  "shared": mod.layers.Dense(4, activation="tanh",
                                             activity_regularizer=mod.regularizers.L1L2(0.05,
                                                                                        0.1)),
                  "out": mod.layers.Dense(2)}
        inp = mod.Input((5,))
        a = layers["shared"](inp)
        b = layers["shared"](layers["pre"](inp))
        m = mod.Model(inp, layers["out"](mod.layers.Concatenate()([a, b])))
        for k, lay in layers.items():   # per layer: the two libraries list weights differently
            lay.set_weights([np.asarray(w, np.float32) * 0.5 for w in weights[k]])
        m.compile(mod.optimizers.SGD(0.1), "mse")
        models.append((m, layers))
    (ours, ol), (theirs, tl) = models
    # float32 losses summed in different orders: 1e-5 relative; weights O(1) after 3 steps
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0),
                               rtol=1e-5)
    for _ in range(3):
        ours.train_on_batch(x, y)
        theirs.train_on_batch(x, y)
    for k in ol:
        for a, b in zip(ol[k].get_weights(), tl[k].get_weights()):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_simple_rnn_applies_its_activity_regularizer():
    # Keras 3.15's SimpleRNN accepts and saves activity_regularizer but never hands it to its
    # base class (LSTM and GRU do), so Keras adds no penalty; pynn applies it as documented.
    rng = case_rng("act-simple-rnn")
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    y = rng.standard_normal((6, 2)).astype(np.float32)

    def loss(reg):
        pynn.utils.set_random_seed(3)
        m = pynn.Sequential([L.Input((4, 3)), L.SimpleRNN(5, activity_regularizer=reg),
                             L.Dense(2)])
        m.compile("sgd", "mse")
        return float(m.evaluate(x, y, verbose=0)), m

    plain, m = loss(None)
    h = m.layers[0](x)   # the SimpleRNN's output (its last h)
    got, _ = loss(pynn.regularizers.L2(0.5))
    np.testing.assert_allclose(got - plain, 0.5 * np.square(h).sum() / 6, rtol=1e-5)


def test_layers_inside_a_lambda_add_no_penalty_as_in_keras(keras):
    rng = case_rng("act-lambda")
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.standard_normal((8, 3)).astype(np.float32)
    res = []
    for mod in (pynn, keras):
        d = mod.layers.Dense(5, activity_regularizer=mod.regularizers.L2(0.5))
        inp = mod.Input((5,))
        h = mod.layers.Lambda(lambda z, d=d: d(z) + 1.0)(inp)
        f = mod.layers.Dense(3)
        m = mod.Model(inp, f(h))
        d.set_weights([np.full((5, 5), 0.2, np.float32), np.zeros(5, np.float32)])
        f.set_weights([np.full((5, 3), 0.1, np.float32), np.zeros(3, np.float32)])
        m.compile("sgd", "mse")
        res.append(float(np.ravel(m.evaluate(x, y, verbose=0))[0]))
    np.testing.assert_allclose(res[0], res[1], rtol=1e-5)


@pytest.mark.parametrize("make", [
    lambda r: L.SpatialDropout1D(0.2, activity_regularizer=r),
    lambda r: L.Discretization(bin_boundaries=[0.0], activity_regularizer=r),
    lambda r: L.ActivityRegularization(0.1, activity_regularizer=r),
])
def test_classes_whose_keras_twin_takes_no_activity_regularizer_refuse_it(make):
    # a file pynn wrote with it would not load in Keras
    with pytest.raises(TypeError, match="activity_regularizer"):
        make(pynn.regularizers.L1(0.1))
    make(None)


def test_functional_model_refuses_an_activity_regularizer():
    i = pynn.Input((3,))
    with pytest.raises(TypeError, match="activity_regularizer"):
        pynn.Model(i, L.Dense(2)(i), activity_regularizer="l2")


def test_weight_regularizer_errors_name_the_argument():
    with pytest.raises(ValueError, match="kernel_regularizer: unknown name"):
        L.Dense(2, kernel_regularizer="l3")
    with pytest.raises(TypeError, match="recurrent_regularizer: expected None"):
        L.LSTM(2, recurrent_regularizer=3)
    with pytest.raises(ValueError, match="embeddings_regularizer: unknown name"):
        L.Embedding(4, 2, embeddings_regularizer="L9")


def test_predict_fuses_the_dense_chain_past_activity_penalties():
    # predict wants no loss: the penalty nodes are the identity there, so an MLP with
    # activity regularizers still takes the fused dense chain and gives its bits
    rng = case_rng("act-chain")
    x = rng.standard_normal((37, 6)).astype(np.float32)
    reg = pynn.regularizers.L1L2(0.1, 0.1)
    m = pynn.Sequential([L.Input((6,)), L.Dense(16, activation="relu", activity_regularizer=reg),
                         L.Dense(8, activation="tanh", activity_regularizer=reg),
                         L.Dense(3, activation="softmax")])
    plain = pynn.Sequential([L.Input((6,)), L.Dense(16, activation="relu"),
                             L.Dense(8, activation="tanh"), L.Dense(3, activation="softmax")])
    plain.set_weights(m.get_weights())
    assert m._ensure_graph().dense_chain_layers() == 3
    for rows in (x[:1], x):
        np.testing.assert_array_equal(m.predict(rows, verbose=0), plain.predict(rows, verbose=0))
    m.compile("sgd", "sparse_categorical_crossentropy")
    plain.compile("sgd", "sparse_categorical_crossentropy")
    y = rng.integers(0, 3, 37)
    # evaluate still counts the penalties
    assert m.evaluate(x, y, verbose=0) > plain.evaluate(x, y, verbose=0)
