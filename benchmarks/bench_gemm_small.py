"""GEMM latency for a few rows (predicting one or a few samples): pynn against numpy.matmul.

    pytest benchmarks/bench_gemm_small.py

Shapes are the layers of a 784-256-128-10 MLP applied to m = 1, 4, 16 rows, plus the whole
three-layer forward pass (bias + ReLU fused in pynn; matmul, add and maximum in NumPy), all on
one thread. The closing table prints microseconds per call and pynn's speed-up over NumPy in the
same run (>1 means pynn is faster).

Tuning the small-m bound: PYNN_GEMM_DIRECT_MAX_M=0 forces the packed path, a large value the
direct one; run this file under both to see where the direct kernels stop paying.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import record, timed
from threadpoolctl import threadpool_limits

import pynn

LAYERS = [(784, 256), (256, 128), (128, 10)]
SHAPES = [(m, k, n) for m in (1, 4, 16) for (k, n) in LAYERS]


@pytest.mark.parametrize("m,k,n", SHAPES, ids=[f"{m}x{k}.{k}x{n}" for m, k, n in SHAPES])
@pytest.mark.parametrize("impl", ["pynn", "numpy"])
def test_gemm_small(benchmark, impl, m, k, n):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    if impl == "pynn":
        def fn():
            pynn.ops.gemm(a, b, out=out)
    else:
        def fn():
            np.matmul(a, b, out=out)
    with threadpool_limits(1):
        best = timed(benchmark, fn, rounds=300, iterations=10, warmup=20)
    record("sgemm small m (1 thread)", f"{m}x{k} . {k}x{n}", impl, best, 2.0 * m * n * k)


@pytest.mark.parametrize("m", [1, 4, 16])
@pytest.mark.parametrize("impl", ["pynn", "numpy"])
def test_mlp_forward(benchmark, impl, m):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m, 784), dtype=np.float32)
    ws = [rng.standard_normal((k, n), dtype=np.float32) * np.float32(k ** -0.5)
          for k, n in LAYERS]
    bs = [rng.standard_normal(n, dtype=np.float32) for _, n in LAYERS]
    if impl == "pynn":
        def fn():
            h = pynn.ops.gemm(x, ws[0], bias=bs[0], activation="relu")
            h = pynn.ops.gemm(h, ws[1], bias=bs[1], activation="relu")
            return pynn.ops.gemm(h, ws[2], bias=bs[2])
    else:
        def fn():
            h = np.maximum(x @ ws[0] + bs[0], 0.0)
            h = np.maximum(h @ ws[1] + bs[1], 0.0)
            return h @ ws[2] + bs[2]
    with threadpool_limits(1):
        best = timed(benchmark, fn, rounds=300, iterations=10, warmup=20)
    flops = 2.0 * m * sum(k * n for k, n in LAYERS)
    record("MLP 784-256-128-10 forward (1 thread)", f"m={m}", impl, best, flops)
