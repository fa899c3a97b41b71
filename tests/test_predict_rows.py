"""Predict's output of a row must not depend on the rows computed with it, on how predict cuts
the call into chunks and threads (batch_size, the C++ chunk, one region per chunk or per op),
nor on the entry point (predict, predict_on_batch, calling the model).

Every comparison is bitwise (`np.array_equal`): inference is row-independent in pynn (no op
reduces over the batch axis), the GEMM's direct and packed paths give the same bits (see
tests/test_gemm_small.py), so the only way two of these could differ is a bug. The reference
is each row predicted alone, one thread.
"""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import layers as L

ROWS = [1, 15, 16, 17, 1000]


@pytest.fixture(scope="module")
def mlp():
    # the Fashion-MNIST MLP of the predict benchmark, with bias values that are not zero
    pynn.utils.set_random_seed(3)
    m = pynn.Sequential([pynn.Input((784,)), L.Dense(256, activation="relu"),
                         L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
    m.build()
    rng = np.random.default_rng(4)
    m.set_weights([w + (0.05 * rng.standard_normal(w.shape)).astype(np.float32)
                   for w in m.get_weights()])
    return m


@pytest.fixture
def threads():
    before = pynn.get_num_threads()
    yield pynn.set_num_threads
    pynn.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(5).random((max(ROWS), 784), dtype=np.float32)


@pytest.fixture(scope="module")
def alone(mlp, data):
    """Each of the first rows predicted on its own, one thread: the reference."""
    before = pynn.get_num_threads()
    pynn.set_num_threads(1)
    try:
        return np.concatenate([mlp.predict(data[i:i + 1], verbose=0) for i in range(64)])
    finally:
        pynn.set_num_threads(before)


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("rows", ROWS)
def test_predict_independent_of_batching(mlp, data, alone, threads, nthreads, rows):
    threads(nthreads)
    x = data[:rows]
    want = mlp.predict(x, verbose=0)
    assert want.shape == (rows, 10) and want.dtype == np.float32
    # the first rows against the same rows predicted one at a time
    assert np.array_equal(want[:64], alone[:rows])
    for bs in sorted({1, 7, 16, 32, 256, rows, rows + 5}):
        got = mlp.predict(x, batch_size=bs, verbose=0)
        assert np.array_equal(got, want), f"batch_size={bs}"
    assert np.array_equal(mlp.predict_on_batch(x), want)
    assert np.array_equal(mlp(x), want)
    # the engine's own chunking (one region per chunk when there are many chunks)
    graph = mlp._predict_graph()
    for chunk in sorted(c for c in {1, 3, 16, 100, 256, rows} if rows // c <= 64):
        out = np.full((rows, 10), np.nan, np.float32)
        graph.predict([x], [out], chunk)
        assert np.array_equal(out, want), f"chunk={chunk}"


def test_predict_non_contiguous_and_float64(mlp, data, alone, threads):
    # inputs that take the converting path give the same bits as the fast path
    threads(2)
    x64 = data[:40].astype(np.float64)
    assert np.array_equal(mlp.predict(x64, verbose=0)[:40], alone[:40])
    wide = np.zeros((40, 2 * 784), np.float32)
    wide[:, ::2] = data[:40]
    assert np.array_equal(mlp.predict(wide[:, ::2], verbose=0), alone[:40])


def test_predict_threads_run_chunks(mlp, data, threads):
    # many chunks on two threads: one parallel region for the whole call, and the same bits
    # as on one thread
    from pynn import _core

    threads(1)
    want = mlp.predict(data, batch_size=1000, verbose=0)
    threads(2)
    before = _core.pool_info()
    got = mlp.predict(data, batch_size=1000, verbose=0)
    after = _core.pool_info()
    assert np.array_equal(got, want)
    regions = (after["regions"] + after["inline_regions"]
               - before["regions"] - before["inline_regions"])
    assert regions == 1


def test_fast_path_keeps_the_output_structure(threads):
    # a functional model whose single output was given as a list returns a list, on the fast
    # path (float32 C-contiguous input, graph already built) as on the converting one
    threads(1)
    i = pynn.Input((6,))
    m = pynn.Model(i, [L.Dense(3)(i)])
    x = np.random.default_rng(6).random((4, 6), dtype=np.float32)
    first = m.predict(x, verbose=0)        # builds the graph
    again = m.predict(x, verbose=0)        # fast path
    conv = m.predict(x.astype(np.float64), verbose=0)
    called = m(x)
    for got in (first, again, conv, called):
        assert isinstance(got, list) and len(got) == 1
        assert np.array_equal(got[0], first[0])


def test_weights_the_engine_reads_start_on_a_cache_line(tmp_path):
    """Every weight array starts on a 64-byte boundary (whole-line vector loads in the
    kernels), as built, after set_weights, and after a save and load."""
    model = pynn.Sequential([pynn.Input((784,)), L.Dense(256, activation="relu"), L.Dense(10)])

    def offsets(m):
        return [w.value.ctypes.data % 64 for layer in m.layers for w in layer._all_weights()]

    assert offsets(model) == [0, 0, 0, 0]
    model.set_weights([w + 1.0 for w in model.get_weights()])
    assert offsets(model) == [0, 0, 0, 0]
    path = str(tmp_path / "m.safetensors")
    model.save(path)
    again = pynn.load_model(path)
    assert offsets(again) == [0, 0, 0, 0]
    x = np.ones((2, 784), np.float32)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
