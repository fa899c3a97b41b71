"""The faster kernel paths of the conv and max_pool ops on the sizes that reach their edges.

  * max_pool with 2x2 tiling windows takes one pass over the channels, four at a time, then
    a scalar tail: channel counts 1..9 and 33 (tail only, vector + tail, vector only), odd
    spatial sizes (a row and column no window covers), NaNs and ties placed in every
    position of the window, against the NumPy twin (a max is exact: compared bitwise).
  * conv's weight gradient packs the transposed patches a chunk of 256 positions at a time,
    with vector copies when the panel's rows are runs of 4 channels: channels per group 4,
    8, 12 (runs) and 6 (not), "valid" (every window inside) and "same" (border windows take
    the checked path), more positions than one chunk and than one K panel.
Every case also runs on 1 and 2 threads and with one row alone (bitwise, test_conv's check).
Tolerances are test_conv's (see its docstring).
"""
from __future__ import annotations

import numpy as np
import pytest
import test_conv as tc
from test_conv import Case, _rng, conv, pool

from pynn.reference import graph as ref_graph

POOLS = [pool(f"max2x2_c{c}_{h}x{w}", "max_pool", (h, w, c), (2, 2))
         for c, h, w in [(1, 4, 4), (4, 5, 4), (5, 4, 7), (7, 6, 6), (9, 3, 5), (33, 4, 4)]]
CONVS = [
    conv("dw_cg4_valid", (13, 13, 4), (3, 3, 4, 8), "relu"),
    conv("dw_cg8_valid_many", (15, 14, 8), (3, 3, 8, 5)),
    conv("dw_cg12_same", (9, 10, 12), (3, 3, 12, 7), "tanh", padding="same"),
    conv("dw_cg6_valid", (11, 11, 6), (3, 2, 6, 4)),
    conv("dw_cg8_same_s2_dil", (12, 11, 8), (3, 3, 8, 6), padding="same", strides=(2, 1),
         dilation_rate=(1, 2)),
]


@pytest.mark.parametrize("case", POOLS + CONVS, ids=repr)
def test_fast_paths_match_twin(case):
    tc.test_forward_matches_twin_and_eager_numpy(case, 3)
    tc.test_core_gradients_match_twin(case)


@pytest.mark.parametrize("case", [POOLS[3], POOLS[5], CONVS[1], CONVS[2]], ids=repr)
def test_fast_paths_are_thread_and_batch_independent(case):
    tc.test_results_do_not_depend_on_threads_or_batch(case)


@pytest.mark.parametrize("channels", [3, 6, 9])
def test_max_pool_2x2_nan_and_ties_in_every_tap(channels):
    """Channel c of window k gets a NaN, or a tie of the maximum, at a tap chosen per (k, c):
    the first NaN wins, else the first of the tied maxima, on vector lanes and the tail."""
    rng = _rng("nan_ties", channels)
    n, h, w = 4, 4, 6
    x = rng.standard_normal((n, h, w, channels)).astype(np.float32)
    win = x.reshape(n, h // 2, 2, w // 2, 2, channels)
    kind = rng.integers(0, 3, (n, h // 2, w // 2, channels))    # 0 plain, 1 NaN, 2 tie
    a = rng.integers(0, 4, kind.shape)
    b = (a + 1 + rng.integers(0, 3, kind.shape)) % 4              # another tap
    for idx in np.ndindex(kind.shape):
        s, i, j, c = idx
        taps = [(di, dj) for di in range(2) for dj in range(2)]
        (ai, aj), (bi, bj) = taps[a[idx]], taps[b[idx]]
        if kind[idx] == 1:
            win[s, i, ai, j, aj, c] = np.nan
        elif kind[idx] == 2:
            top = float(np.nanmax(win[s, i, :, j, :, c])) + 1.0
            win[s, i, ai, j, aj, c] = top
            win[s, i, bi, j, bj, c] = top
    case = Case("p", "max_pool", (h, w, channels), {"pool_size": [2, 2], "padding": "valid"})
    spec = case.spec([])
    got = np.empty((n, h // 2, w // 2, channels), np.float32)
    spec.to_core().predict([x], [got])
    twin = ref_graph.predict(spec, [x])[0]
    assert np.array_equal(got, twin.astype(np.float32), equal_nan=True)
    assert np.isnan(got[kind == 1]).all() and not np.isnan(got[kind != 1]).any()
    # the gradient goes to the winning tap only: the first NaN, or the first tied maximum
    seed = np.ones_like(got)
    dx = spec.to_core().input_gradient([x], [seed])[0]
    dwin = dx.reshape(win.shape)
    for idx in np.ndindex(kind.shape):
        s, i, j, c = idx
        g = dwin[s, i, :, j, :, c].ravel()
        v = win[s, i, :, j, :, c].ravel()
        first = int(np.flatnonzero(np.isnan(v))[0]) if kind[idx] == 1 else int(np.argmax(v))
        assert g.tolist() == [1.0 if t == first else 0.0 for t in range(4)], idx


DIRECT_TAILS = """
import numpy as np, pynn
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import graph as ref_graph
rng = np.random.default_rng(1)
worst = 0.0
for ow in range(1, 14):                  # every tail of a row below 12 (AVX-512) and 6 (AVX2)
    for c, act in [(1, "relu"), (3, "linear")]:
        shape, kernel = (4, ow + 2, c), (3, 3, c, 19)
        attrs = {"activation": act}
        spec = GraphSpec()
        t = spec.add_input(shape)
        k = spec.add_param(ParamRef((rng.standard_normal(kernel) * 0.3).astype(np.float32), "k"))
        b = spec.add_param(ParamRef(rng.standard_normal(kernel[-1]).astype(np.float32), "b"))
        x = rng.standard_normal((3,) + shape).astype(np.float32)
        spec.outputs = spec.add_node("conv", [t], [(2, ow, 19)], [k, b], attrs, "c")
        want = ref_graph.predict(spec, [x])[0]
        got = np.empty(want.shape, np.float32)
        spec.to_core().predict([x], [got])
        worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
print(pynn.kernel_info()["arch"], worst)
"""


@pytest.mark.parametrize("arch", ["avx2", "avx512"])
def test_direct_forward_row_tails_on_every_simd_kernel(arch):
    """The direct kernels' last block of a row holds exactly the positions left (1..R-1)."""
    import os
    import subprocess
    import sys

    from pynn import _core

    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU has no {arch}")
    res = subprocess.run([sys.executable, "-c", DIRECT_TAILS], env=dict(os.environ, PYNN_ARCH=arch),
                         capture_output=True, text=True, timeout=300, check=False,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr
    got_arch, worst = res.stdout.split()
    assert got_arch == arch
    assert float(worst) < 2e-5      # float32 sums of 9..27 products against float64
