"""pynn.ops.gemm against the float64 NumPy twin (pynn.reference.gemm).

Tolerance: a float32 dot product of length k computed with fused multiply-adds in any order
satisfies |fl(c) - c| <= gamma_k * (|a| @ |b|) with gamma_k = k*u / (1 - k*u), u = 2**-24
(Higham, Accuracy and Stability of Numerical Algorithms, ch. 3). alpha, beta*C and the bias
add at most three more roundings, and the inputs are exactly representable (they are float32
already). So every element must lie within (k + 4) * u * (|alpha| |a|@|b| + |beta| |C| + |bias|)
of the truth: a rigorous bound that any indexing or packing mistake breaks by orders of magnitude.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pynn
from pynn import _core, reference

U32 = 2.0 ** -24
INFO = pynn.kernel_info()
MR, NR, KC, MC, NC = INFO["MR"], INFO["NR"], INFO["KC"], INFO["MC"], INFO["NC"]


def bound(a, b, k, alpha=1.0, beta=0.0, c=None, bias=None):
    mag = abs(alpha) * (np.abs(np.asarray(a, np.float64)) @ np.abs(np.asarray(b, np.float64)))
    if beta != 0.0:
        mag = mag + abs(beta) * np.abs(np.asarray(c, np.float64))
    if bias is not None:
        mag = mag + np.abs(np.asarray(bias, np.float64))
    return (k + 4) * U32 * mag + 1e-38


def check(got, a, b, *, alpha=1.0, beta=0.0, c=None, bias=None, activation=None):
    """a, b here are op(a), op(b) as the product sees them."""
    ref = reference.gemm(a, b, alpha=alpha, beta=beta, out=c, bias=bias, activation=activation)
    tol = bound(a, b, a.shape[1], alpha, beta, c, bias)
    if activation in ("sigmoid", "tanh"):
        # both are 1-Lipschitz; the float32 evaluation itself adds a few ulps of the result
        tol = tol + 8 * U32
    assert got.dtype == np.float32
    assert got.shape == ref.shape
    err = np.abs(got.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else None
    assert np.all(err <= tol), (
        f"shape {got.shape}: error {err[worst]:.3g} > bound {tol[worst]:.3g} at {worst}")


def rand(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


EDGE = sorted({0, 1, 2, 7, MR - 1, MR, MR + 1, NR - 1, NR, NR + 1, 97})
SHAPES = (
    [(m, n, k) for m in EDGE for n in (1, NR - 1, NR + 1) for k in (0, 1, 13)]
    + [(m, n, k) for m in (1, MR + 1) for n in EDGE for k in (1, 31)]
    + [(17, 19, k) for k in (KC - 1, KC, KC + 1, 2 * KC + 1)]
    + [(MC - 1, 33, 20), (MC, 40, 9), (MC + 1, 65, 17), (2 * MC + 3, 5, 3)]
    + [(29, NC - 1, 23), (31, NC + 1, 19), (13, 2 * NC + 7, 11)]
    + [(101, 103, 107), (128, 256, 784), (784, 256, 128), (128, 784, 256)]
)


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_shapes_against_reference(m, n, k):
    rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
    a, b = rand(rng, (m, k)), rand(rng, (k, n))
    check(pynn.ops.gemm(a, b), a, b)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(37, 45, 29), (MR + 1, NR + 1, KC + 1), (130, 70, 300)])
def test_transposes(trans_a, trans_b, m, n, k):
    rng = np.random.default_rng(7)
    a = rand(rng, (k, m) if trans_a else (m, k))
    b = rand(rng, (n, k) if trans_b else (k, n))
    got = pynn.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    check(got, a.T if trans_a else a, b.T if trans_b else b)


@pytest.mark.parametrize("layout", ["F", "T", "strided", "negative", "sliced"])
def test_views_are_read_in_place(layout):
    rng = np.random.default_rng(11)
    base_a, base_b = rand(rng, (90, 140)), rand(rng, (140, 120))
    if layout == "F":
        a, b = np.asfortranarray(base_a[:45, :70]), np.asfortranarray(base_b[:70, :60])
    elif layout == "T":
        a, b = base_a.T[:70, :45].T, base_b.T[:60, :70].T  # transposed views, no copy
    elif layout == "strided":
        a, b = base_a[::2, ::2], base_b[::2, ::2]
    elif layout == "negative":
        a, b = base_a[::-2, ::-2], base_b[::-2, ::-2]
    else:
        a, b = base_a[3:50, 5:77], base_b[5:77, 9:100]
    assert not (a.flags.c_contiguous and b.flags.c_contiguous)
    check(pynn.ops.gemm(a, b), a, b)


def test_converts_other_real_dtypes():
    rng = np.random.default_rng(3)
    a64 = rng.standard_normal((20, 30))
    b_int = rng.integers(-5, 5, size=(30, 10))
    got = pynn.ops.gemm(a64, b_int)
    a32, b32 = a64.astype(np.float32), b_int.astype(np.float32)
    check(got, a32, b32)
    check(pynn.ops.gemm(a64.tolist(), b_int.astype(np.int8)), a32, b32)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (2.5, -0.5), (-1.0, 0.25), (0.0, 3.0)])
def test_alpha_beta(alpha, beta):
    rng = np.random.default_rng(5)
    a, b = rand(rng, (50, KC + 3)), rand(rng, (KC + 3, 70))
    c = rand(rng, (50, 70))
    out = c.copy()
    got = pynn.ops.gemm(a, b, alpha=alpha, beta=beta, out=out)
    assert got is out
    check(got, a, b, alpha=alpha, beta=beta, c=c)


@pytest.mark.parametrize("m,n,k", [(MR + 3, NR + 5, 40), (5, 3, 0), (300, 300, 300)])
def test_beta_zero_never_reads_out(m, n, k):
    rng = np.random.default_rng(9)
    a, b = rand(rng, (m, k)), rand(rng, (k, n))
    out = np.full((m, n), np.nan, dtype=np.float32)
    got = pynn.ops.gemm(a, b, out=out)
    assert np.all(np.isfinite(got))
    check(got, a, b)


def test_non_contiguous_out():
    rng = np.random.default_rng(13)
    a, b = rand(rng, (40, 25)), rand(rng, (25, 30))
    big = rand(rng, (80, 60))
    out = big[::2, ::2]
    before = out.copy()
    got = pynn.ops.gemm(a, b, out=out, beta=0.5)
    assert got is out
    check(got, a, b, beta=0.5, c=before)
    assert np.array_equal(big[1::2], np.asarray(big[1::2]))  # untouched rows stay as they were


@pytest.mark.parametrize("activation", [None, "linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (MR + 1, NR - 1, 50), (128, 256, 784)])
def test_bias_and_activation_epilogue(activation, m, n, k):
    rng = np.random.default_rng(17)
    a, b, bias = rand(rng, (m, k)), rand(rng, (k, n)), rand(rng, (n,))
    got = pynn.ops.gemm(a, b, bias=bias, activation=activation)
    check(got, a, b, bias=bias, activation=activation)
    if activation == "relu":
        assert np.all(got >= 0)


def test_epilogue_with_beta_applies_after_accumulation():
    rng = np.random.default_rng(19)
    a, b, c, bias = rand(rng, (30, 2 * KC + 5)), rand(rng, (2 * KC + 5, 40)), rand(rng, (30, 40)), rand(rng, (40,))
    got = pynn.ops.gemm(a, b, beta=1.0, out=c.copy(), bias=bias, activation="relu")
    check(got, a, b, beta=1.0, c=c, bias=bias, activation="relu")


@pytest.mark.parametrize("m,n,k", [(2100, 40, 30), (40, 2100, 30), (30, 40, 2100)])
def test_sizes_above_2048(m, n, k):
    rng = np.random.default_rng(23)
    a, b = rand(rng, (m, k)), rand(rng, (k, n))
    check(pynn.ops.gemm(a, b), a, b)


def test_large_square_by_random_projection():
    # BLIS-style O(n^2) check of a big product: C t must equal A (B t).
    rng = np.random.default_rng(29)
    n = 2053
    a, b = rand(rng, (n, n)), rand(rng, (n, n))
    c = pynn.ops.gemm(a, b).astype(np.float64)
    t = rng.standard_normal(n)
    lhs = c @ t
    rhs = a.astype(np.float64) @ (b.astype(np.float64) @ t)
    # each c_ij is within (n+4) u (|a||b|)_ij; summing against |t| bounds the projection error
    tol = (n + 4) * U32 * (np.abs(a) @ (np.abs(b) @ np.abs(t))) + 1e-6
    assert np.all(np.abs(lhs - rhs) <= tol)


@pytest.mark.parametrize("m,n,k", [(128, 256, 784), (784, 256, 128), (517, 129, 391), (1000, 10, 300),
                                   (10, 1000, 300), (MC + 7, NC + 9, KC + 11)])
def test_bitwise_identical_across_thread_counts(m, n, k):
    rng = np.random.default_rng(31)
    a, b, bias = rand(rng, (m, k)), rand(rng, (k, n)), rand(rng, (n,))
    saved = pynn.get_num_threads()
    try:
        pynn.set_num_threads(1)
        one = pynn.ops.gemm(a, b, bias=bias, activation="tanh")
        pynn.set_num_threads(2)
        two = pynn.ops.gemm(a, b, bias=bias, activation="tanh")
        pynn.set_num_threads(3)
        three = pynn.ops.gemm(a, b, bias=bias, activation="tanh")
    finally:
        pynn.set_num_threads(saved)
    assert np.array_equal(one, two)
    assert np.array_equal(one, three)


def test_small_problems_run_on_one_thread():
    saved = pynn.get_num_threads()
    try:
        pynn.set_num_threads(2)
        assert _core.gemm_threads(8, 8, 8) == 1
        assert _core.gemm_threads(1024, 1024, 1024) == 2
    finally:
        pynn.set_num_threads(saved)


def test_threadpoolctl_limits_pynn():
    threadpoolctl = pytest.importorskip("threadpoolctl")  # in the [test] extra
    saved = pynn.get_num_threads()
    try:
        pynn.set_num_threads(2)
        with threadpoolctl.threadpool_limits(1):
            assert pynn.get_num_threads() == 1
            assert _core.gemm_threads(1024, 1024, 1024) == 1
        assert pynn.get_num_threads() == 2
        libs = {lib["internal_api"]: lib for lib in threadpoolctl.threadpool_info()}
        assert "pynn" in libs  # pynn's own pool, through the controller pynn registers
        assert libs["pynn"]["user_api"] == "openmp"  # limited along with OpenMP libraries
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert pynn.get_num_threads() == 1
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            assert pynn.get_num_threads() == 2
    finally:
        pynn.set_num_threads(saved)


def run_python(code, **env):
    full_env = dict(os.environ)
    full_env.update(env)
    # cwd: the tests folder, so that the source tree's pynn (without _core) is not imported
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.abspath(__file__)))


def test_omp_num_threads_is_honoured():
    res = run_python("import pynn; print(pynn.get_num_threads())", OMP_NUM_THREADS="1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1"


def test_omp_num_threads_list_takes_its_first_entry():
    res = run_python("import pynn; print(pynn.get_num_threads())", OMP_NUM_THREADS="3,1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "3"


@pytest.mark.parametrize("first", ["pynn", "threadpoolctl", "pynn, then a probe"])
def test_threadpoolctl_finds_pynn_whichever_is_imported_first(first):
    # "a probe": something asks importlib whether threadpoolctl exists before it is imported
    # (torch does); the registration must still happen at the real import.
    pytest.importorskip("threadpoolctl")
    probe = first.endswith("probe")
    first = first.split(",")[0]
    second = "threadpoolctl" if first == "pynn" else "pynn"
    res = run_python(f"""
        import importlib.util, sys
        import {first}
        if "{first}" == "pynn":
            assert "threadpoolctl" not in sys.modules  # importing pynn does not import it
        if {probe}:
            assert importlib.util.find_spec("threadpoolctl") is not None
            assert "threadpoolctl" not in sys.modules
        import {second}
        import pynn, threadpoolctl
        libs = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "pynn"]
        assert len(libs) == 1, libs
        with threadpoolctl.threadpool_limits(1):
            assert pynn.get_num_threads() == 1
        print(pynn.get_num_threads(), libs[0]["num_threads"])
        """, OMP_NUM_THREADS="3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["3", "3"]


def test_more_tasks_than_threads_start_no_extra_workers():
    # A caller may ask for more threads than the setting (nthreads=6 here) or hand out work
    # items as tasks: the pool runs them on at most the setting's threads (the caller and
    # one worker for 2), and the result is still the one-thread product's bits.
    code = """
        import hashlib, numpy as np, pynn
        from pynn import _core
        rng = np.random.default_rng(2)
        a = rng.standard_normal((600, 500), dtype=np.float32)
        b = rng.standard_normal((500, 300), dtype=np.float32)
        digests = set()
        for nt in (1, 6):
            out = np.empty((600, 300), np.float32)
            pynn.set_num_threads(2)
            _core.gemm(a, b, out, nthreads=nt)
            digests.add(hashlib.sha256(out.tobytes()).hexdigest())
        print(len(digests), _core.pool_info()["workers"])
        """
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "1"]


def test_results_do_not_depend_on_which_thread_runs_a_task():
    # The pool's owner takes over tasks a worker has not started (at once with
    # PYNN_STEAL_US=0); workers that sleep at once (PYNN_SPIN_US=0) start late. Neither may
    # change a bit of the result, which must equal the one-thread product.
    code = """
        import hashlib, numpy as np, pynn
        pynn.set_num_threads(3)
        rng = np.random.default_rng(1)
        a = rng.standard_normal((517, 391), dtype=np.float32)
        b = rng.standard_normal((391, 129), dtype=np.float32)
        print(hashlib.sha256(pynn.ops.gemm(a, b, activation="tanh").tobytes()).hexdigest())
        """
    rng = np.random.default_rng(1)
    a = rng.standard_normal((517, 391), dtype=np.float32)
    b = rng.standard_normal((391, 129), dtype=np.float32)
    saved = pynn.get_num_threads()
    try:
        pynn.set_num_threads(1)
        want = hashlib.sha256(pynn.ops.gemm(a, b, activation="tanh").tobytes()).hexdigest()
    finally:
        pynn.set_num_threads(saved)
    for spin, steal in [("2000", "2000"), ("0", "0"), ("0", "100000"), ("100000", "0")]:
        res = run_python(code, PYNN_SPIN_US=spin, PYNN_STEAL_US=steal)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == want, (spin, steal)


KERNEL_CHECK = """
import numpy as np, pynn
info = pynn.kernel_info()
rng = np.random.default_rng(0)
worst = 0.0
for (m, n, k) in [(1, 1, 1), (13, 33, 7), (info["MR"] + 1, info["NR"] - 1, info["KC"] + 1),
                  (info["MC"] + 1, info["NC"] + 1, 65), (128, 256, 784), (300, 300, 300)]:
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
            bias = rng.standard_normal(n, dtype=np.float32)
            got = pynn.ops.gemm(a, b, trans_a=ta, trans_b=tb, bias=bias)
            A = (a.T if ta else a).astype(np.float64)
            B = (b.T if tb else b).astype(np.float64)
            ref = A @ B + bias
            tol = (k + 4) * 2.0 ** -24 * (np.abs(A) @ np.abs(B) + np.abs(bias)) + 1e-38
            worst = max(worst, float(np.max(np.abs(got - ref) / tol)))
