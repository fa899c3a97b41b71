"""The one-row bf16 predict path (mixed_bfloat16; csrc/gemm/sbgemv*.cpp, called from
csrc/nn/dense_chain_bf16.cpp): each layer's float32 kernel read in place and rounded to bf16
in registers, no packing.

Its contract is sbgemm's row bit for bit, so every check is bitwise against the packed paths
of the same rows: the fused chain on a call of >= 128 rows (sbgemm_prepacked_b) and the
general path (calls below 128 rows: each dense op on sbgemm). That holds per bf16 kernel, so
each kernel the CPU has runs in a subprocess (PYNN_ARCH), on 1 and 2 threads, over shapes
around its blocksizes: K odd and even, around the K panel depth KC (one, two and three
panels) and N around the tile width NR and the row kernel's 128-column block. Where a kernel
has no row kernel (AMX, the AVX2 emulation) the packed path runs and the checks hold
trivially. The NumPy twin (pynn.reference.bf16.sbgemm on one row) is held to its bound in
test_dense_chain_bf16.py's per-layer test, which also runs on one row.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_dense_chain import general, same_bits
from test_dense_chain_bf16 import (
    KERNELS,
    _restore,  # noqa: F401  (policy and threads put back)
    bf16_mlp,
    run_on_kernel,
)

import pynn


def special_rows(k, rng):
    """Rows of x: plain, with zeros, NaN, +-inf, all -0, subnormals (the largest round up to
    FLT_MIN in bf16, the rest flush to a signed zero), huge values that round to inf."""
    x = rng.standard_normal((7, k)).astype(np.float32)
    x[1, ::3] = 0.0
    x[2, k // 2] = np.nan
    x[3, 0] = np.inf
    x[3, -1] = -np.inf
    x[4, :] = -0.0
    x[5, ::2] = np.float32(1.1754942e-38)   # FLT_MIN - 2**-149: bf16 rounds it to FLT_MIN
    x[5, 1::4] = np.float32(-1e-40)          # flushes to -0
    x[6, ::5] = np.float32(3.4e38)           # rounds to inf in bf16
    x[6, -1] = np.uint32(0x7F800001).view(np.float32)  # a signalling NaN: made quiet
    return x


def special_weights(m):
    """Odd values in a few columns of every layer's kernel and bias, written in place."""
    for ly in m.layers:
        w = ly.kernel.value
        k, n = w.shape
        w[0, n - 1] = np.nan
        w[k - 1, 0] = np.inf
        w[:, n // 2] = -0.0
        w[::2, (n - 1) // 3] = np.float32(-1.1754942e-38)
        w[1::2, (n - 1) // 3] = np.float32(1e-40)
        # a NaN whose rounding add would carry into the sign bit (bf16 keeps it a NaN)
        w[k // 2, 2 * n // 3] = np.uint32(0x7FFFFFFF).view(np.float32)
        if ly.bias is not None:
            ly.bias.value[n // 3] = np.float32(1e-39)  # a subnormal bias


def rows_vs_packed(m, x):
    """Each row of x predicted alone, against the same rows in a >= 128-row call (the fused
    packed chain) and in a < 128-row call (the general path), on 1 and 2 threads."""
    pad = np.resize(x, (128 + len(x), x.shape[1]))  # the rows first, then filler
    got = {}
    for t in (1, 2):
        pynn.set_num_threads(t)
        got[t] = np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(len(x))])
        same_bits(got[t], m.predict(pad, verbose=0)[:len(x)], f"one row vs chain, {t} threads")
        same_bits(got[t], general(m, x), f"one row vs general path, {t} threads")
    same_bits(got[1], got[2], "one row, 1 vs 2 threads")
    return got[1]


def packed_row(m, x):
    """Row x (1 x k) through the general path: a call of two rows."""
    return m.predict(np.repeat(x, 2, axis=0), verbose=0)[:1]


def shapes(kc, nr):
    """Layer sizes around the kernel's blocksizes (kc: the K panel depth, nr: tile width)."""
    ns = sorted({1, 15, 16, 17, nr - 1, nr, nr + 1, 127, 128, 129})
    out = [[k, ns[i % len(ns)], ns[(i + 3) % len(ns)]]
           for i, k in enumerate([1, 2, 3, 31, 32, 33, kc - 1, kc, kc + 1, 2 * kc + 1])]
    out += [[784, 256, 128, 10],      # the benchmark MLP: its first layer shared by threads
            [kc + 1, 129, 257, 3],    # an odd K over one panel with odd N, shared by threads
            [2 * kc + 3, 65, 5]]      # three panels, the last one odd
    return out


ARCH_CHECK = """
import sys, numpy as np, pynn
from pynn import _core
import test_dense_chain_bf16_row as t
info = _core.sbgemm_info()
bad = []
for i, sizes in enumerate(t.shapes(info["KC"], info["NR"])):
    acts = ["relu"] * (len(sizes) - 2) + ["softmax" if i % 2 else "linear"]
    m = t.bf16_mlp(sizes, acts, seed=i)
    rng = np.random.default_rng(i)
    for special in (False, True):
        if special:
            t.special_weights(m)
        try:
            t.rows_vs_packed(m, t.special_rows(sizes[0], rng))
        except AssertionError as e:
            bad.append(f"{sizes} special weights {special}: {str(e)[:200]}")
print(info["kernel"], len(bad), info["row_kernel"])
print("\\n".join(bad), file=sys.stderr)
"""

# The kernels with a one-row kernel (gemm/sbgemv.h); the others pack, and then the checks
# above compare the packed paths with themselves.
ROW_KERNELS = {"avx512_bf16", "avx512"}


@pytest.mark.parametrize("arch", list(KERNELS))
def test_every_kernel_one_row_is_bitwise_the_packed_paths(arch):
    out, stderr = run_on_kernel(ARCH_CHECK, arch)
    assert out[0] == "0", stderr
    assert out[1] == str(arch in ROW_KERNELS)  # the one-row path ran where it exists


def test_special_values_reach_the_row():
    """The special inputs and weights show in the one-row outputs (not silently dropped)."""
    m = bf16_mlp([40, 17], ["linear"], seed=3)
    special_weights(m)
    x = special_rows(40, np.random.default_rng(4))
    got = rows_vs_packed(m, x)
    assert np.isnan(got[2]).all()                     # a NaN input reaches every output
    assert np.isnan(got[:, -1]).all()                 # the NaN weight's column
    assert np.isnan(got[:, 2 * 17 // 3]).all()       # the NaN that must stay one
    assert np.isinf(got[0, 0])                        # the inf weight's column
    assert np.isfinite(np.delete(got[0], [0, 2 * 17 // 3, 16])).all()
    w = m.layers[0].kernel.value
    assert np.isfinite(w).sum() == w.size - 3  # the NaNs and the inf, in place


def test_a_weight_written_in_place_is_seen():
    """The weights are the user's arrays: a write between two one-row predicts must show, in
    every layer, with nothing kept from the call before."""
    m = bf16_mlp([300, 140, 33, 5], ["linear"] * 3, seed=5)  # every weight shows
    x = np.random.default_rng(6).standard_normal((1, 300)).astype(np.float32)
    before = m.predict(x, verbose=0)
    for ly, (i, j) in zip(m.layers, [(7, 130), (0, 3), (32, 4)]):
        w = ly.kernel.value
        w[i, j] += 4.0
        after = m.predict(x, verbose=0)
        assert not np.array_equal(after, before), ly.name
        same_bits(after, packed_row(m, x), f"{ly.name}: after an in-place write")
        before = after
    m.layers[1].bias.value[:] += 1.0
    after = m.predict(x, verbose=0)
    assert not np.array_equal(after, before)
    same_bits(after, packed_row(m, x), "after an in-place bias write")
    m.layers[0].kernel.value[5, :] = np.nan
    assert np.isnan(m.predict(x, verbose=0)).all()


def test_non_contiguous_row():
    m = bf16_mlp([65, 33, 3], ["relu", "linear"], seed=7)
    big = np.random.default_rng(8).standard_normal((4, 130)).astype(np.float32)
    x = big[1:2, ::2]
    same_bits(m.predict(x, verbose=0), packed_row(m, np.ascontiguousarray(x)), "strided row")
