"""Convolution and pooling: the conv, max_pool, avg_pool and global_pool graph ops, and the
Keras layers built on them (Conv1D/2D, MaxPooling1D/2D, AveragePooling1D/2D,
GlobalAveragePooling1D/2D, GlobalMaxPooling1D/2D).

One table of op cases (edge sizes: 1x1 kernels, a kernel larger than its input with "same",
strides larger than the window, odd sizes, dilation, groups, causal padding, batch 1) drives:
  * forward: the C++ graph (float32) against the NumPy twin (pynn.reference.conv, float64)
    and against eager NumPy written here as plain loops over the output positions;
  * the twin's backward against central differences (float64), for the input and the
    kernel and bias;
  * the C++ backward (input gradient, kernel and bias gradients) against the twin's;
  * 1 and 2 threads bitwise, and one row alone bitwise equal to the same row in a batch.

Tolerances. Forward: float32 against float64 over sums of k = kh*kw*Cg products of O(1)
terms: rtol 1e-5 plus atol 1e-5 * sqrt(k) (the rounding of a k-term float32 sum grows like
sqrt(k) ulps of the terms). Differences in float64 with h = 1e-6 err by about
h^2 f''' + 1e-16 |f| / h ~ 1e-10: rtol 1e-5 / atol 1e-7. The C++ gradients are float32
against float64, sums over at most a few thousand terms: 2e-4 of the gradient's largest
entry, which a missing or doubled term exceeds by orders of magnitude. Max pooling and the
global max are compared exactly (a max is exact) once ties are avoided: their inputs are
distinct values spaced 0.01 apart.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from test_ref_dense import numeric_grad

import pynn
from pynn import layers as L
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import graph as ref_graph


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# --- eager NumPy, from the definitions -------------------------------------------------------
def _geometry(length, k, s, d, padding):
    """(output length, zeros before): Keras's (TensorFlow's) rules, written out again."""
    span = (k - 1) * d + 1
    if padding == "valid":
        return (length - span) // s + 1, 0
    out = (length + s - 1) // s
    if padding == "causal":
        return out, span - 1
    return out, max((out - 1) * s + span - length, 0) // 2


def _lift(x):
    """1-D samples (b, W, C) as (b, 1, W, C)."""
    return x[:, None] if x.ndim == 3 else x


def eager_conv(x, kernel, bias, strides, padding, dilation, groups, act=None):
    one_d = x.ndim == 3
    x4 = _lift(x)
    k4 = kernel[None] if one_d else kernel
    strides = (1,) + tuple(strides) if one_d else tuple(strides)
    dilation = (1,) + tuple(dilation) if one_d else tuple(dilation)
    b, H, W, _ = x4.shape
    kh, kw, cg, F = k4.shape
    fg = F // groups
    OH, ph = _geometry(H, kh, strides[0], dilation[0], padding)
    OW, pw = _geometry(W, kw, strides[1], dilation[1], padding)
    y = np.zeros((b, OH, OW, F))
    for oh in range(OH):
        for ow in range(OW):
            for f in range(F):
                g = f // fg
                total = np.zeros(b) if bias is None else np.full(b, bias[f], dtype=np.float64)
                for i in range(kh):
                    for j in range(kw):
                        ih = oh * strides[0] - ph + i * dilation[0]
                        iw = ow * strides[1] - pw + j * dilation[1]
                        if 0 <= ih < H and 0 <= iw < W:
                            total = total + x4[:, ih, iw, g * cg:(g + 1) * cg] @ k4[i, j, :, f]
                y[:, oh, ow, f] = total
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "tanh":
        y = np.tanh(y)
    elif act == "sigmoid":
        y = 1 / (1 + np.exp(-y))
    elif act == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
    return y[:, 0] if one_d else y


def eager_pool(x, pool, strides, padding, fn):
    one_d = x.ndim == 3
    x4 = _lift(x)
    pool = (1,) + tuple(pool) if one_d else tuple(pool)
    strides = (1,) + tuple(strides) if one_d else tuple(strides)
    b, H, W, C = x4.shape
    OH, ph = _geometry(H, pool[0], strides[0], 1, padding)
    OW, pw = _geometry(W, pool[1], strides[1], 1, padding)
    y = np.zeros((b, OH, OW, C))
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * strides[0] - ph, ow * strides[1] - pw
            win = x4[:, max(h0, 0):max(h0 + pool[0], 0), max(w0, 0):max(w0 + pool[1], 0)]
            y[:, oh, ow] = win.max(axis=(1, 2)) if fn == "max" else win.mean(axis=(1, 2))
    return y[:, 0] if one_d else y


def eager_global(x, fn, keepdims):
    axes = tuple(range(1, x.ndim - 1))
    return (x.max if fn == "max" else x.mean)(axis=axes, keepdims=keepdims)


# --- the op cases -------------------------------------------------------------------------
def normal(rng, shape):
    return rng.standard_normal(shape)


def distinct(rng, shape):
    """Distinct values 0.01 apart (no ties in any window), in random order."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.01


