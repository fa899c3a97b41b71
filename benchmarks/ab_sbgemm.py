"""Before/after check for the bf16 GEMM: two builds of `pynn._core` in one process.

    python benchmarks/ab_sbgemm.py OLD/_core*.so NEW/_core*.so [--seconds 8] [--threads 2]

As ab_gemm.py (same shapes, same strict alternation old, new, new, old, ...), for
`_core.sbgemm`; thread CPU time on 1 thread, wall time on more. Both builds' results are
checked against the float64 product of the bf16-rounded operands (the builds may split K
differently, so they need not agree bit for bit). Prints best GFLOP/s of each build and the
median over pairs of time(new) / time(old) (< 1: the new build is faster).
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import numpy as np
from ab_gemm import load_core, operands, race


def bf16(x):
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per shape, both builds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shapes", default="", help="comma-separated labels (default: all)")
    args = ap.parse_args()
    mods = [load_core(args.old, "pynn_ab_old"), load_core(args.new, "pynn_ab_new")]
    print("kernel old {}, new {}".format(*(m.sbgemm_info()["kernel"] for m in mods)))
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"{'shape':30s} {'old GF/s':>9s} {'new GF/s':>9s} {'median new/old':>15s} {'pairs':>6s}")
    for label, k, A, B, flops, reps in operands(args.shapes):
        outs = [np.empty((A.shape[0], B.shape[1]), np.float32) for _ in mods]
        for mod, c in zip(mods, outs):
            for _ in range(3):
                mod.sbgemm(A, B, c, 0.0, None, args.threads)
        ra, rb = bf16(A).astype(np.float64), bf16(B).astype(np.float64)
        ref, mag = ra @ rb, np.abs(ra) @ np.abs(rb)
        if any(np.any(np.abs(o - ref) > (k + 4) * 2.0 ** -24 * mag + 1e-30) for o in outs):
            sys.exit(f"{label}: a build is wrong")
        best, ratio, pairs = race(
            [partial(mod.sbgemm, A, B, c, 0.0, None, args.threads) for mod, c in zip(mods, outs)],
            reps, args.seconds, clock)
        gf = [flops / x / 1e9 for x in best]
        print(f"{label:30s} {gf[0]:9.1f} {gf[1]:9.1f} {ratio:15.3f} {pairs:6d}", flush=True)


if __name__ == "__main__":
    main()
