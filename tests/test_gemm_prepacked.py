"""The GEMM with a B operand packed once (pack_b_whole + sgemm_prepacked_b, the recurrent
op's per-step product) against the NumPy twin and against the ordinary GEMM.

The prepacked path promises the ordinary GEMM's result bit for bit (same K panels, the same
micro-kernel and thread grid, the direct small-m path when m is small), so that comparison is
exact; against the float64 twin the tolerance is the usual fp32 one for a K-term sum.
"""
from __future__ import annotations

import numpy as np
import pytest

from pynn import _core
from pynn.reference.gemm import gemm as gemm_twin


def _operand(rng, rows, cols, layout):
    """A float32 (rows, cols) view: contiguous, transposed (Fortran order) or strided."""
    if layout == "c":
        return rng.standard_normal((rows, cols)).astype(np.float32)
    if layout == "t":
        return rng.standard_normal((cols, rows)).astype(np.float32).T
    return rng.standard_normal((rows, 2 * cols + 1)).astype(np.float32)[:, ::2][:, :cols]


def _twin_tol(k):
    # fp32 accumulation over k terms of unit-variance products: error grows like sqrt(k) eps
    # per term; 1e-5 * (k + 1) is a loose bound that still catches a wrong panel or tile.
    return 1e-5 * (k + 1)


# Edge sizes around the avx512 kernel's blocks (MR 12, NR 32, KC 384, NC 480), the avx2 and
# generic ones (MR 6/4, NR 16) and the direct small-m bound (16), plus 0 and 1.
SIZES = [
    (0, 5, 3), (4, 0, 3), (3, 4, 0), (1, 1, 1), (5, 7, 3), (12, 32, 16), (13, 33, 17),
    (16, 512, 128), (17, 512, 128), (128, 512, 128), (128, 128, 512), (37, 481, 385),
    (25, 31, 800), (11, 97, 769),
]


@pytest.mark.parametrize("m,n,k", SIZES)
@pytest.mark.parametrize("layout", ["c", "t", "s"])
def test_prepacked_equals_gemm_and_twin(m, n, k, layout):
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a = _operand(rng, m, k, layout)
    b = _operand(rng, k, n, "c" if layout == "s" else layout)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    for alpha, beta in [(1.0, 0.0), (0.5, 1.0), (-1.0, 0.25)]:
        want = _core.gemm(a, b, c0.copy(), alpha, beta)
        got = _core.gemm_prepacked_b(a, b, c0.copy(), alpha, beta)
        np.testing.assert_array_equal(got, want)
        ref = gemm_twin(a, b, alpha=alpha, beta=beta, out=c0)
        np.testing.assert_allclose(got, ref, rtol=_twin_tol(k), atol=_twin_tol(k))


@pytest.mark.parametrize("m,n,k", [(128, 512, 128), (128, 128, 512), (200, 97, 300)])
def test_prepacked_same_bits_on_1_and_2_threads(m, n, k):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    one = _core.gemm_prepacked_b(a, b, np.zeros((m, n), np.float32), nthreads=1)
    two = _core.gemm_prepacked_b(a, b, np.zeros((m, n), np.float32), nthreads=2)
    np.testing.assert_array_equal(one, two)


def test_prepacked_bad_shapes_raise():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.gemm_prepacked_b(a, np.ones((5, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="out"):
        _core.gemm_prepacked_b(a, np.ones((4, 2), np.float32), np.zeros((3, 3), np.float32))
