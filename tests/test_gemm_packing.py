"""The packers: the same operand in different memory layouts must give bitwise the same C.

Packing only moves floats, and the kernel never sees the user's layout, so row-major,
column-major (a transposed operand) and strided inputs must agree bit for bit. The layouts
take different packers (AVX-512: vectorised interleave for row-major A, 16 x 16 transposes for
column-major B, vector copies for row-major B; pack.h's templates for everything else), so a
packer that drops, repeats or misplaces an element, or mishandles a K or edge remainder,
changes C. Sizes straddle the packers' 16-column steps and the MR / NR panel edges.
"""
from __future__ import annotations

import numpy as np
import pytest

import pynn

INFO = pynn.kernel_info()
MR, NR = INFO["MR"], INFO["NR"]
SIZES = [(MR * 3, NR, 16), (MR * 3 + 1, NR + 1, 17), (2 * MR - 1, 2 * NR + 16, 47),
         (40, NR - 1, 15), (97, 3 * NR + 5, 100),
         # a row-major A is read in place (no packing) on ISAs with ukr_rows_a: several K
         # panels, a last group of fewer than MR rows, one and several NC blocks of columns
         (MR * 5 + 2, 2 * NR + 5, INFO["KC"] + 17), (2 * MR + 1, INFO["NC"] + 70, INFO["KC"] + 17)]


def layouts(x):
    """x as C order, Fortran order and a strided view (every other column of a wider array)."""
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), np.float32)
    wide[:, ::2] = x
    return [np.ascontiguousarray(x), np.asfortranarray(x), wide[:, ::2]]


@pytest.mark.parametrize("m,n,k", SIZES)
def test_every_layout_gives_the_same_bits(m, n, k):
    rng = np.random.default_rng(m * 1000 + n + k)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    want = pynn.ops.gemm(np.ascontiguousarray(a), np.ascontiguousarray(b))
    # the float64 product within test_gemm's rigorous bound: the reference layout is right
    err = np.abs(want - a.astype(np.float64) @ b.astype(np.float64))
    assert np.all(err <= (k + 4) * 2.0 ** -24 * (np.abs(a) @ np.abs(b)) + 1e-38)
    for la in layouts(a):
        for lb in layouts(b):
            assert np.array_equal(pynn.ops.gemm(la, lb), want)
    # the transposed flags read the same memory as the Fortran layouts, through other strides
    got = pynn.ops.gemm(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), trans_a=True,
                        trans_b=True)
    assert np.array_equal(got, want)