class Case:
    def __init__(self, name, op, shape, attrs, kernel=None, gen=normal):
        self.name, self.op, self.shape, self.attrs = name, op, tuple(shape), dict(attrs)
        self.kernel, self.gen = kernel, gen

    def __repr__(self):
        return self.name

    def params(self, rng):
        if self.op != "conv":
            return []
        ps = [rng.standard_normal(self.kernel) * 0.5]
        if self.attrs.get("use_bias", True):
            ps.append(rng.standard_normal(self.kernel[-1]) * 0.1)
        return ps

    def eager(self, x, ps):
        a = self.attrs
        rank = len(self.shape) - 1
        if self.op == "conv":
            return eager_conv(x, ps[0], ps[1] if len(ps) > 1 else None,
                              a.get("strides", (1,) * rank), a.get("padding", "valid"),
                              a.get("dilation_rate", (1,) * rank), a.get("groups", 1),
                              a.get("activation"))
        if self.op in ("max_pool", "avg_pool"):
            return eager_pool(x, a["pool_size"], a.get("strides", a["pool_size"]),
                              a.get("padding", "valid"), self.op[:3])
        return eager_global(x, a["fn"], a.get("keepdims", False))

    def out_shape(self, ps):
        node = type("N", (), {"attrs": self.attrs})()
        y, _ = ref_graph.OPS[self.op][0](node, [np.zeros((1,) + self.shape)], ps, None)
        return y.shape[1:]

    def spec(self, ps):
        spec = GraphSpec()
        x = spec.add_input(self.shape)
        pids = [spec.add_param(ParamRef(np.ascontiguousarray(p, dtype=np.float32), f"p{k}"))
                for k, p in enumerate(ps)]
        spec.outputs = spec.add_node(self.op, [x], [self.out_shape(ps)], pids, self.attrs,
                                     self.name)
        return spec

    def reduction(self):
        return int(np.prod(self.kernel[:-1])) if self.op == "conv" else 1


def conv(name, shape, kernel, act="linear", **attrs):
    rank = len(shape) - 1
    full = {"strides": [1] * rank, "padding": "valid", "dilation_rate": [1] * rank,
            "groups": 1, "activation": act, "use_bias": True}
    full.update({k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()})
    return Case(name, "conv", shape, full, kernel)


def pool(name, op, shape, pool_size, **attrs):
    full = {"pool_size": list(pool_size), "padding": "valid"}
    full.update({k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()})
    return Case(name, op, shape, full, gen=distinct if op == "max_pool" else normal)


