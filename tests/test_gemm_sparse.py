"""The zero-skipping ("sparse A") GEMM path must give bitwise the dense path's result.

csrc/gemm/sparse_a_impl.h drops the terms whose A entry is zero; with finite B that changes no
bit (a zero term leaves the running sum unchanged, and the rare sum that ends at -0 is redone
densely). So every case below compares, with `==` on the bytes, the product computed with the
path forced on (`_core.set_gemm_sparse(1)`) and forced off (0), on 1, 2 and 3 threads, for
every kernel this CPU runs (each in a subprocess: PYNN_ARCH is read once per process); and ties
it to the truth, the float64 twin, within the bound of tests/test_gemm.py: a float32 dot
product of length k with any rounding order is within (k + 4) u (|alpha| |A||B| + |beta| |C| +
|bias|) of it (Higham ch. 3; +4 for alpha, beta C, the bias and the activation).

On the portable kernel the path is also compared bitwise with its own NumPy twin
(pynn.reference.gemm.gemm_skip_zeros: a float32 loop over the nonzeros in the same order).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from test_gemm_small import run_python  # a kernel per subprocess: PYNN_ARCH is read once

import pynn
from pynn import _core, reference
from pynn.reference.gemm import gemm_skip_zeros

CASES = r"""
import hashlib, sys
import numpy as np, pynn
from pynn import _core, reference

info = pynn.kernel_info()
MR, NR, KC, D, BW = info["MR"], info["NR"], info["KC"], info["sparse_depth"], info["sparse_width"]
rng = np.random.default_rng(20261208)
failures = []
digest = hashlib.sha256()
U = 2.0 ** -24

def zero_heavy(shape, frac):
    x = rng.standard_normal(shape, dtype=np.float32)
    x[rng.random(shape) < frac] = 0.0
    # some -0 among the zeros: skipped like +0
    x[(x == 0) & (rng.random(shape) < 0.3)] = -0.0
    return x

def run(a, b, out, mode, nt, **kw):
    _core.set_gemm_sparse(mode)
    before = _core.gemm_sparse_calls()
    res = _core.gemm(a, b, out, nthreads=nt, **kw)
    took = _core.gemm_sparse_calls() - before
    _core.set_gemm_sparse(-1)
    return res, took

def compare(tag, a, b, out0=None, **kw):
    m, k = a.shape
    n = b.shape[1]
    dense, took = run(a, b, np.zeros((m, n), np.float32) if out0 is None else out0.copy(), 0, 1, **kw)
    if took:
        failures.append(f"{tag}: the dense run took the sparse path")
    for nt in (1, 2, 3):
        got, took = run(a, b, np.zeros((m, n), np.float32) if out0 is None else out0.copy(), 1, nt, **kw)
        if m > 0 and n > 0 and k > 0 and kw.get("alpha", 1.0) != 0 and took != 1:
            failures.append(f"{tag}: nthreads={nt} did not take the sparse path")
        if got.tobytes() != dense.tobytes():
            diff = np.abs(got.astype(np.float64) - dense).max()
            failures.append(f"{tag} nthreads={nt}: sparse != dense (max |diff| {diff})")
    digest.update(dense.tobytes())
    # against the float64 twin
    alpha, beta = kw.get("alpha", 1.0), kw.get("beta", 0.0)
    bias = kw.get("bias")
    ref = reference.gemm(a, b, alpha=alpha, beta=beta, out=out0, bias=bias,
                         activation=kw.get("activation"))
    mag = abs(alpha) * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    if beta != 0:
        mag = mag + abs(beta) * np.abs(out0.astype(np.float64))
    if bias is not None:
        mag = mag + np.abs(bias.astype(np.float64))
    nan = np.isnan(ref)
    if not (np.array_equal(np.isnan(dense), nan) and
            np.all(np.abs(dense - ref)[~nan] <= ((k + 4) * U * mag + 1e-38)[~nan])):
        failures.append(f"{tag}: outside the float64 twin's bound")
    return dense

