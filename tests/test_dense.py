"""The C++ dense kernels (pynn._core.dense_*) against the float64 NumPy twin.

Tolerances: every output is a float32 dot product (or column sum) of length k, whose error is
at most about (k + c) * u * (the same sum taken over absolute values), u = 2**-24 (Higham,
ch. 3), where the few extra roundings c cover the bias, the activation (a few ulps) and its
derivative. |act'| <= 1 for the activations used here, so sums over |dy| bound those over |dz|.
An indexing or packing mistake misses these bounds by orders of magnitude.
"""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import _core
from pynn.reference import dense as ref

U = 2.0 ** -24
INFO = pynn.kernel_info()
MR, NR = INFO["MR"], INFO["NR"]
ACTS = ["linear", "relu", "sigmoid", "tanh"]
SLACK = 16  # extra roundings: bias, activation, derivative, transposition of the sum order

# Batch sizes, input and output widths around the blocksizes and the SIMD width 16.
SIZES = sorted({0, 1, 2, 7, 13, 16, 17, MR - 1, MR, MR + 1, NR - 1, NR, NR + 1, 2 * MR + 1, 50})


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def forward_bound(x, W, b):
    k = x.shape[1]
    mag = np.abs(x.astype(np.float64)) @ np.abs(W.astype(np.float64)) + np.abs(b)
    return (k + SLACK) * U * mag + 1e-38


def check_forward(x, W, b, act):
    y, z = _core.dense_forward(x, W, b, act, [], True)
    y_ref, z_ref = ref.dense_forward(x, W, b, act)
    tol = forward_bound(x, W, b)
    assert y.dtype == np.float32 and y.shape == y_ref.shape
    assert np.all(np.abs(z - z_ref) <= tol), f"z off for {act} {x.shape}x{W.shape}"
    # Every activation used here is 1-Lipschitz, so the error in z carries over to y.
    assert np.all(np.abs(y - y_ref) <= tol + SLACK * U * np.abs(y_ref)), f"y off for {act}"
    return y, z


def check_backward(x, W, z, y, dy, act):
    dx, dW, db = _core.dense_backward(x, W, z, y, dy, act)
    # The twin gets the same float32 z so that both take the same side of relu's kink.
    dx_ref, dW_ref, db_ref = ref.dense_backward(x, W, z, dy, act)
    ady = np.abs(dy.astype(np.float64))
    n, out = dy.shape
    np.testing.assert_array_less(np.abs(dW - dW_ref), (n + SLACK) * U * (np.abs(x.T) @ ady) + 1e-38)
    np.testing.assert_array_less(np.abs(db - db_ref), (n + SLACK) * U * ady.sum(axis=0) + 1e-38)
    np.testing.assert_array_less(np.abs(dx - dx_ref), (out + SLACK) * U * (ady @ np.abs(W.T)) + 1e-38)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == (W.shape[1],)


@pytest.mark.parametrize("act", ACTS)
def test_forward_backward_against_twin_on_edge_sizes(act):
    rng = np.random.default_rng(ACTS.index(act))
    shapes = [(n, k, m) for n in SIZES for k in (0, 1, 5, 17, 33) for m in SIZES if n * m <= 2500]
    shapes += [(MR * 3 + 5, 400, NR * 3 + 7), (97, 129, 65)]
    for n, k, m in shapes:
        x, W, b = f32(rng, n, k), f32(rng, k, m, scale=0.5), f32(rng, m)
        y, z = check_forward(x, W, b, act)
        check_backward(x, W, z, y, f32(rng, n, m), act)


def test_big_layer_and_non_contiguous_x():
    rng = np.random.default_rng(5)
    wide = f32(rng, 130, 800)
    x = wide[:, 3:787]  # a column slice: rows of stride 800, read in place
    assert not x.flags.c_contiguous
    W, b = f32(rng, 784, 70, scale=0.05), f32(rng, 70)
    y, z = check_forward(x, W, b, "relu")
    check_backward(x, W, z, y, f32(rng, 130, 70), "relu")
    y2, _ = _core.dense_forward(np.ascontiguousarray(x), W, b, "relu", [], False)
    np.testing.assert_array_equal(y, y2)


def test_no_bias_no_z_and_skipped_dx():
    rng = np.random.default_rng(6)
    x, W = f32(rng, 9, 5), f32(rng, 5, 4)
    y, z = _core.dense_forward(x, W, None, "linear", [], False)
    assert z is None
    np.testing.assert_allclose(y, x.astype(np.float64) @ W, rtol=1e-5, atol=1e-6)
    dy = f32(rng, 9, 4)
    dx, dW, db = _core.dense_backward(x, W, None, y, dy, "linear", compute_dx=False)
    assert dx is None
    np.testing.assert_allclose(dW, x.T.astype(np.float64) @ dy, rtol=1e-5, atol=1e-6)


