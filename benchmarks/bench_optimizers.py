"""One Adam step over a 784x256 kernel: pynn's fused update against NumPy with in-place ops.

    pytest benchmarks/bench_optimizers.py -s          (pytest-benchmark tables + the ratios)
    python benchmarks/bench_optimizers.py             (the ratio alone)

Both are timed in the same run (the machine is noisy); the figure is the ratio of best times.
The NumPy version is what a careful NumPy user writes: no temporaries beyond one scratch
array, every op in place, ~9 passes over memory; pynn's is one pass reading w, g, m, v and
writing w, m, v (28 bytes per element).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pynn import _core

try:  # benchmarks/conftest.py, when run under pytest
    from conftest import timed
except ImportError:  # pragma: no cover - run as a script
    timed = None

SHAPE = (784, 256)
LR, B1, B2, EPS = 0.001, 0.9, 0.999, 1e-7


def make_state(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(SHAPE).astype(np.float32)
    g = rng.standard_normal(SHAPE).astype(np.float32)
    return w, g


def numpy_adam_step(w, g, m, v, tmp, t):
    alpha = LR * math.sqrt(1 - B2**t) / (1 - B1**t)
    m *= B1
    np.multiply(g, 1 - B1, out=tmp)
    m += tmp
    v *= B2
    np.multiply(g, g, out=tmp)
    tmp *= 1 - B2
    v += tmp
    np.sqrt(v, out=tmp)
    tmp += EPS
    np.divide(m, tmp, out=tmp)
    tmp *= alpha
    w -= tmp


def pynn_adam_step(w, g, slots, t):
    _core.optimizer_update("adam", None, t, w, g, slots)


def _numpy_runner():
    w, g = make_state()
    m, v, tmp = np.zeros_like(w), np.zeros_like(w), np.empty_like(w)
    state = {"t": 0}

    def step():
        state["t"] += 1
        numpy_adam_step(w, g, m, v, tmp, state["t"])
    return step


def _pynn_runner():
    w, g = make_state()
    slots = _core.optimizer_slots("adam", None, w.shape)
    state = {"t": 0}

    def step():
        state["t"] += 1
        pynn_adam_step(w, g, slots, state["t"])
    return step


def best_time(step, repeats=7, number=200):
    step()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            step()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def report():
    n = SHAPE[0] * SHAPE[1]
    threads = _core.get_num_threads()
    lines = [f"Adam step over {SHAPE[0]}x{SHAPE[1]} ({n} floats), pynn arch {_core.arch()}"]
    t_np = best_time(_numpy_runner())
    results = {}
    for nt in sorted({1, threads}):
        _core.set_num_threads(nt)
        try:
            results[nt] = best_time(_pynn_runner())
        finally:
            _core.set_num_threads(threads)
    lines.append(f"  numpy (in place)   {t_np * 1e6:8.1f} us   {28 * n / t_np / 1e9:5.1f} GB/s "
                 "(as if one pass)")
    for nt, t in results.items():
        lines.append(f"  pynn {nt} thread(s)   {t * 1e6:8.1f} us   {28 * n / t / 1e9:5.1f} GB/s   "
                     f"{t_np / t:5.1f}x numpy")
    return "\n".join(lines)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("impl", ["numpy", "pynn"])
def test_adam_step(benchmark, recorder, impl, threads):
    # NumPy's element-wise ops run on one thread whatever the limit; pynn's on `threads`.
    before = _core.get_num_threads()
    _core.set_num_threads(threads)
    try:
        step = _numpy_runner() if impl == "numpy" else _pynn_runner()
        sec = timed(benchmark, step, rounds=200, warmup=5)
    finally:
        _core.set_num_threads(before)
    recorder("adam step (one pass vs in-place numpy)", f"{SHAPE[0]}x{SHAPE[1]} {threads}t", impl,
             sec)


def test_adam_step_ratio():
    print("\n" + report())


if __name__ == "__main__":
    print(report())
