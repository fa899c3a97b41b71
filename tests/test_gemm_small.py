"""The small-m GEMM path (direct kernels, no packing) must give bitwise the packed result.

A row of C must not depend on how many rows were computed with it: predicting one sample has
to give exactly the row that the same sample gets inside a batch. So for every kernel this CPU
can run, the product of the first m rows (m = 1 .. 2*MR, the direct path up to the kernel's
bound) is compared with `==`, not a tolerance, to the first m rows of a product with
m_big = 3*MR + 1 rows (always the packed, blocked path), over column counts that leave masked
tails, K deep enough for two or three K panels, alpha/beta, and the fused bias + activation
epilogue. Each kernel runs in a subprocess because PYNN_ARCH is read once per process.

PYNN_GEMM_DIRECT_MAX_M (0 = packed path only) moves the bound, so the same cases are also run
with the direct path off and with it on for every m <= 2*MR: all three runs must produce the
same bytes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pynn
from pynn import _core

CASES = r"""
import hashlib, sys
import numpy as np, pynn

info = pynn.kernel_info()
MR, NR, KC = info["MR"], info["NR"], info["KC"]
rng = np.random.default_rng(20261127)
digest = hashlib.sha256()
m_big = 3 * MR + 1
failures = []

def same(tag, small, big):
    # assert_array_equal treats NaN == NaN, but none are expected: check that too
    if small.shape != big.shape or not np.array_equal(small, big) or np.isnan(small).any():
        diff = np.abs(small.astype(np.float64) - big).max() if small.shape == big.shape else None
        failures.append(f"{tag}: max |diff| {diff}")
    digest.update(np.ascontiguousarray(small).tobytes())

ns = sorted({1, 10, NR - 1, NR + 1, 3 * NR + 5, 130})
ks = [1, 13, KC + 1, 2 * KC + 3]
for n in ns:
    for k in ks:
        a = rng.standard_normal((m_big, k), dtype=np.float32)
        b_wide = rng.standard_normal((k, n + 3), dtype=np.float32)
        b = b_wide[:, 2:2 + n]            # row stride n + 3, unit column stride: read in place
        at = np.asfortranarray(a)         # A with unit row stride (a transposed operand)
        bias = rng.standard_normal(n, dtype=np.float32)
        c0 = rng.standard_normal((m_big, n), dtype=np.float32)
        nan_out = np.full((m_big, n), np.nan, np.float32)
        variants = [
            ("plain", {}, None),
            ("alpha-beta", dict(alpha=-0.75, beta=0.5), c0),
            ("beta=1", dict(beta=1.0), c0),
            ("beta=0 NaN out", dict(alpha=1.25, beta=0.0), nan_out),
            ("bias+relu", dict(bias=bias, activation="relu"), None),
            ("alpha+bias+tanh", dict(alpha=0.5, bias=bias, activation="tanh"), None),
            ("beta+bias+sigmoid", dict(beta=-2.0, bias=bias, activation="sigmoid"), c0),
        ]
        big_by_name = {}
        for name, kw, out in variants:
            big = pynn.ops.gemm(a, b, out=None if out is None else out.copy(), **kw)
            big_by_name[name] = big
            for m in range(1, 2 * MR + 1):
                small = pynn.ops.gemm(a[:m], b, out=None if out is None else out[:m].copy(), **kw)
                same(f"{name} m={m} n={n} k={k}", small, big[:m])
        # A read through other strides: Fortran order, and every other row of a taller matrix
        for m in (1, MR - 1, MR + 1):
            same(f"fortran A m={m} n={n} k={k}", pynn.ops.gemm(at[:m], b), big_by_name["plain"][:m])
        tall = np.empty((2 * m_big, k), np.float32)
        tall[::2] = a
        same(f"strided A n={n} k={k}", pynn.ops.gemm(tall[::2][:2], b), big_by_name["plain"][:2])
# one output column taken from a column-major B (column stride != 1, n == 1)
a = rng.standard_normal((m_big, 2 * KC + 3), dtype=np.float32)
bcol = np.asfortranarray(rng.standard_normal((2 * KC + 3, 4), dtype=np.float32))[:, 1:2]
big = pynn.ops.gemm(a, bcol)
for m in (1, 2, MR):
    same(f"n=1 column of F-ordered B m={m}", pynn.ops.gemm(a[:m], bcol), big[:m])

if failures:
    print("\n".join(failures[:20]), file=sys.stderr)
    print(f"{len(failures)} mismatches", file=sys.stderr)
    sys.exit(1)
print(info["arch"], info["kernel"], digest.hexdigest())
"""


def run_python(code, **env):
    full_env = dict(os.environ)
    full_env.update(env)
    # cwd: the tests folder, so that the source tree's pynn (without _core) is not imported
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
def test_small_m_rows_equal_packed_rows_bitwise(arch):
    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU cannot execute {arch} instructions")
    digests = []
    # default bound; packed path only; direct path for every m <= 2*MR
    for bound in (None, "0", "64"):
        env = {"PYNN_ARCH": arch}
        if bound is not None:
            env["PYNN_GEMM_DIRECT_MAX_M"] = bound
        res = run_python(CASES, **env)
        assert res.returncode == 0, f"PYNN_GEMM_DIRECT_MAX_M={bound}: {res.stderr[-3000:]}"
        got_arch, kernel, digest = res.stdout.split()
        assert got_arch == arch and kernel.startswith(arch)
        digests.append(digest)
    assert digests[0] == digests[1] == digests[2], "results depend on the GEMM path taken"


def test_one_row_matches_the_float64_twin():
    # The bitwise tests above compare two float32 paths; this ties the one-row path to the
    # truth: a length-k dot product with FMAs is within (k + 4) u |a|@|b| of it (Higham ch. 3,
    # as in test_gemm.py; +4 covers alpha, bias and the activation's own rounding).
    rng = np.random.default_rng(3)
    k, n = 784, 257
    a = rng.standard_normal((1, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    got = pynn.ops.gemm(a, b, alpha=0.5, bias=bias, activation="relu")
    z = 0.5 * (a.astype(np.float64) @ b.astype(np.float64)) + bias
    tol = (k + 4) * 2.0 ** -24 * (0.5 * np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(bias))
    assert np.all(np.abs(got - np.maximum(z, 0.0)) <= tol + 1e-38)