CASES = [
    # 2-D convolution
    conv("conv2d_3x3", (6, 7, 3), (3, 3, 3, 4), "relu"),
    conv("conv2d_1x1", (4, 5, 6), (1, 1, 6, 3)),
    conv("conv2d_1x1_stride2", (5, 5, 2), (1, 1, 2, 3), strides=(2, 2)),
    conv("conv2d_kernel_larger_same", (3, 2, 2), (5, 4, 2, 3), "tanh", padding="same"),
    conv("conv2d_stride_gt_kernel", (9, 8, 2), (2, 2, 2, 3), strides=(3, 3)),
    conv("conv2d_odd_same_stride2", (7, 5, 3), (3, 2, 3, 5), "sigmoid", strides=(2, 2),
         padding="same"),
    conv("conv2d_even_same_stride2", (6, 6, 1), (3, 3, 1, 2), strides=(2, 2), padding="same"),
    conv("conv2d_dilation2_same", (7, 6, 2), (3, 3, 2, 3), "tanh", padding="same",
         dilation_rate=(2, 2)),
    conv("conv2d_dilation21_valid", (8, 5, 2), (2, 3, 2, 2), dilation_rate=(2, 1)),
    conv("conv2d_groups2", (5, 5, 4), (3, 3, 2, 6), "relu", groups=2),
    conv("conv2d_depthwise_groups", (5, 4, 3), (2, 2, 1, 6), groups=3, padding="same"),
    conv("conv2d_softmax", (4, 4, 2), (3, 3, 2, 5), "softmax", padding="same"),
    conv("conv2d_no_bias", (5, 6, 3), (2, 3, 3, 4), use_bias=False),
    conv("conv2d_1x1_input", (1, 1, 3), (1, 1, 3, 2), "tanh"),
    conv("conv2d_wide_channels", (4, 4, 40), (3, 3, 40, 20), "relu", padding="same"),
    # 1-D convolution
    conv("conv1d_valid", (9, 3), (3, 3, 4), "relu"),
    conv("conv1d_same_stride2", (8, 2), (4, 2, 3), strides=(2,), padding="same"),
    conv("conv1d_causal_dilation2", (7, 2), (3, 2, 3), "tanh", padding="causal",
         dilation_rate=(2,)),
    conv("conv1d_causal_stride3", (10, 1), (2, 1, 2), padding="causal", strides=(3,)),
    conv("conv1d_groups", (6, 4), (2, 2, 4), groups=2),
    conv("conv1d_kernel_larger_same", (2, 3), (5, 3, 2), padding="same"),
    # pooling
    pool("max2d_2x2", "max_pool", (6, 7, 3), (2, 2)),
    pool("max2d_3x3_s2_same", "max_pool", (7, 6, 2), (3, 3), strides=(2, 2), padding="same"),
    pool("max2d_stride_gt_pool", "max_pool", (9, 8, 2), (2, 2), strides=(3, 3)),
    pool("max2d_overlap", "max_pool", (6, 6, 2), (3, 3), strides=(1, 1)),
    pool("max2d_pool_larger_same", "max_pool", (2, 3, 2), (4, 4), padding="same"),
    pool("max1d", "max_pool", (9, 3), (2,)),
    pool("max1d_same_s3", "max_pool", (8, 2), (3,), strides=(3,), padding="same"),
    pool("avg2d_2x2", "avg_pool", (6, 7, 3), (2, 2)),
    pool("avg2d_3x3_s2_same", "avg_pool", (7, 6, 2), (3, 3), strides=(2, 2), padding="same"),
    pool("avg2d_overlap_same", "avg_pool", (5, 5, 2), (3, 2), strides=(1, 1), padding="same"),
    pool("avg2d_pool_larger_same", "avg_pool", (2, 3, 2), (4, 4), padding="same"),
    pool("avg1d_s3", "avg_pool", (10, 2), (2,), strides=(3,)),
    Case("global_avg2d", "global_pool", (4, 5, 3), {"fn": "avg"}),
    Case("global_avg1d_keep", "global_pool", (6, 2), {"fn": "avg", "keepdims": True}),
    Case("global_max2d_keep", "global_pool", (4, 3, 3), {"fn": "max", "keepdims": True},
         gen=distinct),
    Case("global_max1d", "global_pool", (7, 4), {"fn": "max"}, gen=distinct),
]


def _atol(case):
    return 1e-5 * np.sqrt(case.reduction())


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_matches_twin_and_eager_numpy(case, batch):
    rng = _rng("fwd", case.name, batch)
    ps = case.params(rng)
    x = case.gen(rng, (batch,) + case.shape)
    spec = case.spec(ps)
    x32 = x.astype(np.float32)
    got = np.empty((batch,) + spec.shapes[spec.outputs[0]], np.float32)
    spec.to_core().predict([x32], [got])
    ps32 = [p.astype(np.float32).astype(np.float64) for p in ps]
    eager = case.eager(x32.astype(np.float64), ps32)
    twin = ref_graph.predict(spec, [x32])[0]
    assert got.shape == eager.shape == twin.shape
    np.testing.assert_allclose(twin, eager, rtol=1e-12, atol=1e-12)
    if case.op in ("max_pool",) or case.attrs.get("fn") == "max":
        assert np.array_equal(got, eager.astype(np.float32))
    else:
        np.testing.assert_allclose(got, eager, rtol=1e-5, atol=_atol(case))


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_twin_gradients_match_finite_differences(case):
    rng = _rng("fd", case.name)
    ps = case.params(rng)
    x = case.gen(rng, (2,) + case.shape)
    node = type("N", (), {"attrs": case.attrs})()
    forward, backward = ref_graph.OPS[case.op]
    y, saved = forward(node, [x], ps, None)
    R = rng.standard_normal(y.shape)
    dxs, dps = backward(node, saved, R)

    def f():
        return float((R * forward(node, [x], ps, None)[0]).sum())

    np.testing.assert_allclose(dxs[0], numeric_grad(f, x), rtol=1e-5, atol=1e-7)
    assert len(dps) == len(ps)
    for p, g in zip(ps, dps):
        assert g.shape == p.shape
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-5, atol=1e-7)


