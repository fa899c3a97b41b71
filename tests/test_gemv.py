"""The one-row GEMM kernel (gemv: m = 1, more than two SIMD vectors of columns, B read in
place with prefetching) on the sizes around its blocking: column counts around its pass width
(8 vectors), K around its prefetch distance (4 rows) and around the K panels, strided A and B,
alpha/beta, a B large enough for the columns to be split between two threads, and rows of A
with zeros (the kernel skips B's rows there).

Each case is checked twice: bitwise against the same row computed inside a taller product
(the packed, blocked path: a sample's output must not depend on the rows predicted with it),
and against the float64 NumPy twin (pynn.reference.gemm) within the float32 error bound of a
length-k sum. Each ISA runs in a subprocess because PYNN_ARCH is read once per process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pynn import _core

CASES = r"""
import sys
import numpy as np, pynn
from pynn.reference import gemm as ref_gemm

info = pynn.kernel_info()
MR, KC = info["MR"], info["KC"]
W = 16 if info["arch"] == "avx512" else 8
PASS, PF = 8 * W, 4          # gemv's pass width and prefetch distance (kernels_*.cpp)
rng = np.random.default_rng(20261207)
failures = []
checked = 0

def check(tag, a, b, **kw):
    global checked
    out = kw.pop("out", None)
    m_big = 3 * MR + 1                   # more rows than the direct path takes: packed
    tall = np.empty((m_big, a.shape[1]), np.float32)
    tall[:] = rng.standard_normal(tall.shape, dtype=np.float32)
    tall[1] = a[0]
    tall_out = None
    if out is not None:
        tall_out = np.repeat(out, m_big, axis=0)
    one = pynn.ops.gemm(a, b, out=None if out is None else out.copy(), **kw)
    big = pynn.ops.gemm(tall, b, out=tall_out, **kw)
    if not np.array_equal(one[0], big[1]) or np.isnan(one).any():
        failures.append(f"{tag}: one row != the same row of the packed product")
    # the float64 twin; |error| <= (k + 4) u (|alpha| |a| |b| + |beta| |c| + |bias|)
    want = ref_gemm(a.astype(np.float64), b.astype(np.float64), out=None if out is None
                    else out.astype(np.float64), **kw)
    alpha, beta = kw.get("alpha", 1.0), kw.get("beta", 0.0)
    scale = abs(alpha) * (np.abs(a).astype(np.float64) @ np.abs(b))
    if out is not None and beta != 0.0:
        scale = scale + abs(beta) * np.abs(out)
    if kw.get("bias") is not None:
        scale = scale + np.abs(kw["bias"])
    tol = (a.shape[1] + 4) * 2.0 ** -24 * scale + 1e-30
    if not np.all(np.abs(one - want) <= tol):
        failures.append(f"{tag}: off the float64 twin by {np.abs(one - want).max()}")
    checked += 1

ns = sorted({2 * W + 1, PASS - 1, PASS, PASS + 1, 2 * PASS + 3})
ks = sorted({1, PF - 1, PF, PF + 1, 2 * PF + 1, KC, KC + 1, 2 * KC + 3})
for n in ns:
    for k in ks:
        a = rng.standard_normal((1, k), dtype=np.float32)
        bw = rng.standard_normal((k, n + 5), dtype=np.float32)
        b = bw[:, 3:3 + n]                            # row stride n + 5
        c0 = rng.standard_normal((1, n), dtype=np.float32)
        check(f"plain n={n} k={k}", a, b)
        check(f"alpha,beta n={n} k={k}", a, b, alpha=-0.75, beta=0.5, out=c0)
        check(f"beta=0 NaN out n={n} k={k}", a, b, beta=0.0,
              out=np.full((1, n), np.nan, np.float32))
        aw = np.zeros((1, 3 * k), np.float32)
        aw[0, ::3] = a[0]
        check(f"A column stride 3 n={n} k={k}", aw[:, ::3], b,
              bias=rng.standard_normal(n, dtype=np.float32), activation="relu")
# B big enough (k * n >= 2**17) for the columns to be cut between threads, on 1 and 2 threads
for n in (PASS + 1, 2 * PASS, 257):
    k = 2 * KC + 3
    k = max(k, (1 << 17) // n + 1)
    a = rng.standard_normal((1, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    res = []
    for t in (1, 2):
        pynn.set_num_threads(t)
        check(f"threads={t} n={n} k={k}", a, b, bias=np.ones(n, np.float32), activation="tanh")
        res.append(pynn.ops.gemm(a, b))
    if not np.array_equal(res[0], res[1]):
        failures.append(f"n={n} k={k}: 1 and 2 threads differ")
# A row with zeros (ReLU outputs, an image's background): the kernel skips B's rows where A
# is zero (or -0), which must leave the result bitwise the full sum's. Fractions of zeros on
# both sides of its 7/8 switch, all zero, a single nonzero entry (first, last, in the
# prefetch tail), and a strided A.
for n in (2 * W + 1, PASS, PASS + 1, 2 * PASS + 3):
    for k in sorted({PF + 1, 2 * PF + 1, KC - 1, KC, KC + 1, 2 * KC + 3}):
        b = rng.standard_normal((k, n), dtype=np.float32)
        for frac in (0.1, 0.2, 0.5, 0.9, 1.0):
            a = rng.standard_normal((1, k), dtype=np.float32)
            a[rng.random((1, k)) < frac] = 0.0
            a[0, ::7] = np.where(a[0, ::7] == 0, np.float32(-0.0), a[0, ::7])
            check(f"zeros {frac} n={n} k={k}", a, b)
            aw = np.zeros((1, 2 * k), np.float32)
            aw[0, ::2] = a[0]
            check(f"zeros {frac} strided n={n} k={k}", aw[:, ::2], b, bias=np.ones(n, np.float32),
                  activation="relu")
        for pos in sorted({0, k - 1, max(0, k - PF + 1)}):
            a = np.zeros((1, k), np.float32)
            a[0, pos] = 1.5
            check(f"one nonzero at {pos} n={n} k={k}", a, b, alpha=0.5, beta=2.0,
                  out=rng.standard_normal((1, n), dtype=np.float32))
if failures:
    print("\n".join(failures[:20]), file=sys.stderr)
    sys.exit(1)
print(info["arch"], checked)
"""


@pytest.mark.parametrize("arch", ["avx2", "avx512"])
def test_one_row_kernel(arch):
    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU cannot execute {arch} instructions")
    env = dict(os.environ, PYNN_ARCH=arch)
    # cwd: the tests folder, so that the source tree's pynn (without _core) is not imported
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(CASES)], env=env,
                         capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr[-3000:]
    got_arch, checked = res.stdout.split()
    assert got_arch == arch and int(checked) > 100
