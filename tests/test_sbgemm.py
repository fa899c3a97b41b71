"""The bf16 GEMM (pynn._core.sbgemm) against its NumPy twin (pynn.reference.bf16).

Rounding is checked bit for bit: with B = [[1.0]] the product is bf16(a) * 1, exact.

Tolerance of the products: after rounding, every product of two bf16 values is exact in
float32 (at most 8 + 8 significant bits), so the kernels only differ from the float64 sum of
the same products by float32 summation error, in whatever order the kernel adds (one by one,
in K pairs, or in 32-deep AMX steps). For k terms and one more rounding for beta * C and one
for the bias that error is at most (k + 4) * u * (|a'| @ |b'| + |beta C| + |bias|), u = 2**-24
(Higham ch. 3), a' and b' the rounded operands. The AMX and VDPBF16PS paths also flush
float32 subnormal partial results to zero, which moves each of the k sums by < 2**-126; the
bound gets k * 2**-126 for that. An indexing or packing mistake, or a missing rounding of an
operand (2**-9 relative), breaks the bound by orders of magnitude.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from test_gemm import run_python

import pynn
from pynn import _core
from pynn.reference import bf16 as ref

U32 = 2.0 ** -24
INFO = _core.sbgemm_info()
MR, NR, KC, KPAD = INFO["MR"], INFO["NR"], INFO["KC"], INFO["kpad"]
MC, NC = INFO["MC"], INFO["NC"]


def check(got, a, b, *, beta=0.0, c=None, bias=None):
    want = ref.sbgemm(a, b, beta=beta, out=c, bias=bias)
    mag = np.abs(ref.round_bf16(a).astype(np.float64)) @ np.abs(ref.round_bf16(b).astype(np.float64))
    if beta != 0.0:
        mag = mag + abs(beta) * np.abs(np.asarray(c, np.float64))
    if bias is not None:
        mag = mag + np.abs(np.asarray(bias, np.float64))
    k = a.shape[1]
    tol = (k + 4) * U32 * mag + (k + 1) * 2.0 ** -126
    assert got.shape == want.shape and got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= tol), f"{got.shape}: worst error / bound {np.max(err / tol):.3g}"


def sbgemm(a, b, beta=0.0, out=None, bias=None, nthreads=0):
    if out is None:
        out = np.full((a.shape[0], b.shape[1]), np.nan, np.float32)
    return _core.sbgemm(a, b, out, beta, bias, nthreads)


def rand(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


def test_rounding_is_nearest_even_bit_for_bit():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 32, 20000, dtype=np.uint64).astype(np.uint32)
    special = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5,
                        np.finfo(np.float32).max, np.inf, -np.inf, 1e-40, -1e-40,
                        np.finfo(np.float32).tiny, 0.0, -0.0], np.float32)
    # subnormals at the edge of rounding up to FLT_MIN (0x007F8000 is a tie, odd -> up), and
    # NaNs, signalling ones too, each with either sign
    edge = np.array([0x007FFFFF, 0x007F8000, 0x007F7FFF, 0x00000001, 0x7F800001, 0x7FC00001],
                    np.uint32)
    x = np.concatenate([bits.view(np.float32), special, edge.view(np.float32),
                        (edge | 0x80000000).view(np.float32)])
    want = ref.round_bf16(x)
    zero = np.zeros_like(x)
    one = np.ones((1, 1), np.float32)
    # Each packing path: A as a column (depth 1), B as rows with a zero partner in the K pair
    # (unit stride across B's columns), A with a zero partner (unit stride down A's rows).
    for got in (sbgemm(x[:, None], one)[:, 0],
                sbgemm(np.array([[1, 0]], np.float32), np.stack([x, zero]))[0],
                sbgemm(np.stack([x, zero]).T, np.array([[1], [0]], np.float32))[:, 0]):
        assert np.array_equal(got, want, equal_nan=True)
        # bit for bit where the value is not 0 (a sum starting at +0 loses the sign of -0 * 1)
        keep = ~np.isnan(want) & (want != 0)
        assert np.array_equal(got[keep].view(np.uint32), want[keep].view(np.uint32))
        assert np.array_equal(got[np.isnan(want)].view(np.uint32),
                              want[np.isnan(want)].view(np.uint32))
    # the twin itself, on values worked out by hand: ties go to the even mantissa
    assert list(ref.round_bf16(special[:5])) == [1.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, -2.5]
    assert np.isposinf(ref.round_bf16(special[5]))  # FLT_MAX rounds up to infinity
    assert list(ref.round_bf16(special[8:10]).view(np.uint32)) == [0, 0x80000000]


EDGE = sorted({0, 1, 2, MR - 1, MR, MR + 1, NR - 1, NR, NR + 1, 2 * MR + 3})
SHAPES = (
    [(m, n, k) for m in EDGE for n in (1, NR + 1) for k in (1, 13)]
    + [(m, n, k) for m in (1, MR + 1) for n in EDGE for k in (2, 33)]
    + [(5, 7, k) for k in sorted({0, 1, 2, 3, 31, 32, 33, KC - 1, KC, KC + 1, 2 * KC + 5})]
    + [(128, 256, 784), (128, 10, 128), (300, 97, 129)]
    # around the cache blocksizes (MC rows of A, NC columns of B per packed block)
    + [(m, 9, 5) for m in sorted({MC - 1, MC, MC + 1, 2 * MC + MR + 1})]
    + [(13, n, 5) for n in sorted({NC - 1, NC, NC + 1, 2 * NC + NR + 1})]
)


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_shapes_against_reference(m, n, k):
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a, b = rand(rng, (m, k)), rand(rng, (k, n))
    check(sbgemm(a, b), a, b)


@pytest.mark.parametrize("layout", ["a_transposed", "b_transposed", "both_strided", "fortran"])
def test_views_are_read_in_place(layout):
    rng = np.random.default_rng(3)
    m, n, k = 37, 45, 70
    if layout == "a_transposed":
        a, b = rand(rng, (k, m)).T, rand(rng, (k, n))
    elif layout == "b_transposed":
        a, b = rand(rng, (m, k)), rand(rng, (n, k)).T
    elif layout == "both_strided":
        a, b = rand(rng, (2 * m, 3 * k))[::2, ::3], rand(rng, (k, 2 * n))[:, ::2]
    else:
        a, b = np.asfortranarray(rand(rng, (m, k))), np.asfortranarray(rand(rng, (k, n)))
    check(sbgemm(a, b), a, b)


def view(rng, rows, cols, how):
    """A rows x cols float32 view: "c" contiguous, "t" a transpose (unit row stride), "s"
    strided both ways, "r" rows strided with unit column stride (the packers' three paths)."""
    if how == "t":
        return rand(rng, (cols, rows)).T
    if how == "s":
        return rand(rng, (2 * rows + 1, 3 * cols))[1::2, ::3]
    if how == "r":
        return rand(rng, (rows, cols + 5))[:, 3:cols + 3]
    return rand(rng, (rows, cols))


# Every stride pattern of A and B at sizes around the packers' 16-lane blocks, the tile and an
# odd depth (its zero pad), so the vector packers meet each of their masks.
VIEW_SHAPES = [(1, 1, 1), (1, 17, 3), (13, 33, 7), (16, 16, 32), (17, 47, 33),
               (MR + 1, NR + 15, 2 * KPAD + 63), (30, 2 * NR + 1, 1)]


@pytest.mark.parametrize("m,n,k", VIEW_SHAPES)
@pytest.mark.parametrize("how_a", ["c", "t", "s", "r"])
@pytest.mark.parametrize("how_b", ["c", "t", "s", "r"])
def test_every_view_pattern(how_a, how_b, m, n, k):
    rng = np.random.default_rng(m * 31 + n * 7 + k)
    a, b = view(rng, m, k, how_a), view(rng, k, n, how_b)
    check(sbgemm(a, b), a, b)


@pytest.mark.parametrize("how", ["tc", "ct"])
def test_training_views_bitwise_identical_across_thread_counts(how):
    # dW = X^T dZ (A read column-strided) and dX = dZ W^T (B read transposed), with edge tiles
    rng = np.random.default_rng(9)
    m, n, k = 2 * MR + 5, 3 * NR + 7, 131
    a, b = view(rng, m, k, how[0]), view(rng, k, n, how[1])
    one = sbgemm(a, b, nthreads=1)
    check(one, a, b)
    for nt in (2, 3):
        assert np.array_equal(sbgemm(a, b, nthreads=nt), one)


def test_beta_and_bias():
    rng = np.random.default_rng(4)
    a, b, c, bias = rand(rng, (50, 40)), rand(rng, (40, 70)), rand(rng, (50, 70)), rand(rng, 70)
    check(sbgemm(a, b, 1.0, c.copy(), bias), a, b, beta=1.0, c=c, bias=bias)
    check(sbgemm(a, b, -0.5, c.copy()), a, b, beta=-0.5, c=c)
    check(sbgemm(a, b, 0.0, c.copy()), a, b)


def test_k_zero_scales_out():
    c = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = sbgemm(np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32), 2.0, c.copy())
    assert np.array_equal(got, 2 * c)


