"""SGEMM: pynn against NumPy (OpenBLAS) and PyTorch, same shapes, same thread counts, same run.

    pytest benchmarks/bench_gemm.py

The closing table prints GFLOP/s, % of one core's measured FP32 peak (times the thread count)
and pynn's speed-up over each baseline (>1 means pynn is faster).
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import record, timed
from threadpoolctl import threadpool_limits

import pynn

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None

# (label, m, n, k, trans_a, trans_b)
SHAPES = [
    ("1024^2", 1024, 1024, 1024, False, False),
    ("2048^2", 2048, 2048, 2048, False, False),
    ("fwd X.W 128x784.784x256", 128, 256, 784, False, False),
    ("dW X^T.dY 784x128.128x256", 784, 256, 128, True, False),
    ("dX dY.W^T 128x256.256x784", 128, 784, 256, False, True),
]
IMPLS = ["pynn", "numpy"] + (["torch"] if torch is not None else [])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("label,m,n,k,ta,tb", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("impl", IMPLS)
def test_gemm(benchmark, impl, label, m, n, k, ta, tb, threads):
    rng = np.random.default_rng(0)
    # Stored as a training step stores them: X (m, k); W (k, n); for dW the op(a) = X^T view.
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    A = a.T if ta else a
    B = b.T if tb else b
    if impl == "pynn":
        def fn():
            pynn.ops.gemm(a, b, trans_a=ta, trans_b=tb, out=out)
    elif impl == "numpy":
        def fn():
            np.matmul(A, B, out=out)
    else:
        ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
        A_t = ta_.t() if ta else ta_
        B_t = tb_.t() if tb else tb_
        o = torch.from_numpy(out)

        def fn():
            torch.matmul(A_t, B_t, out=o)
    flops = 2.0 * m * n * k
    rounds = max(5, min(200, int(2e10 / flops)))
    with threadpool_limits(threads):
        if torch is not None:
            torch.set_num_threads(threads)
        best = timed(benchmark, fn, rounds=rounds)
    benchmark.extra_info["GFLOP/s"] = flops / best / 1e9
    record("sgemm", f"{label} {threads}t", impl, best, flops)
