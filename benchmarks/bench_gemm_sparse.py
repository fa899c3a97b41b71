"""The zero-skipping GEMM path (csrc/gemm/sparse_a_impl.h) on the MLP's layer-1 products.

    pytest benchmarks/bench_gemm_sparse.py

A real Fashion-MNIST batch of 128 images (about half its pixels exactly zero) against the
784x256 weights: the forward product X W1 and the weight gradient dW1 = X^T dZ1 (dZ1 zero where
the layer's ReLU was off), each with the sparse path forced on ("pynn"), forced off ("pynn
dense", the packed path) and NumPy, in the same run on 1 thread; then the zero-fraction sweep on
random data that chose the threshold in csrc/gemm/gemm.h (kSparseMinZeroFraction, kSparseMinN).
The closing table's "pynn vs pynn dense" column is the sparse path's speed-up.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import record, timed
from threadpoolctl import threadpool_limits

from pynn import _core

sys.path.insert(0, str(Path(__file__).resolve().parent))


def fashion_batch():
    from bench_train import load_data

    x, _ = load_data()
    return np.ascontiguousarray(x[:128])


@pytest.fixture(scope="module")
def layer1():
    x = fashion_batch()
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((784, 256)) * 784 ** -0.5).astype(np.float32)
    z1 = x @ w1
    dz1 = (rng.standard_normal((128, 256)) * (z1 > 0)).astype(np.float32)
    return x, w1, dz1


def _run(benchmark, impl, a, b, out, group, case):
    if impl == "numpy":
        def fn():
            np.matmul(a, b, out=out)
    else:
        mode = {"pynn": 1, "pynn dense": 0}[impl]

        def fn():
            _core.set_gemm_sparse(mode)
            _core.gemm(a, b, out, nthreads=1)
    try:
        with threadpool_limits(1):
            best = timed(benchmark, fn, rounds=200, iterations=5, warmup=20)
    finally:
        _core.set_gemm_sparse(-1)
    m, k = a.shape
    record(group, case, impl, best, 2.0 * m * k * b.shape[1])


@pytest.mark.parametrize("impl", ["pynn", "pynn dense", "numpy"])
@pytest.mark.parametrize("product", ["X W1", "X^T dZ1"])
def test_layer1_fashion(benchmark, layer1, impl, product):
    x, w1, dz1 = layer1
    if product == "X W1":
        a, b = x, w1
    else:
        a, b = x.T, dz1
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    zeros = float((a == 0).mean())
    _run(benchmark, impl, a, b, out, "layer 1 on a Fashion-MNIST batch (1 thread)",
         f"{product} ({zeros:.0%} zeros)")


@pytest.mark.parametrize("impl", ["pynn", "pynn dense"])
@pytest.mark.parametrize("zeros", [0.0, 0.3, 0.4, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("k,n", [(784, 256), (256, 128), (256, 64)])
def test_zero_fraction_sweep(benchmark, impl, zeros, k, n):
    rng = np.random.default_rng(1)
    a = rng.random((128, k), dtype=np.float32)
    a[rng.random(a.shape) < zeros] = 0.0
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((128, n), np.float32)
    _run(benchmark, impl, a, b, out, "zero fraction sweep, random A (1 thread)",
         f"128x{k} . {k}x{n}, {zeros:.0%} zeros")