def test_differs_from_float32_gemm_by_the_input_rounding():
    # Guards against a path that forgets to round: the float32 product is far outside the
    # bf16 bound for generic inputs.
    rng = np.random.default_rng(5)
    a, b = rand(rng, (64, 300)), rand(rng, (300, 64))
    got = sbgemm(a, b).astype(np.float64)
    exact = a.astype(np.float64) @ b
    assert np.max(np.abs(got - exact)) > 10 * (300 + 4) * U32 * np.max(np.abs(a) @ np.abs(b))


# Besides the MLP's shapes: several K panels with C cut along M (rows of A past MC), along N,
# and (4 threads) a 2 x 2 grid of rectangles, each thread packing its own blocks.
@pytest.mark.parametrize("m,n,k", [(517, 391, 129), (128, 256, 784), (784, 256, 128),
                                   (3, 1000, 77), (MC + MR + 1, 2 * NR + 3, KC + 5),
                                   (40, 4 * NR + 1, 2 * KC + 1), (5 * MR + 2, 3 * NR - 1, KC + 1)])
def test_bitwise_identical_across_thread_counts(m, n, k):
    rng = np.random.default_rng(6)
    a, b = rand(rng, (m, k)), rand(rng, (k, n))
    one = sbgemm(a, b, nthreads=1)
    for nt in (2, 3, 4):
        assert np.array_equal(sbgemm(a, b, nthreads=nt), one)