def _param_grads(g, nparams, xs, ys):
    """The engine's parameter gradients from one training step at learning rate 0."""
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    g.train_step(xs, ys)
    return [g.get_grad(p) for p in range(nparams)]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_core_gradients_match_twin(case):
    rng = _rng("core", case.name)
    ps = case.params(rng)
    x = case.gen(rng, (3,) + case.shape).astype(np.float32)
    spec = case.spec(ps)
    out, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    seed = rng.standard_normal(out[0].shape).astype(np.float32)
    _, want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
    got = spec.to_core().input_gradient([x], [seed])[0]
    scale = np.abs(want[0]).max()
    assert np.abs(got - want[0]).max() <= 2e-4 * scale, case.name
    if not ps:
        return
    # kernel and bias: the gradient of a mean squared error, from a training step
    target = rng.standard_normal(out[0].shape).astype(np.float32)
    loss = ("mean_squared_error", False, 1.0, 1.0)
    g = spec.to_core([loss])
    got = _param_grads(g, len(ps), [x], [target])
    _, _, want, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [loss])
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 2e-4 * np.abs(b).max(), (case.name, k)


# --- determinism: thread count and batch composition ----------------------------------------
BIG = [
    conv("big_conv2d", (16, 16, 8), (3, 3, 8, 16), "relu", padding="same"),
    conv("big_conv2d_s2_groups", (17, 15, 8), (3, 3, 4, 12), "tanh", strides=(2, 2),
         groups=2),
    conv("big_conv2d_direct", (28, 28, 1), (3, 3, 1, 32), "relu"),
    conv("big_conv2d_direct_s2", (19, 20, 3), (5, 5, 3, 40), "tanh", strides=(2, 2),
         padding="same"),
    conv("big_conv1d_causal", (64, 12), (5, 12, 24), padding="causal", dilation_rate=(2,)),
    pool("big_max2d", "max_pool", (24, 24, 16), (3, 3), strides=(2, 2), padding="same"),
    pool("big_avg2d", "avg_pool", (24, 24, 16), (2, 2)),
    pool("big_max2d_tiles", "max_pool", (25, 26, 32), (2, 2)),
    Case("big_global_max", "global_pool", (16, 16, 32), {"fn": "max"}),
]


@pytest.mark.parametrize("case", BIG, ids=repr)
def test_results_do_not_depend_on_threads_or_batch(case):
    rng = _rng("threads", case.name)
    ps = case.params(rng)
    n = 20
    x = case.gen(rng, (n,) + case.shape).astype(np.float32)
    check_threads_and_batch(rng, ps, x, case.spec(ps))


def check_threads_and_batch(rng, ps, x, spec):
    """Forward, dx and the parameter gradients of `spec` on batch `x` are bitwise the same on 1
    and 2 threads, and row 5 alone gives the bits it has inside the batch (forward and dx)."""
    n = len(x)
    out_shape = (n,) + spec.shapes[spec.outputs[0]]
    seed = rng.standard_normal(out_shape).astype(np.float32)
    target = rng.standard_normal(out_shape).astype(np.float32)
    before = pynn.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            g = spec.to_core([("mean_squared_error", False, 1.0, 1.0)])
            y = np.empty(out_shape, np.float32)
            g.predict([x], [y])
            dx = g.input_gradient([x], [seed])[0]
            grads = _param_grads(g, len(ps), [x], [target])
            results.append((y, dx, grads))
            # one row alone gives the bits it has inside the batch (forward and dx)
            one = np.empty((1,) + out_shape[1:], np.float32)
            g.predict([x[5:6]], [one])
            assert np.array_equal(one, y[5:6])
            assert np.array_equal(g.input_gradient([x[5:6]], [seed[5:6]])[0], dx[5:6])
    finally:
        pynn.set_num_threads(before)
    (y1, d1, g1), (y2, d2, g2) = results
    assert np.array_equal(y1, y2)
    assert np.array_equal(d1, d2)
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))


