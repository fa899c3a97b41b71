"""The fused predict path for chains of bf16 Dense layers (the mixed_bfloat16 policy;
csrc/nn/dense_chain_bf16.cpp): each kernel rounded and packed once per call, blocks of rows
through every layer on sbgemm_prepacked_b.

Held bitwise against the general path (the same rows predicted in calls of fewer than 128
rows, which run each layer's dense op on the bf16 GEMM, weights packed per call), on 1 and 2
threads and on every kernel the CPU has (PYNN_ARCH, in a subprocess), and against the NumPy
twin (pynn.reference with bf16 rounding) layer by layer.

Twin tolerance, per layer: the products of the bf16-rounded operands are exact in float32,
so the engine differs from the twin (float64 sums of the same rounded operands) only by
float32 summation error in whatever order its kernel adds: at most (k + 4) u sum |terms| for
k terms plus the bias, u = 2**-24 (Higham ch. 3), plus (k + 1) 2**-126 for the subnormal
partial sums that VDPBF16PS and AMX flush; relu is 1-Lipschitz. Each layer is checked on the
engine's own float32 input to it (a model of the layers up to it), since a float32 and a
float64 sum may round to different bf16 values for the next layer. An unrounded operand is
off by 2**-9 relative, several times this bound (checked).
"""
from __future__ import annotations

import numpy as np
import pytest
from test_dense_chain import SMALL, general, same_bits
from test_gemm import run_python

import pynn
from pynn import _core
from pynn import layers as L
from pynn import mixed_precision as mp
from pynn.reference import bf16 as ref_bf16

U32 = 2.0 ** -24


@pytest.fixture(autouse=True)
def _restore():
    saved, threads = mp.global_policy(), pynn.get_num_threads()
    yield
    mp.set_global_policy(saved)
    pynn.set_num_threads(threads)


def bf16_mlp(sizes, acts, seed=0, use_bias=True):
    """An MLP under mixed_bfloat16 with biases away from zero (a dropped bias shows)."""
    mp.set_global_policy("mixed_bfloat16")
    pynn.utils.set_random_seed(seed)
    m = pynn.Sequential([pynn.Input((sizes[0],))] +
                        [L.Dense(u, activation=a, use_bias=use_bias)
                         for u, a in zip(sizes[1:], acts)])
    m.build()
    rng = np.random.default_rng(seed + 1)
    m.set_weights([w + (0.1 * rng.standard_normal(w.shape)).astype(np.float32)
                   for w in m.get_weights()])
    return m


def test_the_policy_reaches_the_ops():
    m = bf16_mlp([5, 4, 3], ["relu", "softmax"])
    m.predict(np.zeros((1, 5), np.float32), verbose=0)  # builds the predict graph
    assert all(n.attrs.get("compute_dtype") == "bfloat16"
               for n in m._pspec.nodes if n.op == "dense")


@pytest.mark.parametrize("sizes", [
    [784, 256, 128, 10],           # the benchmark MLP (K past one bf16 panel: 784)
    [1, 1],                        # one input, one unit
    [33, 31, 32, 33, 17],          # columns around the 32-wide bf16 tile
    [70, 65, 64, 63, 48, 17, 16],
    [1025, 40], [2049, 3],         # K around and over the panel depths
    [300, 5, 600, 2],              # a narrow layer in the middle
])
def test_chain_is_bitwise_the_general_path(sizes):
    acts = ["relu"] * (len(sizes) - 2) + ["softmax"]
    m = bf16_mlp(sizes, acts)
    x = np.random.default_rng(len(sizes)).standard_normal((300, sizes[0])).astype(np.float32)
    for t in (1, 2):
        pynn.set_num_threads(t)
        got = m.predict(x, verbose=0)
        same_bits(got, general(m, x), f"fused vs general path, {t} threads")
        same_bits(got[:3], np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(3)]),
                  f"fused vs one row, {t} threads")


# 0 and 1 row; the fused path's threshold (128); blocks of 4 x MR rows (48 with the 12-row
# AVX512_BF16 tile, 64 with 16-row ones) and one block a thread; the engine's 256-row chunk.
ROWS = [0, 1, 2, 127, 128, 129, 191, 192, 193, 255, 256, 257, 1000, 1001]