def sbgemm_prepacked(a, b, beta=0.0, out=None, bias=None, nthreads=0):
    if out is None:
        out = np.full((a.shape[0], b.shape[1]), np.nan, np.float32)
    return _core.sbgemm_prepacked_b(a, b, out, beta, bias, nthreads)


# Around the tile, the K panel (KC, and the near-equal panels of k > KC), the packed blocks
# (NC, MC), and each of sbgemm's thread paths: one block packed together (cut along N, or
# along M for a narrow n), blocks per thread, one thread.
PREPACKED_SHAPES = [(1, 1, 1), (MR - 1, NR + 1, KPAD + 1), (MR + 1, NR - 1, KC - 1),
                    (MR, NR, KC), (2 * MR + 5, 3 * NR + 7, KC + 1), (3, 1000, 77),
                    (128, 256, 784), (517, 20, 1000), (64, 2 * NC + NR + 3, 2 * KC + 3),
                    (MC + MR + 1, NR + 3, 40)]


@pytest.mark.parametrize("m,n,k", PREPACKED_SHAPES)
@pytest.mark.parametrize("how", ["cc", "st", "rc"])
def test_prepacked_b_is_bitwise_sbgemm(m, n, k, how):
    # The same packed bits and K panels as sbgemm's own packing: equal bit for bit, with beta
    # and a bias, on 1 and 2 threads (and those two equal each other).
    rng = np.random.default_rng(m * 7919 + n * 13 + k)
    a, b = view(rng, m, k, how[0]), view(rng, k, n, how[1])
    c, bias = rand(rng, (m, n)), rand(rng, n)
    first = None
    for nt in (1, 2):
        want = sbgemm(a, b, 0.5, c.copy(), bias, nt)
        got = sbgemm_prepacked(a, b, 0.5, c.copy(), bias, nt)
        assert np.array_equal(got, want), (m, n, k, how, nt)
        first = got if first is None else first
        assert np.array_equal(got, first)
    check(sbgemm_prepacked(a, b), a, b)


def test_prepacked_b_k_zero_scales_out():
    out = np.full((3, 4), 2.0, np.float32)
    a, b = np.ones((3, 0), np.float32), np.ones((0, 4), np.float32)
    assert np.array_equal(sbgemm_prepacked(a, b, 0.5, out), np.ones((3, 4), np.float32))