ISA_CHECK = """
import numpy as np, pynn
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import graph as ref_graph
rng = np.random.default_rng(0)
worst = 0.0
for shape, kernel, attrs in [
        ((9, 11, 5), (3, 3, 5, 7), {"padding": "same", "strides": [2, 1]}),
        ((30, 30, 3), (5, 5, 3, 40), {"dilation_rate": [2, 2], "activation": "relu"}),
        ((12, 12, 16), (3, 3, 8, 16), {"groups": 2}),
        # few input channels: the direct kernels (forward and dW) on AVX2 / AVX-512
        ((28, 28, 1), (3, 3, 1, 32), {"activation": "relu"}),
        ((9, 13, 2), (3, 2, 2, 21), {"padding": "same", "strides": [2, 1]})]:
    spec = GraphSpec()
    t = spec.add_input(shape)
    k = spec.add_param(ParamRef((rng.standard_normal(kernel) * 0.3).astype(np.float32), "k"))
    b = spec.add_param(ParamRef(rng.standard_normal(kernel[-1]).astype(np.float32), "b"))
    node = type("N", (), {"attrs": attrs})()
    x = rng.standard_normal((4,) + shape).astype(np.float32)
    want, cache_node = ref_graph.OPS["conv"][0](node, [x.astype(np.float64)],
        [spec.params[0].value.astype(np.float64), spec.params[1].value.astype(np.float64)], None)
    spec.outputs = spec.add_node("conv", [t], [want.shape[1:]], [k, b], attrs, "c")
    g = spec.to_core()
    got = np.empty(want.shape, np.float32)
    g.predict([x], [got])
    worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
    seed = rng.standard_normal(want.shape).astype(np.float32)
    dx = g.input_gradient([x], [seed])[0]
    _, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    dx_want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])[1][0]
    worst = max(worst, float(np.abs(dx - dx_want).max() / np.abs(dx_want).max()))
    loss = ("mean_squared_error", False, 1.0, 1.0)
    g = spec.to_core([loss])
    g.set_optimizer("sgd", {"learning_rate": 0.0})
    target = rng.standard_normal(want.shape).astype(np.float32)
    g.train_step([x], [target])
    _, _, dps, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [loss])
    for p, dp in enumerate(dps):
        worst = max(worst, float(np.abs(g.get_grad(p) - dp).max() / np.abs(dp).max()))
print(pynn.kernel_info()["arch"], worst)
"""


@pytest.mark.parametrize("arch", ["generic", "avx2", "avx512"])
def test_every_supported_kernel_runs_the_packed_convolution(arch):
    from pynn import _core

    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU has no {arch}")
    env = dict(os.environ, PYNN_ARCH=arch)
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(ISA_CHECK)], env=env,
                         capture_output=True, text=True, timeout=300, check=False,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr
    got_arch, worst = res.stdout.split()
    assert got_arch == arch
    assert float(worst) < 2e-5


def test_nan_wins_max_pooling_and_ties_go_to_the_first():
    x = np.array([[[[1.0], [3.0]], [[3.0], [np.nan]]],
                  [[[2.0], [2.0]], [[2.0], [2.0]]]], np.float32)       # (2, 2, 2, 1)
    model = pynn.Sequential([pynn.Input((2, 2, 1)), L.MaxPooling2D(2)])
    y = model.predict(x, verbose=0)
    assert np.isnan(y[0, 0, 0, 0]) and y[1, 0, 0, 0] == 2.0
    spec = Case("p", "max_pool", (2, 2, 1), {"pool_size": [2, 2]}).spec([])
    dx = spec.to_core().input_gradient([np.nan_to_num(x, nan=3.0)], [np.ones((2, 1, 1, 1),
                                                                              np.float32)])[0]
    # 3 ties 3 at taps 1 and 2: the first (row-major) wins; in the flat window tap 0 wins
    assert dx[0].ravel().tolist() == [0, 1, 0, 0] and dx[1].ravel().tolist() == [1, 0, 0, 0]
    twin = ref_graph.forward(spec, [x.astype(np.float64)])
    assert np.isnan(twin[0][0][0, 0, 0, 0])