def test_dy_untouched_unless_overwrite_and_dz_written():
    rng = np.random.default_rng(7)
    x, W, b = f32(rng, 20, 6), f32(rng, 6, 40), f32(rng, 40)
    y, z = _core.dense_forward(x, W, b, "relu")
    dy = f32(rng, 20, 40)
    keep = dy.copy()
    r1 = _core.dense_backward(x, W, z, y, dy, "relu")
    np.testing.assert_array_equal(dy, keep)
    r2 = _core.dense_backward(x, W, z, y, dy, "relu", overwrite_dy=True)
    np.testing.assert_array_equal(dy, np.where(z > 0, keep, 0))  # dy now holds dz
    for a, b2 in zip(r1, r2):
        np.testing.assert_array_equal(a, b2)


def test_accumulate_adds_into_given_buffers():
    rng = np.random.default_rng(8)
    x, W, b = f32(rng, 33, 7), f32(rng, 7, 19), f32(rng, 19)
    y, z = _core.dense_forward(x, W, b, "tanh")
    dy = f32(rng, 33, 19)
    _, dW1, db1 = _core.dense_backward(x, W, z, y, dy, "tanh")
    dW, db = np.full((7, 19), 2.0, np.float32), np.full(19, -1.0, np.float32)
    _core.dense_backward(x, W, z, y, dy, "tanh", dW_out=dW, db_out=db, accumulate=True)
    np.testing.assert_allclose(dW, dW1 + 2.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db, db1 - 1.0, rtol=1e-6, atol=1e-6)
    _core.dense_backward(x, W, z, y, dy, "tanh", dW_out=dW, db_out=db)
    np.testing.assert_array_equal(dW, dW1)
    np.testing.assert_array_equal(db, db1)


def test_column_sums_in_row_order():
    rng = np.random.default_rng(9)
    for n, c in [(0, 5), (1, 1), (3, 17), (300, 129), (1000, 40), (5, 0)]:
        x = f32(rng, n, c)
        got = _core.column_sums(x)
        # The kernel adds rows in order, so a float32 sequential sum reproduces it exactly.
        seq = np.zeros(c, np.float32)
        for row in x:
            seq = seq + row
        np.testing.assert_array_equal(got, seq)


@pytest.fixture
def restore_threads():
    before = pynn.get_num_threads()
    yield
    pynn.set_num_threads(before)


@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_bitwise_identical_on_1_and_2_threads(act, restore_threads):
    rng = np.random.default_rng(10)
    # Big enough that the GEMMs and the fused pass both go parallel.
    x, W, b = f32(rng, 128, 784), f32(rng, 784, 256, scale=0.05), f32(rng, 256)
    dy = f32(rng, 128, 256)
    results = []
    for nt in (1, 2):
        pynn.set_num_threads(nt)
        y, z = _core.dense_forward(x, W, b, act)
        results.append((y, z) + _core.dense_backward(x, W, z, y, dy, act)
                       + (_core.column_sums(dy),))
    for a, b2 in zip(*results):
        np.testing.assert_array_equal(a, b2)
    # And the parallel paths are right, not merely consistent.
    y, z = check_forward(x, W, b, act)
    check_backward(x, W, z, y, dy, act)


def test_bad_input_raises_naming_the_argument():
    x, W = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="W"):
        _core.dense_forward(x, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="b"):
        _core.dense_forward(x, W, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="x"):
        _core.dense_forward(x.astype(np.float64), W)
    with pytest.raises(ValueError, match="activation"):
        _core.dense_forward(x, W, None, "nope")
    with pytest.raises(ValueError, match="x"):
        _core.dense_forward(np.ones((4, 3), np.float32).T, W)  # column stride != 1
    y, z = _core.dense_forward(x, W, None, "relu")
    with pytest.raises(ValueError, match="z"):
        _core.dense_backward(x, W, None, y, y, "relu")
    with pytest.raises(ValueError, match="dy"):
        _core.dense_backward(x, W, z, y, np.ones((3, 3), np.float32), "relu")
    with pytest.raises(ValueError, match="dW_out"):
        _core.dense_backward(x, W, z, y, y, "relu", dW_out=np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="accumulate"):
        _core.dense_backward(x, W, z, y, y, "relu", accumulate=True)
