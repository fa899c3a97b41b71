"""Epoch flatness: ten epochs in a row of the 784-256-128-10 ReLU MLP (Adam 1e-3, batch 128),
each timed on its own, for pynn, PyTorch CPU and the NumPy MLP of bench_train.py, on 1 and 2
threads, in the same run.

    pytest benchmarks/bench_flat.py

A training run whose optimizer state drifts into subnormal numbers gets slower epoch after
epoch (a subnormal operand costs an x86 core about a hundred cycles); pynn's compute runs with
flush-to-zero and denormals-are-zero and its optimizers never store subnormal state, so its
max/min over the ten epochs should stay near 1. The table gives each implementation's fastest
epoch; the notes give every epoch and the max/min ratio.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from bench_train import BATCH, NumpyMLP, data, pynn_model, torch, torch_model  # noqa: F401
from conftest import NOTES, record
from threadpoolctl import threadpool_limits

import pynn

EPOCHS = 10


def epoch_fn(impl: str, x: np.ndarray, y: np.ndarray):
    n = len(x)
    rng = np.random.default_rng(0)
    if impl == "pynn":
        pynn.utils.set_random_seed(0)
        model = pynn_model()
        return lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
    if impl == "numpy":
        mlp = NumpyMLP(rng)

        def run_numpy():
            order = rng.permutation(n)
            for s in range(0, n, BATCH):
                idx = order[s:s + BATCH]
                mlp.step(x[idx], y[idx])
        return run_numpy
    net, opt = torch_model()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run_torch():
        perm = torch.randperm(n)
        for s in range(0, n, BATCH):
            idx = perm[s:s + BATCH]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return run_torch


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["pynn", "numpy"] + (["torch"] if torch is not None else []))
def test_epoch_flatness(benchmark, data, impl, threads):  # noqa: F811
    x, y = data
    times = []
    with threadpool_limits(threads):
        if torch is not None:
            torch.set_num_threads(threads)
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
