"""The fused predict path for chains of Dense layers (csrc/nn/dense_chain.cpp): Graph.predict
of an MLP on 128 rows or more runs every layer of a block of rows in one task, with the
weights packed once per call.

Held against: the NumPy twin (pynn.reference.graph.predict in float64), and bitwise against
the general path (the same rows predicted in calls of fewer than 128 rows, which run the
per-layer GEMMs) and the one-row kernel. Tolerance against the twin: float32 sums of k
products, each rounded, err by about k * 2^-24 * sum |x w| in the worst case and sqrt(k)
times that typically; rtol 2e-5 * sqrt(k of the widest layer) and atol 1e-5 leave a margin of
about ten while a wrong panel, column or bias is off by far more.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.reference import graph as ref_graph

CHAIN_ROWS = 300   # >= the engine's threshold for the fused path (128)
SMALL = 100        # < the threshold: the general path


@pytest.fixture
def threads():
    before = pynn.get_num_threads()
    yield pynn.set_num_threads
    pynn.set_num_threads(before)


def mlp(sizes, acts, seed=0, use_bias=True, extra=()):
    pynn.utils.set_random_seed(seed)
    layers = [pynn.Input((sizes[0],)), *extra]
    for units, act in zip(sizes[1:], acts):
        layers.append(L.Dense(units, activation=act, use_bias=use_bias))
    m = pynn.Sequential(layers)
    m.build()
    rng = np.random.default_rng(seed + 1)
    # biases away from zero, so that a dropped or misplaced bias shows
    m.set_weights([w + (0.1 * rng.standard_normal(w.shape)).astype(np.float32)
                   for w in m.get_weights()])
    return m


def general(m, x):
    """The same rows through the general path (calls below the chain threshold)."""
    return np.concatenate([m.predict(x[i:i + SMALL], verbose=0)
                           for i in range(0, len(x), SMALL)])


def twin(m, x):
    return ref_graph.predict(m._pspec, [x.astype(np.float64)])[0]


def same_bits(a, b, what):
    """Bitwise equality, NaN payloads and the sign of zero included."""
    assert a.shape == b.shape, what
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=what)


def check(m, x, k_max):
    got = m.predict(x, verbose=0)
    assert got.dtype == np.float32 and got.shape == (len(x), m.layers[-1].units)
    same_bits(got, general(m, x), "fused vs general path")
    same_bits(got[:3], np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(3)]),
              "fused vs one-row path")
    np.testing.assert_allclose(got, twin(m, x), rtol=2e-5 * np.sqrt(k_max), atol=1e-5,
                               err_msg="fused vs NumPy twin")
    return got


@pytest.mark.parametrize("sizes", [
    [784, 256, 128, 10],          # the benchmark MLP (K panels 392 + 392)
    [1, 1],                       # one input, one unit
    [33, 31, 32, 33, 17],         # columns around the 32-wide tile
    [70, 65, 64, 63, 48, 17, 16],  # around the 64-wide tile and its 16-column vectors
    [513, 40], [1025, 3],         # K around and over panel depths
    [300, 5, 600, 2],             # a narrow layer in the middle
])
@pytest.mark.parametrize("rows", [128, 145, CHAIN_ROWS])
def test_chain_matches_general_path_and_twin(sizes, rows, threads):
    threads(2)
    acts = ["relu"] * (len(sizes) - 2) + ["softmax"]
    m = mlp(sizes, acts)
    x = np.random.default_rng(rows).standard_normal((rows, sizes[0])).astype(np.float32)
    check(m, x, max(sizes))


@pytest.mark.parametrize("acts", [["tanh", "sigmoid"], ["gelu", "linear"],
                                  ["leaky_relu", "softmax"], ["elu", "silu"]])
def test_chain_activations(acts, threads):
    threads(1)
    m = mlp([50, 70, 9], acts, seed=2)
    x = np.random.default_rng(3).standard_normal((CHAIN_ROWS, 50)).astype(np.float32)
    check(m, x, 70)


@pytest.mark.parametrize("use_bias", [True, False])
def test_chain_special_values(use_bias, threads):
    """NaN, infinities and -0 in the input: the fused epilogue keeps NaN through relu, maps
    -0 to +0, exactly as the general path's activation does."""
    threads(1)
    m = mlp([40, 45, 33, 3], ["relu", "relu", "linear"], seed=13, use_bias=use_bias)
    x = np.random.default_rng(14).standard_normal((CHAIN_ROWS, 40)).astype(np.float32)
    x[5, 3] = np.nan
    x[17, :] = -0.0
    x[40, 7] = np.inf
    x[41, 8] = -np.inf
    x[60:80, :] = 0.0
    got = m.predict(x, verbose=0)
    same_bits(got, general(m, x), "fused vs general path")
    assert np.isnan(got[5]).all() and np.isfinite(got[100:]).all()


