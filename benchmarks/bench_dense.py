"""Fused dense forward + backward against the same computation composed in NumPy.

Shape: batch 128, 784 -> 256, relu (the first layer of the course's MLP). Both sides run in the
same process under the same thread limit (threadpoolctl caps OpenBLAS and pynn's pool alike);
the ratio NumPy time / pynn time is printed (> 1 means pynn is faster).

    pytest benchmarks/bench_dense.py -s --benchmark-columns=min,median,rounds
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import record
from threadpoolctl import threadpool_limits

import pynn
from pynn import _core

N, IN, OUT = 128, 784, 256
# forward x@W, backward x^T@dz and dz@W^T: three GEMMs of N*IN*OUT multiply-adds each.
FLOP = 3 * 2 * N * IN * OUT


def make_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, IN)).astype(np.float32)
    W = (rng.standard_normal((IN, OUT)) * 0.05).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    dy = rng.standard_normal((N, OUT)).astype(np.float32)
    return x, W, b, dy


def pynn_step(x, W, b, dy):
    y, z = _core.dense_forward(x, W, b, "relu")
    return _core.dense_backward(x, W, z, y, dy, "relu")


def numpy_step(x, W, b, dy):
    z = x @ W + b
    y = np.maximum(z, 0)
    dz = dy * (z > 0)
    dW = x.T @ dz
    db = dz.sum(axis=0)
    dx = dz @ W.T
    return y, dx, dW, db


def best_time(fn, args, repeat=300):
    fn(*args)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("threads", [1, 2])
def test_dense_forward_backward(benchmark, threads):
    data = make_data()
    with threadpool_limits(limits=threads):
        assert pynn.get_num_threads() == threads
        # Same answer before timing anything.
        _, dx, dW, db = numpy_step(*data)
        pdx, pdW, pdb = pynn_step(*data)
        np.testing.assert_allclose(pdW, dW, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(pdx, dx, rtol=1e-3, atol=1e-3)
        t_np = best_time(numpy_step, data)
        t_pynn = best_time(pynn_step, data)
        benchmark.pedantic(pynn_step, args=data, rounds=200, warmup_rounds=5)
    t_bench = benchmark.stats.stats.min
    ratio = t_np / min(t_pynn, t_bench)
    benchmark.extra_info.update(numpy_s=t_np, ratio_vs_numpy=ratio)
    record("dense forward + backward (fused vs NumPy composition)",
           f"{N}x{IN}->{OUT} relu {threads}t", "pynn", min(t_pynn, t_bench), FLOP)
    record("dense forward + backward (fused vs NumPy composition)",
           f"{N}x{IN}->{OUT} relu {threads}t", "numpy", t_np, FLOP)
    print(f"\ndense fwd+bwd {N}x{IN}->{OUT} relu, {threads} thread(s): "
          f"pynn {min(t_pynn, t_bench) * 1e6:.0f} us "
          f"({FLOP / min(t_pynn, t_bench) / 1e9:.1f} GFLOP/s), "
          f"numpy {t_np * 1e6:.0f} us ({FLOP / t_np / 1e9:.1f} GFLOP/s), "
          f"numpy/pynn = {ratio:.2f}x")
