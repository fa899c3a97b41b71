"""Column tails of the packed GEMM: a tile narrower than NR runs a kernel that computes only
the vectors it needs (csrc/gemm/kernel.h, `ukr_cols`), written straight into C when the tail
is a whole number of vectors and through the scratch tile otherwise. Each element must come
out bitwise as it does inside a full-width tile: the per-element arithmetic (one FMA chain
over the same K panels) does not depend on the tile width, so no tolerance is involved in the
bitwise checks. The twin check uses test_gemm's rigorous bound (see its docstring).
"""
from __future__ import annotations

import numpy as np
import pytest
from test_gemm import check, rand

import pynn

INFO = pynn.kernel_info()
MR, NR = INFO["MR"], INFO["NR"]
# floats per SIMD vector of the active kernel: NR is a whole number of them (16 on AVX-512,
# 8 on AVX2); the generic kernel has no tail kernels, where these are still edge tiles.
W = 16 if INFO["arch"] == "avx512" else 8
# Tails of every width in vectors, whole (written in place) and ragged (scratch tile).
TAILS = sorted({t for v in range(1, NR // W) for t in (v * W, v * W - 3, v * W + 1)
                if 0 < t < NR})


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_tail_bitwise_equal_to_full_tile(tail, beta):
    rng = np.random.default_rng(tail)
    # more than the direct path's rows and NR, so the packed path runs; rows with an M edge too
    m, k = 3 * MR + 1, 37
    n = NR + tail
    a, b = rand(rng, (m, k)), rand(rng, (k, 2 * NR + W))
    c0 = rand(rng, (m, 2 * NR + W))
    bias = rand(rng, (2 * NR + W,))
    wide = pynn.ops.gemm(a, b, beta=beta, out=c0.copy(), bias=bias, activation="relu")
    out = c0[:, :n].copy()
    got = pynn.ops.gemm(a, b[:, :n], beta=beta, out=out, bias=bias[:n], activation="relu")
    assert np.array_equal(got, wide[:, :n])
    check(got, a, b[:, :n], beta=beta, c=c0[:, :n], bias=bias[:n], activation="relu")


@pytest.mark.parametrize("tail", [W, NR - W + 1])
def test_tail_in_a_strided_out_leaves_its_neighbours(tail):
    # The tail written in place must stop at column n: out is a view into a wider array.
    rng = np.random.default_rng(1)
    m, k, n = 2 * MR, 20, NR + tail
    a, b = rand(rng, (m, k)), rand(rng, (k, n))
    big = np.full((m, n + 40), 7.0, np.float32)
    pynn.ops.gemm(a, b, out=big[:, :n])
    assert np.all(big[:, n:] == 7.0)
    check(big[:, :n], a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_tails_do_not_depend_on_threads(threads):
    rng = np.random.default_rng(2)
    a, b = rand(rng, (200, 300)), rand(rng, (300, 3 * NR + W + 5))
    saved = pynn.get_num_threads()
    try:
        pynn.set_num_threads(1)
        one = pynn.ops.gemm(a, b)
        pynn.set_num_threads(threads)
        assert np.array_equal(pynn.ops.gemm(a, b), one)
    finally:
        pynn.set_num_threads(saved)