# --- layers ---------------------------------------------------------------------------------
def test_conv2d_matches_keras_semantics_on_hand_computed_values():
    """Keras's Conv2D is a cross-correlation with kernel (kh, kw, in, out); "same" with an
    even input and stride 2 pads the odd zero after (TensorFlow's rule). Written out by hand
    for a 4x4 input, a 3x3 kernel, stride 2: output (2, 2), zeros only after the last
    row/column, so output (0, 0) covers rows 0-2 and columns 0-2."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    kernel = np.zeros((3, 3, 1, 2), np.float32)
    kernel[:, :, 0, 0] = [[1, 2, 0], [0, 1, 0], [0, 0, -1]]
    kernel[:, :, 0, 1] = 1.0
    bias = np.array([0.5, -1.0], np.float32)
    layer = L.Conv2D(2, 3, strides=2, padding="same")
    model = pynn.Sequential([pynn.Input((4, 4, 1)), layer])
    layer.set_weights([kernel, bias])
    y = model.predict(x, verbose=0)
    X = x[0, :, :, 0]
    P = np.zeros((5, 5), np.float32)
    P[:4, :4] = X                                   # 0 zeros before, 1 after
    want = np.zeros((2, 2, 2), np.float32)
    for oh in range(2):
        for ow in range(2):
            win = P[2 * oh:2 * oh + 3, 2 * ow:2 * ow + 3]
            want[oh, ow, 0] = (win * kernel[:, :, 0, 0]).sum() + 0.5
            want[oh, ow, 1] = win.sum() - 1.0
    assert want[0, 0, 0] == 0 * 1 + 1 * 2 + 5 * 1 - 10 + 0.5     # rows 0-2, columns 0-2
    np.testing.assert_array_equal(y[0], want)
    # the weights are Keras's: (kh, kw, in, out) and (out,), in that order
    assert [w.shape for w in layer.get_weights()] == [(3, 3, 1, 2), (2,)]
    assert [w.name for w in layer.weights] == ["kernel", "bias"]


def test_conv1d_causal_sees_only_the_past():
    layer = L.Conv1D(1, 3, padding="causal", dilation_rate=2, use_bias=False)
    model = pynn.Sequential([pynn.Input((8, 1)), layer])
    layer.set_weights([np.array([[[1.0]], [[10.0]], [[100.0]]], np.float32)])
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 8, 1)
    y = model.predict(x, verbose=0)[0, :, 0]
    # y[t] = x[t - 4] + 10 x[t - 2] + 100 x[t], zeros before the start
    xs = np.concatenate([np.zeros(4), x.ravel()])
    want = [xs[t] + 10 * xs[t + 2] + 100 * xs[t + 4] for t in range(8)]
    np.testing.assert_array_equal(y, want)


def test_average_pooling_same_divides_by_the_real_inputs():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    y = pynn.Sequential([pynn.Input((3, 3, 1)), L.AveragePooling2D(2, padding="same")]).predict(
        x, verbose=0)[0, :, :, 0]
    np.testing.assert_allclose(y, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])


def _layer_cases():
    return [
        (L.Conv2D(4, (3, 2), strides=(2, 1), padding="same", dilation_rate=1, groups=2,
                  activation="relu"), (7, 6, 4)),
        (L.Conv2D(3, 3, dilation_rate=2, use_bias=False), (8, 8, 2)),
        (L.Conv1D(5, 3, padding="causal", activation="tanh"), (9, 3)),
        (L.Conv1D(4, 2, strides=2), (9, 3)),
        (L.MaxPooling2D((3, 3), strides=2, padding="same"), (7, 7, 3)),
        (L.MaxPooling1D(3), (10, 2)),
        (L.AveragePooling2D(), (6, 5, 2)),
        (L.AveragePooling1D(2, strides=1, padding="same"), (5, 2)),
        (L.GlobalAveragePooling2D(), (4, 5, 3)),
        (L.GlobalAveragePooling1D(keepdims=True), (6, 2)),
        (L.GlobalMaxPooling2D(keepdims=True), (4, 3, 3)),
        (L.GlobalMaxPooling1D(), (7, 4)),
    ]


@pytest.mark.parametrize("index", range(12))
def test_layer_config_round_trip_and_channels_first(index):
    layer, shape = _layer_cases()[index]
    model = pynn.Sequential([pynn.Input(shape), layer])
    rng = _rng("layer", index)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    y = model.predict(x, verbose=0)
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
    twin = pynn.Sequential([pynn.Input(shape), clone])
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(twin.predict(x, verbose=0), y)
    # channels_first: the same layer on transposed samples gives transposed outputs
    cfg_first = dict(cfg, data_format="channels_first", name=cfg["name"] + "_cf")
    first = type(layer).from_config(cfg_first)
    moved = (len(shape),) + tuple(range(1, len(shape)))       # channels to the front
    shape_first = (shape[-1],) + shape[:-1]
    m2 = pynn.Sequential([pynn.Input(shape_first), first])
    first.set_weights(layer.get_weights())
    got = m2.predict(np.ascontiguousarray(np.transpose(x, (0,) + moved)), verbose=0)
    if y.ndim == 2:
        want = y
    else:
        want = np.transpose(y, (0, y.ndim - 1) + tuple(range(1, y.ndim - 1)))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_default_names_and_summary_shapes_follow_keras():
    import re

    for cls, base in [(L.Conv2D, "conv2d"), (L.Conv1D, "conv1d")]:
        assert re.fullmatch(base + r"(_\d+)?", cls(2, 2).name)
    for cls, base in [(L.MaxPooling2D, "max_pooling2d"),
                      (L.GlobalAveragePooling1D, "global_average_pooling1d")]:
        assert re.fullmatch(base + r"(_\d+)?", cls().name)
    # the keras.io "Simple MNIST convnet": its shapes and 34,826 parameters
    model = pynn.Sequential([pynn.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                             L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"),
                             L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5),
                             L.Dense(10, activation="softmax")])
    assert model.layers[0].output_shape == (None, 26, 26, 32)
    assert model.layers[3].output_shape == (None, 5, 5, 64)
    assert model.count_params() == 34826


def test_model_with_convolutions_saves_and_loads(tmp_path):
    pynn.utils.set_random_seed(3)
    inp = pynn.Input((12, 10, 2))
    h = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    a = L.MaxPooling2D(2)(h)
    b = L.AveragePooling2D(2)(h)
    h = L.Conv2D(4, 2, groups=2)(a + b)
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(h))
    model = pynn.Model(inp, out)
    x = _rng("save").standard_normal((5, 12, 10, 2)).astype(np.float32)
    y = model.predict(x, verbose=0)
    path = tmp_path / "convnet.safetensors"
    model.save(path)
    loaded = pynn.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), y)
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]


def test_small_convnet_learns_fashion_mnist():
    from pynn.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist.load_subset()
    x = (x[:600, :, :, None] / 255.0).astype(np.float32)
    y = y[:600]
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([pynn.Input((28, 28, 1)), L.Conv2D(8, (3, 3), activation="relu"),
                             L.MaxPooling2D(2), L.Flatten(),
                             L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, y, epochs=4, batch_size=32, verbose=0).history
    assert hist["loss"][-1] < 0.7 * hist["loss"][0], hist["loss"]
    xt = (xt[:300, :, :, None] / 255.0).astype(np.float32)
    _, acc = model.evaluate(xt, yt[:300], verbose=0)
    assert acc > 0.6, acc


def test_conv1d_model_trains_and_gradients_match_the_twin():
    """A whole model (Conv1D, pooling, global pooling, Dense) through the engine: its weight
    gradients against the twin's executor on the same graph."""
    rng = _rng("conv1d_model")
    pynn.utils.set_random_seed(1)
    model = pynn.Sequential([pynn.Input((16, 3)), L.Conv1D(6, 3, padding="causal",
                                                           activation="tanh"),
                             L.MaxPooling1D(2), L.Conv1D(5, 2, dilation_rate=2),
                             L.GlobalMaxPooling1D(), L.Dense(2)])
    model.compile(optimizer=pynn.optimizers.SGD(1e-3), loss="mse")
    x = rng.standard_normal((6, 16, 3)).astype(np.float32)
    t = rng.standard_normal((6, 2)).astype(np.float32)
    w0 = model.get_weights()
    first = model.train_on_batch(x, t)
    model.set_weights(w0)
    model.train_on_batch(x, t)          # its gradients are taken at w0
    model.set_weights(w0)
    assert model.train_on_batch(x, t) == first
    model.set_weights(w0)
    spec, graph = model._spec, model._graph
    loss = ("mean_squared_error", False, 1.0, 1.0)
    _, _, want, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [t], [loss])
    for pid, w in enumerate(want):
        got = graph.get_grad(pid)
        assert np.abs(got - w).max() <= 2e-4 * max(np.abs(w).max(), 1e-6), spec.params[pid].name


