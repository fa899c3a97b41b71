"""GEMM blocksizes follow the caches cpuid reports (csrc/gemm/blocksizes.h): the A micro-panel
fits half of L1d, the packed B block half of L2, each a multiple of its register block;
PYNN_GEMM_KC/_MC/_NC override them, and results stay bitwise the same on any thread count."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import pynn


def test_blocksizes_fit_the_reported_caches():
    info = pynn.kernel_info()
    mr, nr, kc, mc, nc = (info[k] for k in ("MR", "NR", "KC", "MC", "NC"))
    assert mc % mr == 0 and nc % nr == 0 and kc % 16 == 0
    if info["cache_l1d"]:
        assert 128 <= kc <= 512
        assert kc == 512 or mr * kc * 4 <= info["cache_l1d"] // 2 < mr * (kc + 16) * 4
    if info["cache_l2"]:
        assert nc == nr or kc * nc * 4 <= info["cache_l2"] // 2
        assert kc * (nc + nr) * 4 > info["cache_l2"] // 2 or nc == 4096 // nr * nr


def test_environment_overrides_and_thread_count_determinism():
    code = ("import numpy as np, pynn; i = pynn.kernel_info(); print(i['KC'], i['MC'], i['NC']);"
            "rng = np.random.default_rng(0); a = rng.standard_normal((300, 700), np.float32);"
            "b = rng.standard_normal((700, 200), np.float32); out = [];"
            "[(pynn.set_num_threads(t), out.append(pynn.ops.gemm(a, b))) for t in (1, 2)];"
            "print(np.array_equal(out[0], out[1]),"
            " np.allclose(out[0], a.astype(float) @ b, rtol=1e-4, atol=1e-3))")
    env = dict(os.environ, PYNN_GEMM_KC="96", PYNN_GEMM_MC="50", PYNN_GEMM_NC="70")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr[-2000:]
    info = pynn.kernel_info()
    sizes, checks = res.stdout.splitlines()
    # MC and NC are rounded down to multiples of MR and NR
    assert sizes.split() == ["96", str(50 // info["MR"] * info["MR"]),
                             str(max(info["NR"], 70 // info["NR"] * info["NR"]))]
    assert checks == "True True"


def test_product_matches_float64_across_k_panels():
    kc = pynn.kernel_info()["KC"]
    rng = np.random.default_rng(1)
    for k in (kc - 1, kc + 1, 2 * kc + 5):
        a = rng.standard_normal((37, k), dtype=np.float32)
        b = rng.standard_normal((k, 45), dtype=np.float32)
        # float32 sums of k unit-variance terms: error ~ 1e-7 * sqrt(k) * |c| (rtol 1e-4 is ample)
        np.testing.assert_allclose(pynn.ops.gemm(a, b), a.astype(np.float64) @ b, rtol=1e-4,
                                   atol=1e-4 * np.sqrt(k))
