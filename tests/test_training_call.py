"""Keras's eager training-mode calls: ``model(x, training=True)`` and
``layer(x, training=True)`` run one forward pass in training mode (Graph.forward_train)."""
import numpy as np
import pytest

import pynn
from pynn import layers

pytestmark = pytest.mark.filterwarnings(   # Keras 3.15's variables under NumPy 2
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _x(n=64, f=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32)


def test_dropout_layer_call_drops_in_training_only():
    x = _x()
    d = layers.Dropout(0.5, seed=1)
    a, b = d(x, training=True), d(x, training=True)
    for out in (a, b):
        kept = out != 0
        # 512 entries at p = 0.5: the kept fraction is within 5 sigma (0.11) of 0.5
        assert abs(kept.mean() - 0.5) < 0.11
        np.testing.assert_array_equal(out[kept], 2 * x[kept])   # scaled by 1 / (1 - rate)
    assert (a != b).any(), "each training call draws a new mask"
    np.testing.assert_array_equal(d(x), x)
    np.testing.assert_array_equal(d(x, training=False), x)
    images = np.ones((3, 4, 5, 2), np.float32)   # per-sample shapes come back whole
    assert layers.SpatialDropout2D(0.5, seed=1)(images, training=True).shape == images.shape


def test_layer_training_calls_are_reproducible_from_the_seed():
    x = _x()
    d1, d2 = layers.Dropout(0.4, seed=7), layers.Dropout(0.4, seed=7)
    first = [d1(x, training=True) for _ in range(3)]
    second = [d2(x, training=True) for _ in range(3)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_training_call_matches_keras():
    keras = pytest.importorskip("keras")
    x = _x(32, 6, seed=3) * 3 + 1
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5),
                           keras.layers.BatchNormalization(momentum=0.9)])
    pm = pynn.Sequential([layers.Input((6,)), layers.Dense(5),
                          layers.BatchNormalization(momentum=0.9)])
    pm.set_weights([np.asarray(w) for w in km.get_weights()])
    for _ in range(2):   # twice: the second call starts from the updated moving statistics
        ko = np.asarray(km(x, training=True).detach().cpu().numpy())
        po = pm(x, training=True)
        # float32 batch statistics summed in different orders: a few ulp of values ~1
        np.testing.assert_allclose(po, ko, atol=2e-5)
    for pw, kw in zip(pm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(pw, np.asarray(kw), atol=2e-6)
    # inference afterwards uses the moving statistics both sides
    np.testing.assert_allclose(pm.predict(x, verbose=0), km.predict(x, verbose=0), atol=2e-5)


def test_model_training_call_leaves_weights_and_fit_alone():
    x, y = _x(96, 8, seed=4), np.random.default_rng(5).integers(0, 3, 96)

    def model():
        m = pynn.Sequential([layers.Input((8,)), layers.Dense(16, activation="relu"),
                             layers.Dropout(0.3, seed=2), layers.Dense(3, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        m.set_weights([np.full_like(w, 0.01 * (k + 1)) + 0.1 * np.sin(np.arange(w.size))
                       .reshape(w.shape).astype(np.float32) for k, w in enumerate(m.get_weights())])
        return m

    a, b = model(), model()
    before = [w.copy() for w in a.get_weights()]
    o1, o2 = a(x, training=True), a(x, training=True)
    assert o1.shape == (96, 3)
    np.testing.assert_allclose(o1.sum(axis=1), 1, atol=1e-6)
    assert (o1 != o2).any()                      # dropout active, a new mask per call
    assert not np.array_equal(o1, a(x))          # and not the inference output
    for w0, w1 in zip(before, a.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    # the eager calls draw from streams of their own: training afterwards is unchanged
    a.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    b.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_training_call_after_fit_updates_what_predict_reads():
    x = _x(40, 4, seed=6)
    m = pynn.Sequential([layers.Input((4,)), layers.BatchNormalization()])
    m.compile(optimizer="sgd", loss="mse")
    m.fit(x, x, epochs=1, batch_size=40, verbose=0)
    before = m.predict(x, verbose=0)
    out = m(x + 5.0, training=True)
    # batch statistics: the shifted batch is normalised to mean beta per feature
    beta = m.layers[0].get_weights()[1]
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-5)
    assert not np.allclose(m.predict(x, verbose=0), before)   # moving statistics moved


def test_functional_multi_output_training_call():
    inp = layers.Input((8,))
    h = layers.Dropout(0.5, seed=3)(inp)
    m = pynn.Model(inp, {"a": layers.Dense(2)(h), "b": layers.Dense(1)(h)})
    out = m(_x(10), training=True)
    assert set(out) == {"a", "b"} and out["a"].shape == (10, 2) and out["b"].shape == (10, 1)


def test_training_call_rejects_bad_input():
    m = pynn.Sequential([layers.Input((8,)), layers.Dense(2)])
    with pytest.raises(ValueError):
        m(np.zeros((4, 7), np.float32), training=True)


def test_model_training_call_runs_augmentation():
    x = np.random.default_rng(8).normal(size=(32, 5, 5, 1)).astype(np.float32)
    m = pynn.Sequential([layers.Input((5, 5, 1)), layers.RandomFlip("horizontal", seed=4)])
    np.testing.assert_array_equal(m(x), x)        # inference: identity
    out = m(x, training=True)
    flipped = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)]
    same = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same))   # each image flipped or left alone
    assert 4 <= sum(flipped) <= 28   # p = 1/2 over 32 images: outside this is ~1e-4 likely