# --- bad arguments ----------------------------------------------------------------------------
@pytest.mark.parametrize("make, exc, words", [
    (lambda: L.Conv2D(0, 3), ValueError, "filters"),
    (lambda: L.Conv2D(4.5, 3), ValueError, "filters"),
    (lambda: L.Conv2D(4, (3,)), ValueError, "kernel_size"),
    (lambda: L.Conv2D(4, 0), ValueError, "kernel_size"),
    (lambda: L.Conv2D(4, 3, strides=0), ValueError, "strides"),
    (lambda: L.Conv2D(4, 3, padding="full"), ValueError, "padding"),
    (lambda: L.Conv2D(4, 3, padding="causal"), ValueError, "padding"),
    (lambda: L.Conv2D(4, 3, groups=3), ValueError, "groups"),
    (lambda: L.Conv2D(4, 3, groups=0), ValueError, "groups"),
    (lambda: L.Conv2D(4, 3, strides=2, dilation_rate=2), ValueError, "dilation_rate"),
    (lambda: L.Conv2D(4, 3, data_format="NCHW"), ValueError, "data_format"),
    (lambda: L.Conv2D(4, 3, activation="nope"), ValueError, "activation"),
    (lambda: L.Conv2D(4, 3, kernel_constraint="nope"), ValueError, "kernel_constraint"),
    (lambda: L.Conv1D(4, (2, 2)), ValueError, "kernel_size"),
    (lambda: L.Conv1D(4, 2, dilation_rate=-1), ValueError, "dilation_rate"),
    (lambda: L.MaxPooling2D(0), ValueError, "pool_size"),
    (lambda: L.MaxPooling2D(2, strides=(1, 2, 3)), ValueError, "strides"),
    (lambda: L.AveragePooling1D(2, padding="causal"), ValueError, "padding"),
    (lambda: L.GlobalAveragePooling2D(keepdims=1), TypeError, "keepdims"),
    (lambda: L.GlobalMaxPooling1D(data_format="channels_middle"), ValueError, "data_format"),
])
def test_bad_arguments_name_themselves(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


@pytest.mark.parametrize("layer, shape, words", [
    (lambda: L.Conv2D(4, 3), (28, 28), "expects inputs of shape"),
    (lambda: L.Conv1D(4, 3), (5, 5, 1), "expects inputs of shape"),
    (lambda: L.Conv2D(4, 5), (3, 8, 1), "padding='same'"),
    (lambda: L.Conv2D(4, 3, groups=2), (8, 8, 3), "divisible by groups"),
    (lambda: L.MaxPooling2D(3), (2, 5, 1), "pool_size"),
    (lambda: L.GlobalAveragePooling1D(), (5,), "expects inputs of shape"),
])
def test_bad_input_shapes_raise_naming_the_layer(layer, shape, words):
    lay = layer()
    with pytest.raises(ValueError, match=words):
        pynn.Sequential([pynn.Input(shape), lay])
    assert lay.name


@pytest.mark.parametrize("attrs, kernel, words", [
    ({"strides": [1]}, (3, 3, 2, 4), "strides must have 2"),
    ({"padding": "full"}, (3, 3, 2, 4), "padding must be"),
    ({"padding": "causal"}, (3, 3, 2, 4), "padding must be"),
    ({"groups": 3}, (3, 3, 2, 4), "groups"),
    ({}, (3, 3, 3, 4), "kernel shape"),
    ({}, (3, 2, 4), "kernel shape"),
    ({}, (9, 3, 2, 4), "spans 9 positions"),
    ({"dilation_rate": [0, 1]}, (3, 3, 2, 4), "dilation_rate must be positive"),
    ({"activation": "rrelu"}, (3, 3, 2, 4), "rrelu"),
    ({"bogus": 1}, (3, 3, 2, 4), "bogus"),
])
def test_engine_rejects_bad_conv_nodes_with_clear_messages(attrs, kernel, words):
    spec = GraphSpec()
    x = spec.add_input((6, 6, 2))
    k = spec.add_param(ParamRef(np.zeros(kernel, np.float32), "k"))
    b = spec.add_param(ParamRef(np.zeros(kernel[-1], np.float32), "b"))
    spec.outputs = spec.add_node("conv", [x], [(4, 4, kernel[-1])], [k, b], attrs, "bad_conv")
    with pytest.raises(ValueError, match=words) as info:
        spec.to_core()
    assert "bad_conv" in str(info.value)
