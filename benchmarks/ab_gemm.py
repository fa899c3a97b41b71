"""Before/after check for a kernel change: two builds of `pynn._core` in one process.

    PYNN_ARCH=avx512 python benchmarks/ab_gemm.py OLD/_core*.so NEW/_core*.so [--seconds 12]

Both extension modules are loaded side by side and called in strict alternation (old, new, new,
old, ...) on one thread, each timed with this thread's CPU time. On a shared machine the load
then changes under both alike, which a run of one build followed by a run of the other cannot
promise. Per shape it prints the best GFLOP/s of each build and the median over pairs of
time(new) / time(old) (< 1: the new build is faster), after checking that both builds give
bitwise the same C. PYNN_ARCH picks the kernel of both (each module reads it at import).

One caveat: the two builds keep separate packing buffers and write separate C arrays, so a
shape whose speed depends on where its buffers fall (4 KiB aliasing) can differ by a few percent
between the builds, and between runs, with identical code; rerun a suspicious shape alone
(--shapes) before trusting a gap.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import statistics
import sys
import time
import types
from functools import partial

import numpy as np

# (label, m, n, k, trans_a, trans_b): bench_gemm.py's shapes, the small-m direct path, the
# rest of the MLP's step, the convnet's conv2 and an LSTM step (also gemm_vs_blas.py's).
SHAPES = [
    ("2048^2", 2048, 2048, 2048, False, False),
    ("1024^2", 1024, 1024, 1024, False, False),
    ("fwd 128x784.784x256", 128, 256, 784, False, False),
    ("dW 784x128^T.128x256", 784, 256, 128, True, False),
    ("dX 128x256.(784x256)^T", 128, 784, 256, False, True),
    ("m=1 1x784.784x256", 1, 256, 784, False, False),
    ("m=4 4x784.784x256", 4, 256, 784, False, False),
    ("m=16 16x784.784x256", 16, 256, 784, False, False),
    ("m=16 16x256.256x128", 16, 128, 256, False, False),
    ("edges 100x300.300x50", 100, 50, 300, False, False),
    ("fwd2 128x256.256x128", 128, 128, 256, False, False),
    ("fwd3 128x128.128x10", 128, 10, 128, False, False),
    ("dW2 256x128^T.128x128", 256, 128, 128, True, False),
    ("dX2 128x128.(256x128)^T", 128, 256, 128, False, True),
    ("dX3 128x10.(128x10)^T", 128, 128, 10, False, True),
    ("dW3 128x128^T.128x10", 128, 10, 128, True, False),
    ("conv2 15488x288.288x64", 15488, 64, 288, False, False),
    ("conv2 dW 288x15488^T.15488x64", 288, 64, 15488, True, False),
    ("lstm 128x157.157x512", 128, 512, 157, False, False),
]


def load_core(path: str, package: str):
    """Imports the extension at `path` as `<package>._core` (the init symbol needs `_core`)."""
    pkg = types.ModuleType(package)
    pkg.__path__ = []
    sys.modules[package] = pkg
    name = package + "._core"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def operands(shapes: str):
    """(label, k, A, B, flops, reps) of each shape named in the comma-separated `shapes` (all
    when empty), A and B as the views the product reads; reps makes a timed batch of at least
    ~0.3 ms."""
    wanted = {s.strip() for s in shapes.split(",") if s.strip()}
    rng = np.random.default_rng(0)
    for label, m, n, k, ta, tb in SHAPES:
        if wanted and label not in wanted:
            continue
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        flops = 2.0 * m * n * k
        yield label, k, (a.T if ta else a), (b.T if tb else b), flops, max(1, int(3e7 / flops))


def race(fns, reps: int, seconds: float, clock) -> tuple[list[float], float, int]:
    """Calls fns[0] and fns[1] `reps` times each in alternation (old, new, new, old, ...) for
    `seconds` of `clock` at least; returns each one's best time per call, the median of
    time(new) / time(old) over the pairs, and the number of pairs."""
    best = [float("inf")] * 2
    ratios = []
    spent = 0.0
    while spent < seconds or len(ratios) < 5:
        t = [0.0, 0.0]
        for i in ((0, 1) if len(ratios) % 2 == 0 else (1, 0)):
            t0 = clock()
            for _ in range(reps):
                fns[i]()
            dt = clock() - t0
            spent += dt
            t[i] = dt / reps
            best[i] = min(best[i], t[i])
        ratios.append(t[1] / t[0])
    return best, statistics.median(ratios), len(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--seconds", type=float, default=12.0,
                    help="CPU seconds per shape, both builds together")
    ap.add_argument("--shapes", default="", help="comma-separated labels (default: all)")
    ap.add_argument("--blocksizes-differ", action="store_true",
                    help="the builds split K differently (another KC): compare C to a float64 "
                         "product within float32 rounding instead of bitwise")
    args = ap.parse_args()
    mods = [load_core(args.old, "pynn_ab_old"), load_core(args.new, "pynn_ab_new")]
    kernels = [m.kernel_info()["kernel"] for m in mods]
    peaks = [max(m.measure_fma_peak() for _ in range(3)) for m in mods]
    print(f"kernel old {kernels[0]}, new {kernels[1]}; measure_fma_peak old {peaks[0]:.1f}, "
          f"new {peaks[1]:.1f} GFLOP/s (wall clock, best of 3)")
    print(f"{'shape':24s} {'old GF/s':>9s} {'new GF/s':>9s} {'median new/old time':>20s} "
          f"{'pairs':>6s}")
    for label, k, A, B, flops, reps in operands(args.shapes):
        outs = [np.empty((A.shape[0], B.shape[1]), np.float32) for _ in mods]
        for mod, c in zip(mods, outs):
            for _ in range(3):
                mod.gemm(A, B, c, nthreads=1)
        if args.blocksizes_differ:
            # Another K split changes only the order of the float32 sums: both builds must stay
            # within a few units of rounding of the exact product (scaled by sqrt(k)).
            ref = A.astype(np.float64) @ B.astype(np.float64)
            tol = 8 * np.finfo(np.float32).eps * np.sqrt(k) * np.abs(A) @ np.abs(B)
            if any(np.any(np.abs(o - ref) > tol + 1e-30) for o in outs):
                sys.exit(f"{label}: a build is wrong")
        elif not np.array_equal(outs[0], outs[1]):
            sys.exit(f"{label}: the builds disagree")
        best, ratio, pairs = race([partial(mod.gemm, A, B, c, nthreads=1)
                                   for mod, c in zip(mods, outs)],
                                  reps, args.seconds, time.thread_time)
        gf = [flops / x / 1e9 for x in best]
        print(f"{label:24s} {gf[0]:9.1f} {gf[1]:9.1f} {ratio:20.3f} {pairs:6d}")


if __name__ == "__main__":
    main()