print(info["arch"], info["kernel"], worst)
"""


@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
def test_every_supported_kernel(arch):
    if not _core.cpu_supports(arch):
        # The ISA is absent from this CPU, so the kernel cannot execute here; the import must
        # refuse the request rather than crash.
        res = run_python("import pynn", PYNN_ARCH=arch)
        assert res.returncode != 0
        assert "does not support" in res.stderr
        return
    res = run_python(KERNEL_CHECK, PYNN_ARCH=arch)
    assert res.returncode == 0, res.stderr
    got_arch, kernel, worst = res.stdout.split()
    assert got_arch == arch and kernel.startswith(arch)
    assert float(worst) <= 1.0, f"{kernel}: error {worst} x the rigorous bound"


def test_unknown_arch_is_an_import_error():
    res = run_python("import pynn", PYNN_ARCH="sse9")
    assert res.returncode != 0
    assert "PYNN_ARCH must be one of" in res.stderr


def test_kernel_info_reports_blocksizes():
    info = pynn.kernel_info()
    assert set(info) >= {"kernel", "arch", "MR", "NR", "KC", "MC", "NC"}
    assert info["arch"] == _core.arch()
    assert info["MC"] % info["MR"] == 0 and info["NC"] % info["NR"] == 0


def test_releases_the_gil():
    import threading
    import time

    rng = np.random.default_rng(37)
    a, b = rand(rng, (1500, 1500)), rand(rng, (1500, 1500))
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    saved = pynn.get_num_threads()
    pynn.set_num_threads(1)
    t = threading.Thread(target=ticker)
    t.start()
    try:
        start = time.perf_counter()
        for _ in range(3):
            pynn.ops.gemm(a, b)
        end = time.perf_counter()
    finally:
        done.set()
        t.join()
        pynn.set_num_threads(saved)
    # While the GEMMs ran, the other Python thread kept running (it needs the GIL to append).
    during = [x for x in ticks if start < x < end]
    assert len(during) >= 5, f"only {len(during)} ticks in {end - start:.3f}s"


# --- bad input ------------------------------------------------------------------------------

def _ok(shape):
    return np.ones(shape, dtype=np.float32)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(a=_ok((2, 3)), b=_ok((4, 5))), ValueError, "inner dimensions"),
        (dict(a=_ok((3, 2)), b=_ok((3, 5)), trans_a=False), ValueError, "inner dimensions"),
        (dict(a=_ok(3), b=_ok((3, 5))), ValueError, "a: expected a 2-D array"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5, 1))), ValueError, "b: expected a 2-D array"),
        (dict(a=np.ones((2, 3), complex), b=_ok((3, 5))), TypeError, "a: .*complex"),
        (dict(a=np.ones((2, 3), object), b=_ok((3, 5))), TypeError, "a: .*object"),
        (dict(a=np.ones((2, 3), bool), b=_ok((3, 5))), TypeError, "a: .*bool"),
        (dict(a=np.array([["x", "y"]]), b=_ok((2, 5))), TypeError, "a: .*<U1"),
        (dict(a=[[1, 2], [3]], b=_ok((2, 5))), TypeError, "a: "),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), out=_ok((2, 4))), ValueError, r"out: expected shape \(2, 5\)"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), out=np.ones((2, 5))), TypeError, "out: expected dtype float32"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), out=[[0.0] * 5] * 2), TypeError, "out: expected a numpy.ndarray"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), bias=_ok(4)), ValueError, "bias: expected length 5"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), bias=_ok((1, 5))), ValueError, "bias: expected a 1-D"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), activation="swishy"), ValueError, "activation: unknown name 'swishy'"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), activation=3), TypeError, "activation: expected a string"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), alpha="2"), TypeError, "alpha: expected a real number"),
        (dict(a=_ok((2, 3)), b=_ok((3, 5)), beta=1.0), ValueError, "beta: a non-zero beta needs `out`"),
    ],
)
def test_bad_input_raises(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pynn.ops.gemm(**kwargs)


def test_read_only_out_raises():
    out = _ok((2, 5))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        pynn.ops.gemm(_ok((2, 3)), _ok((3, 5)), out=out)


def test_zero_sized_dimensions():
    assert pynn.ops.gemm(_ok((0, 3)), _ok((3, 5))).shape == (0, 5)
    assert pynn.ops.gemm(_ok((2, 3)), _ok((3, 0))).shape == (2, 0)
    z = pynn.ops.gemm(_ok((2, 0)), _ok((0, 5)), bias=np.arange(5, dtype=np.float32))
    assert np.array_equal(z, np.tile(np.arange(5, dtype=np.float32), (2, 1)))
