"""Epoch flatness: ten epochs in a row of the 784-256-128-10 ReLU MLP (Adam 1e-3, batch 128),
each timed on its own, for pynn (float32, and "pynn_bf16" under the mixed_bfloat16 policy),
PyTorch CPU and the NumPy MLP of bench_train.py, on 1 and 2 threads, in the same run.

    pytest benchmarks/bench_flat.py

A training run whose optimizer state drifts into subnormal numbers gets slower epoch after
epoch (a subnormal operand costs an x86 core about a hundred cycles); pynn's compute runs with
flush-to-zero and denormals-are-zero and its optimizers never store subnormal state, so its
max/min over the ten epochs should stay near 1. The table gives each implementation's fastest
epoch; the notes give every epoch and the max/min ratio.
"""
from __future__ import annotations

import time

import pytest
from bench_train import data, epoch_fn, torch  # noqa: F401
from conftest import NOTES, record
from threadpoolctl import threadpool_limits

from pynn import mixed_precision as mp

EPOCHS = 10


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["pynn", "pynn_bf16", "numpy"]
                         + (["torch"] if torch is not None else []))
def test_epoch_flatness(benchmark, data, impl, threads):  # noqa: F811
    x, y = data
    times = []
    with threadpool_limits(threads):
        if torch is not None:
            torch.set_num_threads(threads)
        if impl == "pynn_bf16":
            # the policy applies to layers made under it; the model keeps it afterwards
            mp.set_global_policy("mixed_bfloat16")
            try:
                fn = epoch_fn("pynn", x, y)
            finally:
                mp.set_global_policy("float32")
        else:
            fn = epoch_fn(impl, x, y)

        def ten_epochs():
            times.clear()
            for _ in range(EPOCHS):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        benchmark.pedantic(ten_epochs, rounds=1, iterations=1, warmup_rounds=0)
    record("epoch flatness: fastest of 10 epochs (s)", f"epoch {len(x)} rows {threads}t", impl,
           min(times))
    NOTES.append(f"{impl:6s} {threads}t epochs (s): " + " ".join(f"{t:.3f}" for t in times)
                 + f"   max/min {max(times) / min(times):.2f}")
