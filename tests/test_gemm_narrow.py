"""The narrow-n GEMM path (n up to two SIMD vectors, whatever m: a classifier's output layer and
its weight gradient) reads A and B in place. Its rows are shared among threads when the product
is large: the result must not depend on the thread count, must match the float64 product, and
must equal the packed path bitwise (tests/test_gemm_small.py compares the paths' bytes)."""
from __future__ import annotations

import numpy as np
import pytest

import pynn


@pytest.fixture
def two_threads():
    before = pynn.get_num_threads()
    yield
    pynn.set_num_threads(before)


@pytest.mark.parametrize("n", [1, 10, 16, 17, 32])
@pytest.mark.parametrize("m,k", [(4003, 128), (129, 10), (0, 5), (7, 0)])
def test_narrow_rows_same_on_any_thread_count(two_threads, m, n, k):
    rng = np.random.default_rng(m * 100 + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    at = np.ascontiguousarray(a.T).T  # A read with unit row stride (x^T in a weight gradient)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        outs.append([pynn.ops.gemm(a, b), pynn.ops.gemm(at, b),
                     pynn.ops.gemm(a, b, bias=bias, activation="relu")])
    for one, two in zip(*outs):
        np.testing.assert_array_equal(one, two)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    # float32 accumulation over k terms of unit-variance products: error ~ 1e-7 * sqrt(k) * |c|
    np.testing.assert_allclose(outs[0][0], ref, rtol=1e-4, atol=1e-4 * np.sqrt(max(k, 1)))
    np.testing.assert_array_equal(outs[0][0], outs[0][1])
    np.testing.assert_allclose(outs[0][2], np.maximum(ref + bias, 0), rtol=1e-4,
                               atol=1e-4 * np.sqrt(max(k, 1)))


@pytest.mark.parametrize("n", [1, 5, 10, 14, 15])
@pytest.mark.parametrize("m", [16, 31, 33, 100])
def test_transposed_a_kernel_matches_the_row_kernel(n, m):
    # With A's rows adjacent (a_rs == 1) and n <= 14, the AVX-512 path vectorises along C's
    # rows instead of its columns (simd_kernels_impl.h, cols_block): several K panels, row
    # tails of either vector, alpha and beta must all give the row kernel's bits.
    kc = pynn.kernel_info()["KC"]
    k = 2 * kc + 3
    rng = np.random.default_rng(m * 100 + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = rng.standard_normal((m, n), dtype=np.float32)
    at = np.ascontiguousarray(a.T)
    row = pynn.ops.gemm(a, b, alpha=1.5, beta=0.75, out=c.copy())
    col = pynn.ops.gemm(at, b, trans_a=True, alpha=1.5, beta=0.75, out=c.copy())
    np.testing.assert_array_equal(col, row)
    ref = 1.5 * (a.astype(np.float64) @ b.astype(np.float64)) + 0.75 * c
    # as above: float32 accumulation error ~ 1e-7 * sqrt(k) per unit-variance product
    np.testing.assert_allclose(col, ref, rtol=1e-4, atol=1e-4 * np.sqrt(k))
