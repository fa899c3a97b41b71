"""The few-row bf16 predict path (mixed_bfloat16; csrc/gemm/sbgemv*.cpp, called from
csrc/nn/dense_chain_bf16.cpp): calls of 1 to sbgemm_info()["row_kernel_max_rows"] rows read
each layer's float32 kernel in place and round it to bf16 in registers, once for up to 8 rows
(a kernel call's block; more rows loop over blocks, the last one the rest), no packing.

Its contract is sbgemm's rows bit for bit, so every check is bitwise against the packed paths
of the same rows: the fused chain on a call of >= 128 rows (sbgemm_prepacked_b) and the
general path (calls of more rows than the row path takes and below 128: each dense op on
sbgemm). That holds per bf16 kernel, so each kernel the CPU has runs in a subprocess
(PYNN_ARCH), on 1 and 2 threads, over shapes around its blocksizes: K odd and even, around
the K panel depth KC (one, two and three panels) and N around the tile width NR and the row
kernel's column blocks, with row counts 1 to 9, around 8 and 16 (blocks of 8) and around the
crossover with the packed path. The rows differ (each special value in its own row), so rows
mixed up inside a block fail. Where a kernel has no row kernel (AMX, the AVX2 emulation) the
packed path runs and the checks hold trivially. The NumPy twin (pynn.reference.bf16.sbgemm)
is held to its bound in test_dense_chain_bf16.py's per-layer test, run here on several rows.
"""
from __future__ import annotations

import numpy as np
import pytest
import test_dense_chain_bf16 as chain_tests
from test_dense_chain import same_bits
from test_dense_chain_bf16 import (
    KERNELS,
    _restore,  # noqa: F401  (policy and threads put back)
    bf16_mlp,
    run_on_kernel,
)

import pynn
from pynn import _core


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


def max_rows():
    """The most rows a call takes on the row path (0: the active kernel has none)."""
    return _core.sbgemm_info()["row_kernel_max_rows"]


def packed(m, x):
    """x's rows through the packed fused chain: the rows first in a call of >= 128 rows."""
    return m.predict(np.resize(x, (128 + len(x), x.shape[1])), verbose=0)[:len(x)]


def general_path(m, x):
    """x's rows through the general path: the rows first in a call of more rows than the row
    path takes and fewer than the fused chain's 128."""
    n = max(max_rows() + 1, len(x))
    assert n < 128
    return m.predict(np.resize(x, (n, x.shape[1])), verbose=0)[:len(x)]


def row_counts():
    """Calls to check: 1 to 9 rows (one block of up to 8, then a block and one row), around
    two blocks (16) and around the crossover with the packed path."""
    top = max_rows() or 16
    return sorted({*range(1, 10), 15, 16, 17, top - 1, top, top + 1})


def rows_vs_packed(m, x, counts=None):
    """The first n rows of x in one call for each n in counts (row_counts() by default), each
    row alone, and the same rows in a >= 128-row call (the fused packed chain) and through the
    general path, on 1 and 2 threads; x has at least max(counts) rows."""
    counts = counts or row_counts()
    got = {}
    for t in (1, 2):
        pynn.set_num_threads(t)
        want = packed(m, x)
        same_bits(want, general_path(m, x), f"chain vs general path, {t} threads")
        got[t] = np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(len(x))])
        same_bits(got[t], want, f"one row vs chain, {t} threads")
        for n in counts:
            same_bits(m.predict(x[:n], verbose=0), want[:n], f"{n} rows vs chain, {t} threads")
    same_bits(got[1], got[2], "1 vs 2 threads")
    return got[1]


def rows_of(x, n, rng):
    """x's rows, then random ones up to n rows."""
    more = rng.standard_normal((max(0, n - len(x)), x.shape[1])).astype(np.float32)
    return np.concatenate([x, more])


def shapes(kc, nr):
    """Layer sizes around the kernel's blocksizes (kc: the K panel depth, nr: tile width)."""
    ns = sorted({1, 15, 16, 17, nr - 1, nr, nr + 1, 127, 128, 129})
    out = [[k, ns[i % len(ns)], ns[(i + 3) % len(ns)]]
           for i, k in enumerate([1, 2, 3, 31, 32, 33, kc - 1, kc, kc + 1, 2 * kc + 1])]
    out += [[784, 256, 128, 10],      # the benchmark MLP: its first layer shared by threads
            [kc + 1, 129, 257, 3],    # an odd K over one panel with odd N, shared by threads
            [2 * kc + 3, 65, 5],      # three panels, the last one odd
            [kc + 1, 97, 49, 81]]     # N past the column blocks of 3 to 8 rows (96, 48, 80)
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
    # every shape on every row count would take minutes: the plain and special rows of each
    # shape on 1 to 9 rows, the longer counts on every third shape
    counts = t.row_counts() if i % 3 == 0 else list(range(1, 10))
    x = t.rows_of(t.special_rows(sizes[0], rng), max(counts), rng)
    for special in (False, True):
        if special:
            t.special_weights(m)
        try:
            t.rows_vs_packed(m, x, counts)
        except AssertionError as e:
            bad.append(f"{sizes} special weights {special}: {str(e)[:300]}")
