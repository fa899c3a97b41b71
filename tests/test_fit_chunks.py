"""fit runs batches several at a time in the core when nothing needs the model between them
(Graph.train_steps): the weights, optimizer state and logs must be bitwise those of the
one-batch-per-call loop, on 1 and 2 threads."""
import numpy as np
import pytest

import pynn
from pynn import layers


class _BatchHook(pynn.callbacks.Callback):
    """Has a batch hook, so fit keeps to one batch per call."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1


def _model():
    model = pynn.Sequential([pynn.Input((12,)), layers.Dense(16, activation="relu"),
                             layers.Dense(5, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((301, 12)).astype(np.float32)   # 301: a short last batch
    y = rng.integers(0, 5, 301)
    return x, y


@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_fit_is_bitwise_the_per_batch_fit(threads):
    x, y = _data()
    runs = []
    for hook in (None, _BatchHook()):
        with _threads(threads):
            pynn.utils.set_random_seed(7)
            model = _model()
            hist = model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                             callbacks=None if hook is None else [hook])
        runs.append(([w.copy() for w in model.get_weights()], hist.history,
                     model.optimizer.iterations))
        if hook is not None:
            assert hook.seen == 3 * 10   # the per-batch loop really ran
    (w0, h0, it0), (w1, h1, it1) = runs
    assert h0 == h1
    assert int(it0) == int(it1) == 30
    for a, b in zip(w0, w1):
        assert np.array_equal(a, b)


def test_steps_per_epoch_and_stop_training_in_chunks():
    x, y = _data()
    pynn.utils.set_random_seed(1)
    model = _model()
    model.fit(x, y, batch_size=32, epochs=2, steps_per_epoch=4, verbose=0)
    assert int(model.optimizer.iterations) == 8


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = pynn.get_num_threads()
        pynn.set_num_threads(self.n)

    def __exit__(self, *exc):
        pynn.set_num_threads(self.old)


def test_train_steps_bad_arguments():
    x, y = _data()
    model = _model()
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
    g = model._graph
    order = np.arange(64, dtype=np.int64)
    labels = y.astype(np.int32)
    with pytest.raises(ValueError, match="batch_size"):
        g.train_steps([x], [labels], None, order, 0)
    with pytest.raises(TypeError, match="order"):
        g.train_steps([x], [labels], None, None, 32)
    with pytest.raises(IndexError, match="idx"):
        g.train_steps([x], [labels], None, np.array([0, 400], np.int64), 32)
    totals, losses, correct = g.train_steps([x], [labels], None, order, 32)
    assert totals.shape == (2,) and losses.shape == (2, 1) and correct.shape == (2, 1)


@pytest.mark.parametrize("threads", [1, 2])
def test_first_non_finite(threads):
    from pynn import _core

    with _threads(threads):
        n = (1 << 20) + 4099   # beyond the size split among threads; blocks of 4096 and a tail
        a = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        assert _core.first_non_finite(a) == -1
        assert _core.first_non_finite(np.zeros(0, np.float32)) == -1
        big = np.full(5, np.finfo(np.float32).max, np.float32)   # largest finite: finite
        assert _core.first_non_finite(big) == -1
        for pos in [0, 4095, 4096, n // 2 - 1, n // 2 + 1, n - 1]:
            for bad in (np.nan, np.inf, -np.inf):
                b = a.copy()
                b[pos] = bad
                b[-1] = np.nan if pos < n - 1 else b[-1]   # a later one must not win
                assert _core.first_non_finite(b) == pos
        m = a[: 64 * 100].reshape(64, 100).copy()
        m[3, 7] = np.nan
        assert _core.first_non_finite(m) == 3 * 100 + 7
    with pytest.raises(TypeError, match="float32"):
        _core.first_non_finite(np.zeros(3))
    with pytest.raises(ValueError, match="contiguous"):
        _core.first_non_finite(m[:, ::2])


def test_fit_names_the_first_non_finite_input():
    x, y = _data()
    x = x.copy()
    x[17, 4] = np.inf
    model = _model()
    with pytest.raises(ValueError, match="sample 17, feature 4"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,inp,out", [(128, 128, 10), (1, 5, 3), (600, 33, 16), (7, 40, 1),
                                       (1100, 64, 10), (50, 17, 17), (9, 3, 10)])
def test_narrow_weight_gradient_is_bitwise_the_product(threads, n, inp, out):
    # dense_backward computes dW of a layer with <= 16 outputs as the transpose of dz^T x:
    # bitwise x^T dz as the GEMM gives it (n > 512: two K panels; 17 outputs: the plain path;
    # in <= out: the plain path), x also read with a row stride
    from pynn import _core

    rng = np.random.default_rng(n + inp + out)
    xs = rng.standard_normal((n, inp + 3)).astype(np.float32)
    x = xs[:, :inp]                       # ldx > in
    W = rng.standard_normal((inp, out)).astype(np.float32)
    dy = rng.standard_normal((n, out)).astype(np.float32)
    y = np.zeros((n, out), np.float32)
    with _threads(threads):
        _, dW, db = _core.dense_backward(x, W, None, y, dy, "linear")
        want = np.empty((inp, out), np.float32)
        _core.gemm(np.ascontiguousarray(x).T, dy, want, 1.0, 0.0, None, "linear", [], None, 0)
    np.testing.assert_array_equal(dW.view(np.uint32), want.view(np.uint32))
    # and against float64 (the sum of n products: rel. error ~1e-7 * sqrt(n) of the terms)
    np.testing.assert_allclose(dW, x.astype(np.float64).T @ dy, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,inp,out", [(128, 256, 128), (130, 77, 260)])
def test_dense_backward_two_threads_is_bitwise_one_thread(n, inp, out):
    # on two threads the dW and dx products of a large enough layer run side by side, one
    # per thread: bitwise what one thread computes
    from pynn import _core

    rng = np.random.default_rng(n * inp)
    x = rng.standard_normal((n, inp)).astype(np.float32)
    W = rng.standard_normal((inp, out)).astype(np.float32)
    y, z = _core.dense_forward(x, W, None, "relu", [], True, 1)
    dy = rng.standard_normal((n, out)).astype(np.float32)
    res = [_core.dense_backward(x, W, z, y, dy, "relu", [], True, False, None, None, False, t)
           for t in (1, 2)]
    for a, b in zip(*res):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    dz = np.where(z > 0, dy, 0)
    np.testing.assert_allclose(res[0][1], x.astype(np.float64).T @ dz, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(res[0][0], dz.astype(np.float64) @ W.T, rtol=1e-4, atol=1e-3)


class _StopAtEpochBegin(pynn.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.model.stop_training = True


def test_stop_training_before_the_epoch_runs_one_batch_as_per_batch_fit():
    x, y = _data()
    counts = []
    for extra in ([], [_BatchHook()]):
        pynn.utils.set_random_seed(2)
        model = _model()
        model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                  callbacks=[_StopAtEpochBegin()] + extra)
        counts.append(int(model.optimizer.iterations))
    assert counts == [1, 1]


@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_fit_of_a_two_input_model_with_sample_weights(threads):
    # each step's rows are gathered during the previous step's update (train_steps): two
    # inputs of different widths, sample weights, a short last batch and an unshuffled epoch
    rng = np.random.default_rng(8)
    xa = rng.standard_normal((203, 7)).astype(np.float32)
    xb = rng.standard_normal((203, 300)).astype(np.float32)
    y = rng.integers(0, 3, 203)
    sw = rng.random(203).astype(np.float32)
    runs = []
    for hook in (None, _BatchHook()):
        with _threads(threads):
            pynn.utils.set_random_seed(4)
            a = pynn.Input(shape=(7,), name="a")
            b = pynn.Input(shape=(300,), name="b")
            h = layers.Dense(64, activation="relu")(layers.Concatenate()([a, b]))
            model = pynn.Model([a, b], layers.Dense(3, activation="softmax")(h))
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            for shuffle in (True, False):
                hist = model.fit([xa, xb], y, sample_weight=sw, batch_size=16, epochs=2,
                                 shuffle=shuffle, verbose=0,
                                 callbacks=None if hook is None else [hook])
        runs.append(([w.copy() for w in model.get_weights()], hist.history))
    assert runs[0][1] == runs[1][1]
    for p, q in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(p, q)
