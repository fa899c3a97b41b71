"""SGEMM on one thread against this core's FMA peak, NumPy (OpenBLAS) and torch.matmul (MKL or
oneDNN), all in one process and in strict alternation, for a busy machine.

    python benchmarks/gemm_vs_blas.py [--seconds 3] [--shapes LABEL,...] [--threads 1]

Each shape is timed in short windows, one implementation after the other in a rotating order,
and `measure_fma_peak` is sampled in short windows between them (its own wall clock). Every
figure is the best window, the one least disturbed by other tenants (this thread's CPU time on
one thread, else wall clock), so the % of peak compares two best cases of the same seconds.
Shapes: ab_gemm.py's (2048^2, the 784-256-128-10 MLP at batch 128: forward, dW = X^T dZ,
dX = dZ W^T; the MNIST convnet's conv2 and its dW, an LSTM step).
Prints GFLOP/s, % of peak and pynn's speed over each baseline (> 1: pynn faster).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from ab_gemm import SHAPES  # (label, m, n, k, trans_a, trans_b)
from threadpoolctl import threadpool_limits

from pynn import _core

try:
    import torch
except ImportError:  # torch is in the [bench] extra
    torch = None


def best_window(fn, reps: int, clock) -> float:
    t0 = clock()
    for _ in range(reps):
        fn()
    return (clock() - t0) / reps


def implementations(A, B, out, nt: int) -> dict:
    fns = {"pynn": lambda: _core.gemm(A, B, out, nthreads=nt),
           "numpy": lambda: np.matmul(A, B, out=out)}
    if torch is not None:
        At, Bt, Ot = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(out)
        fns["torch"] = lambda: torch.matmul(At, Bt, out=Ot)
    return fns


def measure(fns: dict, flops: float, seconds: float, peak: list, clock) -> dict:
    """Best window per implementation (GFLOP/s), rotating the order; samples the peak too."""
    reps = max(1, int(2e7 / flops))  # windows of ~0.1-0.2 ms at least
    best = {name: float("inf") for name in fns}
    names = list(fns)
    t_end = time.perf_counter() + seconds
    r = 0
    while time.perf_counter() < t_end or r < 3:
        for name in names[r % len(names):] + names[:r % len(names)]:
            best[name] = min(best[name], best_window(fns[name], reps, clock))
        peak[0] = max(peak[0], _core.measure_fma_peak(100000))
        r += 1
    return {name: flops / t / 1e9 for name, t in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="wall seconds per shape")
    ap.add_argument("--shapes", default="", help="comma-separated label prefixes (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    nt = args.threads
    if torch is not None:
        torch.set_num_threads(nt)
    wanted = [s.strip() for s in args.shapes.split(",") if s.strip()]
    rng = np.random.default_rng(0)
    peak = [0.0]
    # One thread: every implementation runs in this thread, so its CPU time is the figure
    # (time spent descheduled by other tenants does not count). More threads: wall clock.
    clock = time.thread_time if nt == 1 else time.perf_counter
    print(f"kernel {_core.kernel_info()['kernel']}, {nt} thread(s); best windows, same run")
    rows = []
    with threadpool_limits(nt):
        for label, m, n, k, ta, tb in SHAPES:
            if wanted and not any(label.startswith(w) for w in wanted):
                continue
            a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
            A, B = (a.T if ta else a), (b.T if tb else b)
            out = np.empty((m, n), np.float32)
            rows.append((label, measure(implementations(A, B, out, nt), 2.0 * m * n * k,
                                        args.seconds, peak, clock)))
    print(f"{'shape':32s} {'pynn GF/s':>9s} {'%peak':>6s} {'numpy':>7s} {'torch':>7s} "
          f"{'vs np':>6s} {'vs torch':>8s}")
    for label, gf in rows:
        tg = gf.get("torch", float("nan"))
        print(f"{label:32s} {gf['pynn']:9.1f} {100 * gf['pynn'] / (peak[0] * nt):5.0f}% "
              f"{gf['numpy']:7.1f} {tg:7.1f} {gf['pynn'] / gf['numpy']:6.2f} "
              f"{gf['pynn'] / tg:8.2f}")
    print(f"measure_fma_peak (best short window over the run): {peak[0]:.1f} GFLOP/s per core")


if __name__ == "__main__":
    main()