def test_bad_input_raises():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        sbgemm(a, np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        sbgemm(a.astype(np.float64), np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="out"):
        _core.sbgemm(a, np.ones((3, 2), np.float32), np.ones((3, 3), np.float32))


KERNEL_CHECK = """
import hashlib, numpy as np, pynn
from pynn import _core
from pynn.reference import bf16 as ref
from test_gemm import run_python
info = _core.sbgemm_info()
rng = np.random.default_rng(0)
worst = 0.0
shapes = [(1, 1, 1), (13, 33, 7), (info["MR"] + 1, info["NR"] - 1, info["KC"] + 1),
          (33, 65, 64), (128, 256, 784), (97, 10, 129)]
for (m, n, k) in shapes:
    for ta in (False, True):
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        a = a.T if ta else a
        b = rng.standard_normal((k, 2 * n), dtype=np.float32)[:, ::2]
        bias = rng.standard_normal(n, dtype=np.float32)
        out = np.full((m, n), np.nan, np.float32)
        got = _core.sbgemm(a, b, out, 0.0, bias)
        want = ref.sbgemm(a, b, bias=bias)
        mag = np.abs(ref.round_bf16(a).astype(float)) @ np.abs(ref.round_bf16(b).astype(float))
        tol = (k + 4) * 2.0 ** -24 * (mag + np.abs(bias)) + (k + 1) * 2.0 ** -126
        worst = max(worst, float(np.max(np.abs(got - want) / tol)))
a = rng.standard_normal((300, 200), dtype=np.float32)
b = rng.standard_normal((200, 150), dtype=np.float32)
h = [hashlib.sha256(_core.sbgemm(a, b, np.empty((300, 150), np.float32), 0.0, None, nt)
     .tobytes()).hexdigest() for nt in (1, 2, 3)]
same = all(np.array_equal(
    _core.sbgemm_prepacked_b(a[:m, :k], b[:k, :n], np.empty((m, n), np.float32), 0.0, None, nt),
    _core.sbgemm(a[:m, :k], b[:k, :n], np.empty((m, n), np.float32), 0.0, None, nt))
    for (m, n, k) in [(300, 150, 200), (13, 33, 7), (info["MR"] + 1, info["NR"] - 1, 199)]
    for nt in (1, 2))
print(info["arch"], info["kernel"], worst, len(set(h)), same)
"""

# PYNN_ARCH -> the bf16 kernel it selects (the emulated ones run the float32 micro-kernel of
# that ISA on rounded values).
KERNELS = {"amx": "amx", "avx512_bf16": "avx512_bf16", "avx512": "emulated_avx512",
           "avx2": "emulated_avx2", "generic": "emulated_generic"}


@pytest.mark.parametrize("arch", list(KERNELS))
def test_every_supported_kernel(arch):
    if not _core.cpu_supports(arch):
        # Absent from this CPU: the kernel cannot run here, and asking for it must be a clear
        # import error, not a crash (SIGILL).
        res = run_python("import pynn", PYNN_ARCH=arch)
        assert res.returncode != 0
        assert "does not support" in res.stderr
        return
    res = run_python(KERNEL_CHECK, PYNN_ARCH=arch)
    assert res.returncode == 0, res.stderr
    got_arch, kernel, worst, distinct, prepacked_same = res.stdout.split()
    if arch == "amx" and not kernel.startswith("amx"):
        # Linux refused the tile-data permission: the documented fallback.
        assert kernel.startswith("avx512_bf16"), kernel
    else:
        assert kernel.startswith(KERNELS[arch]), kernel
    assert float(worst) <= 1.0, f"{kernel}: error {worst} x the bound"
    assert distinct == "1", "results differ between 1, 2 and 3 threads"
    assert prepacked_same == "True", "sbgemm_prepacked_b differs from sbgemm"


def test_active_kernel_is_the_best_the_cpu_has():
    if os.environ.get("PYNN_ARCH", "auto") != "auto":
        pytest.skip("PYNN_ARCH forces a kernel in this run")
    best = next(a for a in KERNELS if _core.cpu_supports(a))
    assert INFO["kernel"].startswith(KERNELS[best]) or (
        best == "amx" and INFO["kernel"].startswith("avx512_bf16"))


def test_threads_setting_is_honoured():
    rng = np.random.default_rng(8)
    a, b = rand(rng, (256, 300)), rand(rng, (300, 256))
    saved = pynn.get_num_threads()
    try:
        pynn.set_num_threads(1)
        one = hashlib.sha256(sbgemm(a, b).tobytes()).hexdigest()
        pynn.set_num_threads(2)
        two = hashlib.sha256(sbgemm(a, b).tobytes()).hexdigest()
    finally:
        pynn.set_num_threads(saved)
    assert one == two
