"""A busy machine: one epoch of the 784-256-128-10 ReLU MLP (Adam 1e-3, batch 128) on 20,000
rows while another process keeps one core busy (a Python busy loop pinned to CPU 0), on pynn's
default thread count and on 1 thread, and the same for PyTorch, in the same run.

    pytest benchmarks/bench_busy.py

CI runners, laptops and containers are busy machines: a parallel region that waits for a thread
the scheduler has taken off its CPU stalls for a time slice. The figure that matters is the
default's time over the 1-thread time with the core busy (target: at most 1.25).

A second, steadier case puts the whole process on one CPU (its affinity mask) and runs 2
threads there against 1: every region then has a thread without a CPU, whatever else the
machine runs, so the ratio shows what a descheduled thread costs a region (ideal: 1.0).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest
from bench_train import data, epoch_fn, torch  # noqa: F401
from conftest import NOTES, record
from threadpoolctl import threadpool_limits

import pynn

ROWS = 20000


def _spin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    while True:
        pass


@pytest.fixture(scope="module")
def busy_core():
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_spin, args=(0,), daemon=True)
    proc.start()
    time.sleep(0.5)  # let it start spinning
    yield
    proc.terminate()
    proc.join()


TIMES: dict = {}


@pytest.mark.parametrize("impl", ["pynn"] + (["torch"] if torch is not None else []))
@pytest.mark.parametrize("threads", ["default", 1])
def test_epoch_with_one_core_busy(benchmark, data, busy_core, impl, threads):  # noqa: F811
    x, y = data
    x, y = x[:ROWS], y[:ROWS]
    n = pynn.get_num_threads() if threads == "default" else threads
    with threadpool_limits(n):
        if torch is not None:
            torch.set_num_threads(n)
        fn = epoch_fn(impl, x, y)
        fn()  # warm-up: graph built, workers started
        benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)
    best = benchmark.stats.stats.min
    record("one core busy: epoch of 20,000 rows (s)", f"{threads} threads ({n})", impl, best)
    TIMES[(impl, threads)] = best
    if (impl, 1) in TIMES and (impl, "default") in TIMES:
        NOTES.append(f"{impl}: one core busy, default threads ({pynn.get_num_threads()}) / 1 "
                     f"thread = {TIMES[(impl, 'default')] / TIMES[(impl, 1)]:.2f}x")


@pytest.fixture
def one_cpu():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs sched_setaffinity (Linux)")
    before = os.sched_getaffinity(0)

    def every_thread(cpus):  # the pool's workers too (a mask belongs to one thread)
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:  # a thread that has just ended
                pass
    every_thread({max(before)})
    yield
    every_thread(before)


@pytest.mark.parametrize("threads", [2, 1])
def test_epoch_two_threads_on_one_cpu(benchmark, data, one_cpu, threads):  # noqa: F811
    x, y = data
    x, y = x[:ROWS], y[:ROWS]
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        fn = epoch_fn("pynn", x, y)
        fn()
        benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)
    finally:
        pynn.set_num_threads(before)
    best = benchmark.stats.stats.min
    record("one CPU: epoch of 20,000 rows (s)", f"{threads} threads", "pynn", best)
    TIMES[("one cpu", threads)] = best
    if ("one cpu", 1) in TIMES and ("one cpu", 2) in TIMES:
        NOTES.append("pynn: process on one CPU, 2 threads / 1 thread = "
                     f"{TIMES[('one cpu', 2)] / TIMES[('one cpu', 1)]:.2f}x")