def test_chain_without_bias_and_through_views(threads):
    threads(2)
    pynn.utils.set_random_seed(4)
    m = pynn.Sequential([pynn.Input((6, 7)), L.Flatten(), L.Dense(20, activation="relu",
                                                                   use_bias=False),
                         L.Dropout(0.5), L.Dense(4, activation="softmax", use_bias=False)])
    m.build()
    x = np.random.default_rng(5).standard_normal((CHAIN_ROWS, 6, 7)).astype(np.float32)
    got = m.predict(x, verbose=0)
    same_bits(got, general(m, x), "fused vs general path")
    np.testing.assert_allclose(got, twin(m, x), rtol=1e-4, atol=1e-6)


def test_chain_thread_counts_and_non_contiguous_input(threads):
    m = mlp([784, 256, 128, 10], ["relu", "relu", "softmax"], seed=6)
    big = np.random.default_rng(7).random((1000, 1568), dtype=np.float32)
    x = big[:, ::2]                      # strided: converted before the engine sees it
    outs = []
    for t in (1, 2):
        threads(t)
        outs.append(m.predict(x, verbose=0))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], m.predict(np.ascontiguousarray(x), verbose=0))
    np.testing.assert_array_equal(outs[0][:SMALL], m.predict(x[:SMALL], verbose=0))


def test_chain_sees_every_weight_change(tmp_path, threads):
    """The fused path packs the weights it reads: each way of changing them must show."""
    threads(2)
    m = mlp([30, 20, 3], ["relu", "softmax"], seed=8)
    x = np.random.default_rng(9).standard_normal((CHAIN_ROWS, 30)).astype(np.float32)
    before = m.predict(x, verbose=0)

    def changed(what):
        got = m.predict(x, verbose=0)
        assert not np.array_equal(got, before), what
        np.testing.assert_allclose(got, twin(m, x), rtol=1e-4, atol=1e-6, err_msg=what)
        np.testing.assert_array_equal(got, general(m, x), err_msg=what)
        return got

    w = m.get_weights()
    m.set_weights([v * 1.5 for v in w])
    before = changed("set_weights")
    m.layers[0].kernel.assign(w[0] * 0.5)
    before = changed("kernel.assign")
    m.save_weights(tmp_path / "a.weights.h5")
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    m.fit(x, np.arange(CHAIN_ROWS) % 3, epochs=1, batch_size=64, verbose=0)
    before = changed("fit")
    m.load_weights(tmp_path / "a.weights.h5")
    changed("load_weights")