# which block sizes (1 to 8 rows) the row kernels ran
ran = "".join("1" if c else "0" for c in _core.sbgemm_info()["row_kernel_calls"])
print(info["kernel"], len(bad), info["row_kernel"], ran, info["row_kernel_max_rows"])
print("\\n".join(bad), file=sys.stderr)
"""

# The kernels with row kernels (gemm/sbgemv.h); the others pack, and then the checks above
# compare the packed paths with themselves.
ROW_KERNELS = {"avx512_bf16", "avx512"}


@pytest.mark.parametrize("arch", list(KERNELS))
def test_every_kernel_rows_are_bitwise_the_packed_paths(arch):
    out, stderr = run_on_kernel(ARCH_CHECK, arch)
    assert out[0] == "0", stderr
    has_rows = arch in ROW_KERNELS
    assert out[1] == str(has_rows)
    # every block size ran where the row kernels exist (1 to 8 rows: calls of 1 to 9 rows), and
    # none elsewhere
    assert out[2] == ("1" * 8 if has_rows else "0" * 8)
    # the crossover is past the 16 rows the checks need below it, and below the fused chain
    assert (16 < int(out[3]) < 127) if has_rows else out[3] == "0"


def test_special_values_reach_their_rows():
    """The special inputs and weights show in the outputs of a call of several rows, each
    input's only in its own row (not dropped, not given to a neighbour in the block)."""
    m = bf16_mlp([40, 17], ["linear"], seed=3)
    special_weights(m)
    rng = np.random.default_rng(4)
    x = rows_of(special_rows(40, rng), 9, rng)  # a block of 8, then one row
    rows_vs_packed(m, x, [7, 8, 9])
    got = m.predict(x, verbose=0)
    assert np.isnan(got[2]).all()                     # a NaN input reaches every output
    assert np.isnan(got[:, -1]).all()                 # the NaN weight's column
    assert np.isnan(got[:, 2 * 17 // 3]).all()       # the NaN that must stay one
    assert np.isinf(got[0, 0])                        # the inf weight's column
    plain = np.delete(got, [0, 2 * 17 // 3, 16], axis=1)  # the other columns
    for i in (0, 1, 4, 5, 7, 8):  # the rows with no NaN, inf or huge input
        assert np.isfinite(plain[i]).all(), i
    assert not np.isfinite(plain[[2, 3, 6]]).all(axis=1).any()
    w = m.layers[0].kernel.value
    assert np.isfinite(w).sum() == w.size - 3  # the NaNs and the inf, in place


@pytest.mark.parametrize("rows", [1, 5, 9])
def test_a_weight_written_in_place_is_seen(rows):
    """The weights are the user's arrays: a write between two predicts of a few rows must
    show, in every layer, with nothing kept from the call before."""
    m = bf16_mlp([300, 140, 33, 5], ["linear"] * 3, seed=5)  # every weight shows
    x = np.random.default_rng(6).standard_normal((rows, 300)).astype(np.float32)
    before = m.predict(x, verbose=0)
    for ly, (i, j) in zip(m.layers, [(7, 130), (0, 3), (32, 4)]):
        w = ly.kernel.value
        w[i, j] += 4.0
        after = m.predict(x, verbose=0)
        assert not np.array_equal(after, before), ly.name
        same_bits(after, packed(m, x), f"{ly.name}: after an in-place write")
        before = after
    m.layers[1].bias.value[:] += 1.0
    after = m.predict(x, verbose=0)
    assert not np.array_equal(after, before)
    same_bits(after, packed(m, x), "after an in-place bias write")
    m.layers[0].kernel.value[5, :] = np.nan
    assert np.isnan(m.predict(x, verbose=0)).all()


def test_non_contiguous_rows():
    m = bf16_mlp([65, 33, 3], ["relu", "linear"], seed=7)
    big = np.random.default_rng(8).standard_normal((20, 130)).astype(np.float32)
    for x in (big[1:2, ::2], big[1:10, ::2], big[::2, 1::2]):  # strided columns, and rows
        same_bits(m.predict(x, verbose=0), packed(m, np.ascontiguousarray(x)),
                  f"strided {x.shape}")


@pytest.mark.parametrize("rows", [2, 8, 9, 17])
@pytest.mark.parametrize("sizes", [[784, 256, 128, 10], [1025, 33, 17]])
def test_each_layer_within_the_bound_of_the_twin(sizes, rows):
    """pynn.reference.bf16's product on calls of several rows, to test_dense_chain_bf16's
    per-layer bound (the float32 sums' rounding over K, the bf16 operands exact)."""
    chain_tests.test_each_layer_within_the_bound_of_the_twin(sizes, rows)