@pytest.mark.parametrize("rows", ROWS)
def test_row_counts_on_one_and_two_threads(rows):
    m = bf16_mlp([100, 70, 40, 6], ["relu", "relu", "softmax"], seed=30)
    x = np.random.default_rng(rows).standard_normal((rows, 100)).astype(np.float32)
    got = {}
    for t in (1, 2):
        pynn.set_num_threads(t)
        if rows == 0:  # Model.predict refuses no rows; the engine returns none
            with pytest.raises(ValueError, match="x: expected at least one sample"):
                m.predict(x, verbose=0)
            got[t] = np.full((0, 6), np.nan, np.float32)
            m._predict_graph().predict([x], [got[t]], 256)
        else:
            got[t] = m.predict(x, verbose=0)
        assert got[t].shape == (rows, 6) and got[t].dtype == np.float32
    same_bits(got[1], got[2], "1 vs 2 threads")
    if rows:
        same_bits(got[2], general(m, x), "fused vs general path")


def test_special_values_and_non_contiguous_input():
    """NaN, infinities, -0 and zero rows as the general path has them; a strided input."""
    m = bf16_mlp([40, 45, 33, 3], ["relu", "relu", "linear"], seed=13)
    big = np.random.default_rng(14).standard_normal((300, 80)).astype(np.float32)
    x = big[:, ::2]
    x[5, 3] = np.nan
    x[17, :] = -0.0
    x[40, 7] = np.inf
    x[41, 8] = -np.inf
    x[60:80, :] = 0.0
    x[90, 9] = 1e-40  # subnormal: rounds to zero in bf16
    got = m.predict(x, verbose=0)
    same_bits(got, general(m, np.ascontiguousarray(x)), "fused vs general path")
    assert np.isnan(got[5]).all() and np.isfinite(got[100:]).all()


def test_the_float32_model_differs():
    """The bf16 chain really rounds: the same weights in float32 give other bits."""
    m = bf16_mlp([784, 256, 128, 10], ["relu", "relu", "linear"], seed=3)
    x = np.random.default_rng(4).random((300, 784), dtype=np.float32)
    got = m.predict(x, verbose=0)
    mp.set_global_policy("float32")
    f = pynn.Sequential([pynn.Input((784,)), L.Dense(256, activation="relu"),
                         L.Dense(128, activation="relu"), L.Dense(10)])
    f.build()
    f.set_weights(m.get_weights())
    want = f.predict(x, verbose=0)
    assert not np.array_equal(got, want)
    # bf16 operands: 2**-9 relative each, a few of those over a layer's sums
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05 * np.abs(want).max())


def _prefix(m, n_layers, last_act):
    """A bf16 model of m's first n_layers with m's weights, the last one's activation set."""
    sizes = [m.layers[0].kernel.shape[0]] + [ly.units for ly in m.layers[:n_layers]]
    acts = ["relu"] * (n_layers - 1) + [last_act]
    p = bf16_mlp(sizes, acts)
    p.set_weights(m.get_weights()[:2 * n_layers])
    return p


# 200 rows: the packed chain; 1 row: the one-row kernels (gemm/sbgemv.h), whose twin is the
# same one-row product
@pytest.mark.parametrize("rows", [200, 1])
@pytest.mark.parametrize("sizes", [[784, 256, 128, 10], [1025, 33, 17]])
def test_each_layer_within_the_bound_of_the_twin(sizes, rows):
    m = bf16_mlp(sizes, ["relu"] * (len(sizes) - 2) + ["linear"], seed=5)
    w = m.get_weights()
    x = np.random.default_rng(6).standard_normal((rows, sizes[0])).astype(np.float32)
    x[::7, ::3] = 0.0
    prev = x
    for n in range(1, len(sizes)):
        act = "relu" if n < len(sizes) - 1 else "linear"
        got = _prefix(m, n, act).predict(x, verbose=0)
        a = ref_bf16.round_bf16(prev.astype(np.float64))
        k = ref_bf16.round_bf16(w[2 * n - 2].astype(np.float64))
        b = w[2 * n - 1].astype(np.float64)
        z = a @ k + b
        want = np.maximum(z, 0.0) if act == "relu" else z
        kk = a.shape[1]
        tol = (kk + 4) * U32 * (np.abs(a) @ np.abs(k) + np.abs(b)) + (kk + 1) * 2.0 ** -126
        err = np.abs(got - want)
        assert np.all(err <= tol), f"layer {n}: worst error / bound {np.max(err / tol):.3g}"
        # an operand left unrounded would be off by several times the bound
        z32 = prev.astype(np.float64) @ w[2 * n - 2].astype(np.float64) + b
        assert np.max(np.abs(z32 - z) / tol) > 3, "the twin's rounding does not show"
        prev = got
    same_bits(prev, m.predict(x, verbose=0), "the whole chain vs its last prefix")


