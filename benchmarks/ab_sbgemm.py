"""Before/after check for the bf16 GEMM: two builds of `pynn._core` in one process.

    python benchmarks/ab_sbgemm.py OLD/_core*.so NEW/_core*.so [--seconds 8] [--threads 2]
    python benchmarks/ab_sbgemm.py torch NEW/_core*.so   # torch.matmul on bfloat16 as "old"

As ab_gemm.py (same shapes, same strict alternation old, new, new, old, ...), for
`_core.sbgemm`; thread CPU time on 1 thread, wall time on more. Both builds' results are
checked against the float64 product of the bf16-rounded operands (the builds may split K
differently, so they need not agree bit for bit). Prints best GFLOP/s of each build and the
median over pairs of time(new) / time(old) (< 1: the new build is faster). With "torch" for
OLD, the old side is torch.matmul on bfloat16 copies of the operands (the same views, made
before timing, as bench_bf16.py does), with torch on the same thread count.
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
    new = load_core(args.new, "pynn_ab_new")
    if args.old == "torch":
        import torch

        torch.set_num_threads(args.threads)
        old = None
    else:
        old = load_core(args.old, "pynn_ab_old")
    print("kernel old {}, new {}".format(
        "torch" if old is None else old.sbgemm_info()["kernel"], new.sbgemm_info()["kernel"]))
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"{'shape':30s} {'old GF/s':>9s} {'new GF/s':>9s} {'median new/old':>15s} {'pairs':>6s}")
    for label, k, A, B, flops, reps in operands(args.shapes):
        fns, outs = [], []
        for mod in (old, new):
            if mod is None:
                ta = torch.from_numpy(np.ascontiguousarray(A)).bfloat16()
                tb = torch.from_numpy(np.ascontiguousarray(B)).bfloat16()
                ta = ta.T.contiguous().T if A.strides[0] < A.strides[1] else ta
                tb = tb.T.contiguous().T if B.strides[0] < B.strides[1] else tb
                fns.append(partial(torch.matmul, ta, tb))
                continue
            c = np.empty((A.shape[0], B.shape[1]), np.float32)
            fns.append(partial(mod.sbgemm, A, B, c, 0.0, None, args.threads))
            outs.append(c)
        for fn in fns:
            for _ in range(3):
                fn()
        ra, rb = bf16(A).astype(np.float64), bf16(B).astype(np.float64)
        ref, mag = ra @ rb, np.abs(ra) @ np.abs(rb)
        if any(np.any(np.abs(o - ref) > (k + 4) * 2.0 ** -24 * mag + 1e-30) for o in outs):
            sys.exit(f"{label}: a build is wrong")
        best, ratio, pairs = race(fns, reps, args.seconds, clock)
        gf = [flops / x / 1e9 for x in best]
        print(f"{label:30s} {gf[0]:9.1f} {gf[1]:9.1f} {ratio:15.3f} {pairs:6d}", flush=True)


if __name__ == "__main__":
    main()