def test_chain_from_several_python_threads(threads):
    threads(2)
    m = mlp([64, 48, 5], ["relu", "softmax"], seed=10)
    xs = [np.random.default_rng(11 + i).standard_normal((CHAIN_ROWS + 37 * i, 64))
          .astype(np.float32) for i in range(4)]
    want = [m.predict(x, verbose=0) for x in xs]
    got: dict = {}
    errors: list = []

    def work(i):
        try:
            for _ in range(5):
                got[i] = m.predict(xs[i], verbose=0)
                np.testing.assert_array_equal(got[i], want[i])
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("middle", ["batchnorm", "activation", "bf16"])
def test_graphs_that_are_not_chains_take_the_general_path(middle, threads):
    """A dense layer, then an op the fused path does not run, then more dense layers: the
    general path computes it (and nothing of the partial chain is kept)."""
    threads(2)
    pynn.utils.set_random_seed(15)
    mid = {"batchnorm": L.BatchNormalization(), "activation": L.Activation("tanh"),
           "bf16": L.Dense(12, activation="relu", dtype="mixed_bfloat16")}[middle]
    m = pynn.Sequential([pynn.Input((20,)), L.Dense(12, activation="relu"), mid,
                         L.Dense(7, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(16).standard_normal((CHAIN_ROWS, 20)).astype(np.float32)
    m.fit(x, np.arange(CHAIN_ROWS) % 7, epochs=1, batch_size=64, verbose=0)
    got = m.predict(x, verbose=0)
    same_bits(got, general(m, x), "300 rows vs calls of 100")
    same_bits(got[:2], np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(2)]),
              "300 rows vs one row")
    np.testing.assert_allclose(got, twin(m, x), rtol=2e-2 if middle == "bf16" else 1e-4,
                               atol=1e-3 if middle == "bf16" else 1e-6)


def test_chain_bad_input_is_a_clear_error():
    m = mlp([10, 4], ["relu"], seed=12)
    with pytest.raises(ValueError, match="10"):
        m.predict(np.zeros((CHAIN_ROWS, 11), np.float32), verbose=0)


@pytest.mark.parametrize("sizes", [
    [784, 256, 128, 10],          # the benchmark MLP: layer 1 split among threads
    [2100, 80, 40],               # split into 64 + 16 columns: a narrow thread's range
    [1100, 129, 33, 32, 31],      # widths around one and two vectors and the 128-column pass
    [600, 257, 300, 3],           # a column pass of one vector after two full ones
    [1030, 300],                  # three K panels
])
@pytest.mark.parametrize("density", [0.0, 0.3, 0.875, 0.9, 1.0])
def test_one_row_kernel_on_sparse_rows(sizes, density, threads):
    """One row (the one-row kernel, which skips the weights of zero inputs when a K panel has
    under 7/8 of them nonzero) against the same row computed with others (the general path,
    which reads every weight): bitwise the same on 1 and 2 threads, -0, NaN and all-zero
    rows included, and against the twin."""
    acts = ["relu"] * (len(sizes) - 2) + ["softmax"]
    m = mlp(sizes, acts, seed=20)
    rng = np.random.default_rng(21)
    x = rng.standard_normal((6, sizes[0])).astype(np.float32)
    x[rng.random(x.shape) >= density] = 0.0
    x[1, ::5] = -0.0
    x[2, 7] = np.nan
    x[3, :16] = 0.0     # a whole vector of the scan zero
    x[4, -17:] = 0.0    # a partial last vector zero
    x[5] = 0.0
    want = {}
    for t in (1, 2):
        threads(t)
        rows = np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(len(x))])
        pairs = np.concatenate([m.predict(x[i:i + 2], verbose=0)[:1] for i in range(len(x))])
        same_bits(rows, pairs, f"one-row kernel vs general path, {t} threads")
        want[t] = rows
    same_bits(want[1], want[2], "1 vs 2 threads")
    assert np.isnan(want[1][2]).all()
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(want[1][keep], twin(m, x[keep]), rtol=2e-5 * np.sqrt(max(sizes)),
                               atol=1e-5, err_msg="one row vs NumPy twin")


@pytest.mark.parametrize("rows", [128, 129, 191, 192, 193, 1000, 1001, 2047])
def test_chain_row_counts_on_one_and_two_threads(rows, threads):
    """Row counts around the block sizes and under one block a thread: the blocks handed out
    to the threads give bitwise the 1-thread result and the general path's."""
    m = mlp([100, 70, 40, 6], ["relu", "relu", "softmax"], seed=30)
    x = np.random.default_rng(rows).standard_normal((rows, 100)).astype(np.float32)
    got = {}
    for t in (1, 2):
        threads(t)
        got[t] = m.predict(x, verbose=0)
    same_bits(got[1], got[2], "1 vs 2 threads")
    same_bits(got[2], general(m, x), "fused vs general path")


def test_predict_starts_a_thread_per_thread_not_per_block():
    """A 2-thread predict of many rows, on the fused path and the general one (chunks), uses
    the pool's one worker: a region of one task per block or chunk started a thread for each
    (hundreds on two CPUs, all woken at every call)."""
    code = """if True:
        import numpy as np, pynn
        from pynn import _core, layers as L
        pynn.set_num_threads(2)
        for extra in ([], [L.BatchNormalization()]):
            m = pynn.Sequential([pynn.Input((50,)), L.Dense(40, activation="relu"), *extra,
                                 L.Dense(5, activation="softmax")])
            m.build()
            m.predict(np.ones((5000, 50), np.float32), verbose=0)
        print(_core.pool_info()["workers"])
    """
    import subprocess
    import sys

    # cwd "/": from the checkout, `import pynn` would find the source tree (without _core)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == 1, out.stdout