ARCH_CHECK = """
import hashlib, numpy as np, pynn
from pynn import _core
import test_dense_chain_bf16 as t
from test_dense_chain import general
m = t.bf16_mlp([784, 256, 128, 10], ["relu", "relu", "softmax"], seed=40)
x = np.random.default_rng(41).standard_normal((1001, 784)).astype(np.float32)
outs = []
for th in (1, 2):
    pynn.set_num_threads(th)
    outs.append(m.predict(x, verbose=0))
    outs.append(np.concatenate([m.predict(x[i:i + 1], verbose=0) for i in range(5)]))
ok = (np.array_equal(outs[0].view(np.uint32), outs[2].view(np.uint32))
      and np.array_equal(outs[0].view(np.uint32), general(m, x).view(np.uint32))
      and np.array_equal(outs[0][:5].view(np.uint32), outs[1].view(np.uint32))
      and np.array_equal(outs[1].view(np.uint32), outs[3].view(np.uint32)))
print(_core.sbgemm_info()["kernel"], ok)
"""

# PYNN_ARCH -> the bf16 kernel (as test_conv_bf16): avx512 and below emulate bf16 on the
# float32 micro-kernel
KERNELS = {"amx": "amx", "avx512_bf16": "avx512_bf16", "avx512": "emulated_avx512",
           "avx2": "emulated_avx2", "generic": "emulated_generic"}


def run_on_kernel(code, arch):
    """Runs `code` in a subprocess with PYNN_ARCH=arch (skipped where the CPU lacks it), whose
    first output word is the bf16 kernel's name, checked here; returns the other words and
    the subprocess's stderr."""
    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU has no {arch}")  # the arch runs where the CPU has it
    res = run_python(code, PYNN_ARCH=arch)
    assert res.returncode == 0, res.stderr
    kernel, *rest = res.stdout.split()
    assert kernel.startswith(KERNELS[arch]) or (arch == "amx" and
                                                kernel.startswith("avx512_bf16")), kernel
    return rest, res.stderr


@pytest.mark.parametrize("arch", list(KERNELS))
def test_every_kernel_is_bitwise_the_general_path(arch):
    assert run_on_kernel(ARCH_CHECK, arch)[0] == ["True"]


def test_small_calls_stay_on_the_general_path_and_agree():
    m = bf16_mlp([50, 30, 4], ["relu", "softmax"], seed=50)
    x = np.random.default_rng(51).standard_normal((SMALL, 50)).astype(np.float32)
    same_bits(m.predict(x, verbose=0)[:1], m.predict(x[:1], verbose=0), "100 rows vs one")


def test_chain_sees_a_weight_change():
    """The kernels are rounded and packed from the weights at every call, never kept."""
    m = bf16_mlp([30, 20, 3], ["relu", "softmax"], seed=8)
    x = np.random.default_rng(9).standard_normal((300, 30)).astype(np.float32)
    before = m.predict(x, verbose=0)
    m.set_weights([v * 1.5 for v in m.get_weights()])
    after = m.predict(x, verbose=0)
    assert not np.array_equal(after, before)
    same_bits(after, general(m, x), "after set_weights: fused vs general path")
    m.layers[0].kernel.assign(m.get_weights()[0] * 0.5)
    same_bits(m.predict(x, verbose=0), general(m, x), "after kernel.assign")
    assert not np.array_equal(m.predict(x, verbose=0), after)