ms = [1, MR - 1, MR + 1, 16, 17, 37]
ns = sorted({1, 10, NR - 1, NR + 1, BW - 1, BW + 1, 130})
ks = sorted({1, 2, D - 1, D + 1, KC - 1, KC + 1, 2 * KC + 1})
fracs = [0.0, 0.5, 0.9, 1.0]
case = 0
for k in ks:
    for frac in fracs:
        # cycle m and n through their edge values instead of the full product of sizes
        m = ms[case % len(ms)]
        n = ns[(case // len(ms) + case) % len(ns)]
        case += 1
        a = zero_heavy((m, k), frac)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c0 = rng.standard_normal((m, n), dtype=np.float32)
        bias = rng.standard_normal(n, dtype=np.float32)
        tag = f"m={m} n={n} k={k} zeros={frac}"
        compare(f"plain {tag}", a, b)
        compare(f"alpha-beta {tag}", a, b, c0, alpha=-0.75, beta=0.5)
        compare(f"beta=1 {tag}", a, b, c0, beta=1.0)
        compare(f"beta=0 NaN out {tag}", a, b, np.full((m, n), np.nan, np.float32), alpha=1.25)
        compare(f"bias+relu {tag}", a, b, bias=bias, activation="relu")
        compare(f"alpha+bias+tanh {tag}", a, b, alpha=0.5, bias=bias, activation="tanh")
        # A through other strides: Fortran order, a strided view, and X^T of a row-major X
        compare(f"fortran A {tag}", np.asfortranarray(a), b)
        wide = np.zeros((2 * m, 3 * k), np.float32)
        wide[::2, ::3] = a
        compare(f"strided A {tag}", wide[::2, ::3], b)
        compare(f"X^T A {tag}", np.ascontiguousarray(a.T).T, b)
        # B with a row stride wider than n
        bw = np.zeros((k, n + 5), np.float32)
        bw[:, 2:2 + n] = b
        compare(f"strided B {tag}", a, bw[:, 2:2 + n])
# larger shapes: both thread splits (rows, and columns when rows are few)
for (m, n, k) in [(300, 200, 784), (20, 600, 2 * KC + 1), (784, 256, 128)]:
    a = zero_heavy((m, k), 0.5)
    b = rng.standard_normal((k, n), dtype=np.float32)
    compare(f"large m={m} n={n} k={k}", a, b)
    compare(f"large X^T m={m} n={n} k={k}", np.ascontiguousarray(a.T).T, b, alpha=2.0,
            bias=rng.standard_normal(n, dtype=np.float32), activation="relu")
# NaN in A is a nonzero: it reaches every column of its row, on both paths
a = zero_heavy((20, 70), 0.5)
a[3, 5] = np.nan
b = rng.standard_normal((70, 140), dtype=np.float32)
got = compare("NaN in A", a, b)
if not (np.isnan(got[3]).all() and not np.isnan(np.delete(got, 3, axis=0)).any()):
    failures.append("NaN in A: not confined to its row")
# zero sums and their signs (see sparse_a_impl.h): a negative product too small for float32
# rounds to -0; a later zero term with a +0 product turns the dense sum into +0 and the sparse
# sum must follow it; a zero term with a -0 product keeps it -0 on both paths
tiny = np.float32(1e-30)
a = np.array([[-tiny, 0.0, 0.0], [-tiny, 0.0, 0.0], [0.0, 0.0, 0.0], [-tiny, 1.0, 0.0]], np.float32)
a = np.repeat(a, 5, axis=0)
b = np.array([[tiny] * 20, [1.0] * 10 + [-1.0] * 10, [-1.0] * 20], np.float32)
compare("signed zero sums", a, b)

if failures:
    print("\n".join(failures[:20]), file=sys.stderr)
    print(f"{len(failures)} failures", file=sys.stderr)
    sys.exit(1)
print(info["arch"], info["kernel"], digest.hexdigest())
"""


@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
def test_sparse_path_is_bitwise_the_dense_path(arch):
    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU cannot execute {arch} instructions")
    res = run_python(CASES, PYNN_ARCH=arch)
    assert res.returncode == 0, res.stderr[-3000:]
    got_arch, kernel, _ = res.stdout.split()
    assert got_arch == arch and kernel.startswith(arch)


GENERIC_TWIN = r"""
import sys
import numpy as np, pynn
from pynn import _core
from pynn.reference.gemm import gemm_skip_zeros

info = pynn.kernel_info()
assert info["arch"] == "generic", info
KC = info["KC"]
rng = np.random.default_rng(5)
_core.set_gemm_sparse(1)
bad = []
for (m, n, k) in [(7, 19, 3), (17, 40, KC + 9), (5, 33, 2 * KC + 1)]:
    a = rng.standard_normal((m, k), dtype=np.float32)
    a[rng.random((m, k)) < 0.6] = 0.0
    b = rng.standard_normal((k, n), dtype=np.float32)
    c0 = rng.standard_normal((m, n), dtype=np.float32)
    panel = -(-k // -(-k // KC))  # gemm.cpp's k_panel_depth
    for alpha, beta in [(1.0, 0.0), (-0.5, 0.75)]:
        got = _core.gemm(a, b, c0.copy(), alpha=alpha, beta=beta)
        want = gemm_skip_zeros(a, b, kc=panel, alpha=alpha, beta=beta, out=c0)
        if got.tobytes() != want.tobytes():
            bad.append((m, n, k, alpha, beta))
print(bad)
sys.exit(1 if bad else 0)
"""


def test_portable_kernel_matches_its_numpy_twin_bitwise():
    # The portable kernel rounds a * b, then the sum (no FMA): a float32 NumPy loop over the
    # nonzeros in increasing p reproduces it exactly.
    res = run_python(GENERIC_TWIN, PYNN_ARCH="generic")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]


def _with_mode(mode, fn):
    _core.set_gemm_sparse(mode)
    try:
        return fn()
    finally:
        _core.set_gemm_sparse(-1)


def test_zero_sum_sign_follows_the_dense_path():
    # A negative product below float32's range rounds to -0 (or is flushed to -0): the dense sum
    # becomes +0 at its next zero term with a +0 product, and keeps -0 after a -0 product. The
    # sparse sum never sees those terms; the kernel redoes such a row densely.
    tiny = np.float32(1e-30)
    a = np.zeros((20, 3), np.float32)
    a[:, 0] = -tiny  # then two zero terms
    b = np.zeros((3, 64), np.float32)
    b[0] = tiny
    b[1, :32] = 1.0   # 0 * 1 = +0: dense -0 + +0 = +0
    b[1, 32:] = -1.0  # 0 * -1 = -0: dense stays -0
    b[2] = -1.0
    dense = _with_mode(0, lambda: pynn.ops.gemm(a, b))
    sparse = _with_mode(1, lambda: pynn.ops.gemm(a, b))
    assert np.all(dense == 0)
    assert not np.signbit(dense[:, :32]).any() and np.signbit(dense[:, 32:]).all()
    assert sparse.tobytes() == dense.tobytes()


def test_nan_and_negative_zero_in_a():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 50), dtype=np.float32)
    a[rng.random(a.shape) < 0.5] = -0.0  # -0 is skipped like +0
    a[7, 11] = np.nan                   # NaN is a nonzero and propagates
    b = rng.standard_normal((50, 90), dtype=np.float32)
    dense = _with_mode(0, lambda: pynn.ops.gemm(a, b))
    sparse = _with_mode(1, lambda: pynn.ops.gemm(a, b))
    assert sparse.tobytes() == dense.tobytes()
    assert np.isnan(sparse[7]).all() and not np.isnan(np.delete(sparse, 7, axis=0)).any()


def test_inf_in_b_meeting_a_zero_is_skipped():
    # The documented deviation (as on the one-row path): 0 * Inf is NaN in the dense sum, but
    # the sparse path never forms that term, so the result is what skipping it gives.
    a = np.zeros((20, 2), np.float32)
    a[:, 1] = 1.0
    b = np.array([[np.inf] * 40, [2.0] * 40], np.float32)
    dense = _with_mode(0, lambda: pynn.ops.gemm(a, b))
    sparse = _with_mode(1, lambda: pynn.ops.gemm(a, b))
    assert np.isnan(dense).all()
    assert np.all(sparse == 2.0)


def test_default_mode_takes_the_path_only_for_zero_heavy_a():
    rng = np.random.default_rng(2)
    b = rng.standard_normal((784, 256), dtype=np.float32)
    x = rng.standard_normal((128, 784), dtype=np.float32)
    sparse_x = x.copy()
    sparse_x[rng.random(x.shape) < 0.5] = 0.0
    assert _core.gemm_sparse_mode() == -1

    def calls(a, bb):
        before = _core.gemm_sparse_calls()
        pynn.ops.gemm(a, bb)
        return _core.gemm_sparse_calls() - before

    assert calls(sparse_x, b) == 1
    assert calls(x, b) == 0                            # dense A
    assert calls(sparse_x, b[:, :32]) == 0             # n below sparse_min_n
    assert calls(sparse_x[:4], b) == 0                 # m on the direct path
    assert calls(np.ascontiguousarray(sparse_x.T).T, b) == 1  # A = X^T-like strides too
    assert _with_mode(0, lambda: calls(sparse_x, b)) == 0
    assert _with_mode(1, lambda: calls(x, b)) == 1


def test_mode_function_and_info():
    info = pynn.kernel_info()
    assert info["sparse_width"] % 16 == 0 or info["arch"] == "generic"
    assert info["sparse_depth"] >= 16 and info["sparse_depth"] % 16 == 0
    for mode in (0, 1, -1):
        _core.set_gemm_sparse(mode)
        assert _core.gemm_sparse_mode() == mode
    _core.set_gemm_sparse(-1)


MLP = r"""
import sys
import numpy as np, pynn
from pynn import _core

pynn.set_num_threads(int(sys.argv[1]))
_core.set_gemm_sparse(int(sys.argv[2]))
pynn.utils.set_random_seed(1234)
rng = np.random.default_rng(0)
x = rng.random((512, 784), dtype=np.float32)
x[rng.random(x.shape) < 0.5] = 0.0   # half zeros, like Fashion-MNIST's pixels
y = rng.integers(0, 10, 512)
model = pynn.Sequential([pynn.layers.Input((784,)), pynn.layers.Dense(256, activation="relu"),
                         pynn.layers.Dense(128, activation="relu"),
                         pynn.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(x, y, batch_size=128, epochs=2, verbose=0, shuffle=False)
pred = model.predict(x, verbose=0)
print(_core.gemm_sparse_calls(), flush=True)
sys.stdout.buffer.write(b"".join(w.tobytes() for w in model.get_weights()) + pred.tobytes())
"""


def test_mlp_training_is_bitwise_the_same_with_the_path_on_and_off():
    outs = {}
    for nt in ("1", "2"):
        for mode in ("0", "1"):
            res = subprocess.run([sys.executable, "-c", MLP, nt, mode], capture_output=True,
                                 timeout=300, cwd=os.path.dirname(os.path.abspath(__file__)),
                                 env={k: v for k, v in os.environ.items()
                                      if k != "PYNN_GEMM_SPARSE"})
            assert res.returncode == 0, res.stderr.decode()[-3000:]
            head, _, body = res.stdout.partition(b"\n")
            calls = int(head)
            assert (calls > 0) == (mode == "1"), (nt, mode, calls)
            outs[nt, mode] = body
    assert outs["1", "1"] == outs["1", "0"]
    assert outs["2", "1"] == outs["2", "0"]
    assert outs["1", "0"] == outs["2", "0"]


def test_reference_twin_skips_zeros_like_the_dense_sum():
    # The twin itself, against the float64 product (the bound of the module docstring).
    rng = np.random.default_rng(4)
    a = rng.standard_normal((9, 300), dtype=np.float32)
    a[rng.random(a.shape) < 0.7] = 0.0
    b = rng.standard_normal((300, 20), dtype=np.float32)
    got = gemm_skip_zeros(a, b, kc=128, alpha=0.5)
    want = reference.gemm(a, b, alpha=0.5)
    mag = 0.5 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    assert np.all(np.abs(got - want) <= (300 + 4) * 2.0 ** -24 * mag + 1e-38)

