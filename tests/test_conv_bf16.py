"""The conv op under mixed precision (compute_dtype "bfloat16", the mixed_bfloat16 policy)
against its NumPy twin (pynn.reference.conv with the operands of pynn.reference.bf16).

Every product sees x, the kernel and dz rounded to bf16 (round to nearest even, exactly
gemm::bf16_round_bits); the bias, the activation and db stay float32. The twin sums the same
rounded operands in float64.

Tolerances: a product of two bf16 values (8 significant bits each) is exact in float32, so
the engine differs from the twin only by float32 summation error, in whatever order its path
adds (the bf16 GEMM's K pairs, the emulated kernel's one by one, the direct kernels' taps,
chunks of positions added to dW, col2im adding taps): for a sum of k terms plus the bias that
is at most (k + 4) u * sum |terms|, u = 2**-24 (Higham ch. 3), whatever the order, where
sum |terms| is the same convolution of |x'|, |kernel'| (|dz'|) computed by the twin. The
VDPBF16PS and AMX paths flush subnormal partial sums, which moves each of the k partial sums
by < 2**-126: + (k + 1) 2**-126. relu is 1-Lipschitz. A missing rounding of any operand
(2**-9 relative) or an indexing mistake breaks these bounds by orders of magnitude, which the
tests also check against the float32 results.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from test_conv import _param_grads, check_threads_and_batch, conv

import pynn
from pynn import _core
from pynn import mixed_precision as mp
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import bf16 as ref_bf16
from pynn.reference import conv as ref_conv
from pynn.reference import graph as ref_graph

U32 = 2.0 ** -24
MAE = ("mean_absolute_error", False, 1.0, 1.0)
SB = _core.sbgemm_info()


@pytest.fixture(autouse=True)
def _restore_global_policy():
    saved = mp.global_policy()
    yield
    mp.set_global_policy(saved)


def bf16_case(case):
    case.attrs["compute_dtype"] = "bfloat16"
    return case


def _geometry(attrs):
    return {"strides": attrs.get("strides"), "padding": attrs.get("padding", "valid"),
            "dilation_rate": attrs.get("dilation_rate"), "groups": attrs.get("groups", 1)}


def rnd(x):
    return ref_bf16.round_bf16(x).astype(np.float64)


# Edge sizes around the bf16 kernel's blocks: filters per group around NR, K = taps * Cg
# around KC (and past it), rows of patches past a chunk (2**18 / K rows), 1-wide outputs,
# strides, dilation, every padding, groups and depthwise, 1-D and 2-D.
NR, MR, KC = SB["NR"], SB["MR"], SB["KC"]
CASES = [bf16_case(c) for c in [
    conv("c2_3x3_relu", (6, 7, 3), (3, 3, 3, 4), "relu"),
    conv("c2_1x1", (4, 5, 6), (1, 1, 6, 3)),
    conv("c2_wide_same", (5, 5, 40), (3, 3, 40, NR + 1), padding="same"),
    conv("c2_nr_filters", (4, 6, 9), (2, 2, 9, NR), "relu", strides=(2, 1)),
    conv("c2_nr_minus_1", (5, 4, 7), (3, 3, 7, NR - 1), padding="same", strides=(2, 2)),
    conv("c2_k_past_kc", (4, 4, 57), (3, 3, 57, 5), padding="same"),  # K = 513
    conv("c2_chunks", (10, 10, 128), (3, 3, 128, 3), padding="same"),  # 227 rows a chunk
    conv("c2_kernel_larger_same", (3, 2, 2), (5, 4, 2, 3), padding="same"),
    conv("c2_stride_gt_kernel", (9, 8, 5), (2, 2, 5, 3), strides=(3, 3)),
    conv("c2_dilation", (8, 7, 6), (3, 2, 6, 4), padding="same", dilation_rate=(2, 3)),
    conv("c2_groups", (5, 5, 12), (3, 3, 4, 6), "relu", groups=3),
    conv("c2_depthwise", (5, 4, 6), (2, 2, 1, 12), groups=6, padding="same"),
    conv("c2_no_bias", (5, 6, 8), (2, 3, 8, 4), use_bias=False),
    conv("c2_1x1_input", (1, 1, 7), (1, 1, 7, MR + 1)),
    conv("c2_direct_1ch", (12, 11, 1), (3, 3, 1, 33), "relu"),  # the direct kernels
    conv("c2_direct_3ch_same", (9, 10, 3), (5, 5, 3, 8), padding="same", strides=(2, 2)),
    conv("c1_valid", (9, 6), (3, 6, 4), "relu"),
    conv("c1_causal_dilation", (11, 5), (3, 5, 7), padding="causal", dilation_rate=(2,)),
    conv("c1_same_stride", (10, 8), (4, 8, 3), padding="same", strides=(3,)),
    conv("c1_groups", (7, 6), (2, 3, 4), groups=2),
    conv("c1_direct", (15, 2), (3, 2, 6), padding="same"),
]]


def _setup(case, batch, seed):
    rng = np.random.default_rng(seed)
    ps = [p.astype(np.float32) for p in case.params(rng)]
    x = rng.standard_normal((batch,) + case.shape).astype(np.float32)
    return rng, ps, x, case.spec(ps)


def _mags(case, x, ps, dz):
    """The twin's convolutions of absolute values: sum |terms| of every forward, dx and dW
    element (see the module docstring)."""
    geo = _geometry(case.attrs)
    ax, ak = np.abs(rnd(x)), np.abs(rnd(ps[0]))
    ab = np.abs(ps[1]).astype(np.float64) if len(ps) > 1 else None
    fwd = ref_conv.conv_forward(ax, ak, ab, **geo)
    dx, dk, _ = ref_conv.conv_backward(ax, ak, np.abs(rnd(dz)), **geo)
    return fwd, dx, dk


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_and_input_gradient_within_the_bound_of_the_twin(case, batch):
    rng, ps, x, spec = _setup(case, batch, zlib.crc32(case.name.encode()) % 1000 + batch)
    g = spec.to_core()
    want, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    want = want[0]
    got = np.full(want.shape, np.nan, np.float32)
    g.predict([x], [got])
    k = int(np.prod(case.kernel[:-1]))
    seed = rng.standard_normal(want.shape).astype(np.float32)
    fmag, dxmag, _ = _mags(case, x, ps, seed)
    tol = (k + 4) * U32 * fmag + (k + 1) * 2.0 ** -126
    err = np.abs(got - want)
    assert np.all(err <= tol), f"forward: worst error / bound {np.max(err / tol):.3g}"
    # and far from the float32 result (which differs by the rounding of every operand): a
    # path that forgets to round is caught even where the worst-case bound is loose (large k)
    f32 = ref_conv.conv_forward(x.astype(np.float64), ps[0].astype(np.float64),
                                ps[1] if len(ps) > 1 else None, **_geometry(case.attrs))
    if case.attrs["activation"] == "relu":
        f32 = np.maximum(f32, 0)
    assert np.mean(np.abs(got - want)) * 20 < np.mean(np.abs(got - f32))
    # dx with a linear activation: dz is the seed itself, on both sides
    if case.attrs["activation"] != "linear":
        return
    dx = g.input_gradient([x], [seed])[0]
    _, dx_want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
    taps_fg = int(np.prod(case.kernel[:-2])) * case.kernel[-1] // case.attrs["groups"]
    tol = (taps_fg + 4) * U32 * dxmag + (taps_fg + 1) * 2.0 ** -126
    err = np.abs(dx - dx_want[0])
    assert np.all(err <= tol), f"dx: worst error / bound {np.max(err / tol):.3g}"


@pytest.mark.parametrize("case", [c for c in CASES if c.attrs["activation"] == "linear"],
                         ids=repr)
def test_kernel_and_bias_gradients_within_the_bound_of_the_twin(case):
    # A mean absolute error against targets 1..2 away from the output: dz = sign / count on
    # both sides, so both round the same dz.
    rng, ps, x, spec = _setup(case, 3, zlib.crc32(case.name.encode()) % 1000 + 7)
    want_y, _ = ref_graph.forward(spec, [x.astype(np.float64)])
    off = rng.uniform(1, 2, want_y[0].shape) * rng.choice([-1, 1], want_y[0].shape)
    target = (want_y[0] + off).astype(np.float32)
    got = _param_grads(spec.to_core([MAE]), len(ps), [x], [target])
    _, _, want, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [MAE])
    dz = np.sign(-off) / off.size
    _, _, dkmag = _mags(case, x, ps, dz)
    m = dz.size // case.kernel[-1]  # positions summed into each dW element
    tol = (m + 4) * U32 * dkmag + (m + 1) * 2.0 ** -126
    err = np.abs(got[0] - want[0])
    assert np.all(err <= tol), f"dW: worst error / bound {np.max(err / tol):.3g}"
    if len(ps) > 1:
        tol_b = (m + 4) * U32 * np.abs(dz).reshape(-1, case.kernel[-1]).sum(axis=0)
        assert np.all(np.abs(got[1] - want[1]) <= tol_b)


def test_rounding_is_nearest_even_bit_for_bit():
    # A 1x1 convolution by 1.0 returns bf16(x), and its input gradient bf16(dz): the direct
    # path (1 channel) rounds its own copies, special values included.
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 32, 4000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    special = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5,
                        np.finfo(np.float32).max, np.inf, -np.inf, 1e-40, -1e-40,
                        np.finfo(np.float32).tiny, 0.5], np.float32)
    x = np.concatenate([bits, special])
    spec = GraphSpec()
    t = spec.add_input((x.size, 1))
    k = spec.add_param(ParamRef(np.ones((1, 1, 1), np.float32), "k"))
    spec.outputs = spec.add_node("conv", [t], [(x.size, 1)], [k],
                                 {"use_bias": False, "compute_dtype": "bfloat16"}, "c")
    g = spec.to_core()
    got = np.empty((1, x.size, 1), np.float32)
    g.predict([x.reshape(1, -1, 1)], [got])
    want = ref_bf16.round_bf16(x)
    keep = ~np.isnan(want) & (want != 0)  # (the direct kernel's sum starts at +0)
    assert np.array_equal(np.isnan(got.ravel()), np.isnan(want))
    assert np.array_equal(got.ravel()[keep].view(np.uint32), want[keep].view(np.uint32))
    dx = g.input_gradient([np.ones((1, x.size, 1), np.float32)], [x.reshape(1, -1, 1)])[0]
    assert np.array_equal(dx.ravel()[keep].view(np.uint32), want[keep].view(np.uint32))


THREAD_CASES = [bf16_case(c) for c in [
    conv("t_gemm", (16, 16, 24), (3, 3, 24, 40), "relu", padding="same"),
    conv("t_chunks_groups", (17, 15, 32), (3, 3, 16, 12), strides=(2, 1), groups=2),
    conv("t_direct", (28, 28, 1), (3, 3, 1, 32), "relu"),
    conv("t_conv1d", (64, 12), (5, 12, 24), "tanh", padding="causal", dilation_rate=(2,)),
    conv("t_depthwise", (14, 14, 8), (3, 3, 1, 16), groups=8, padding="same"),
]]


@pytest.mark.parametrize("case", THREAD_CASES, ids=repr)
def test_results_are_bitwise_the_same_on_1_and_2_threads_and_alone(case):
    rng, ps, x, spec = _setup(case, 20, 11)
    check_threads_and_batch(rng, ps, x, spec)


ARCH_CHECK = """
import numpy as np, pynn
from pynn import _core
import test_conv_bf16 as t
worst = 0.0
# every other case, and K past KC, patches past a chunk, the direct kernels with padding
for case in t.CASES[::2] + [t.CASES[5], t.CASES[6], t.CASES[15]]:
    worst = max(worst, t.worst_ratio(case))
print(_core.sbgemm_info()["kernel"], pynn.kernel_info()["arch"], worst)
"""


def worst_ratio(case):
    """Largest error / bound over forward, dx and dW of a linear-activation copy of `case`."""
    rng, ps, x, spec = _setup(case, 3, 5)
    g = spec.to_core([MAE])
    want, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    got = np.empty(want[0].shape, np.float32)
    g.predict([x], [got])
    k = int(np.prod(case.kernel[:-1]))
    off = rng.uniform(1, 2, got.shape) * rng.choice([-1, 1], got.shape)
    dz = np.sign(-off) / off.size
    fmag, _, dkmag = _mags(case, x, ps, dz)
    worst = np.max(np.abs(got - want[0]) / ((k + 4) * U32 * fmag + (k + 1) * 2.0 ** -126))
    if case.attrs["activation"] == "linear":
        target = (want[0] + off).astype(np.float32)
        grads = _param_grads(g, len(ps), [x], [target])
        _, _, wgrads, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [MAE])
        m = dz.size // case.kernel[-1]
        tol = (m + 4) * U32 * dkmag + (m + 1) * 2.0 ** -126
        worst = max(worst, np.max(np.abs(grads[0] - wgrads[0]) / tol))
    return float(worst)


# PYNN_ARCH -> the bf16 kernel (see test_sbgemm): avx512 and below run the exact emulation
# (the float32 micro-kernel on rounded panels) and their own direct kernels.
KERNELS = {"amx": "amx", "avx512_bf16": "avx512_bf16", "avx512": "emulated_avx512",
           "avx2": "emulated_avx2", "generic": "emulated_generic"}


@pytest.mark.parametrize("arch", list(KERNELS))
def test_every_supported_path_within_the_bound(arch):
    if not _core.cpu_supports(arch):
        pytest.skip(f"this CPU has no {arch}")  # run where it has (test_sbgemm checks the refusal)
    env = dict(os.environ, PYNN_ARCH=arch)
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(ARCH_CHECK)], env=env,
                         capture_output=True, text=True, timeout=600, check=False,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert res.returncode == 0, res.stderr
    kernel, _, worst = res.stdout.split()
    # (AMX without Linux's tile-data permission falls back to avx512_bf16, see sbgemm.h)
    assert kernel.startswith(KERNELS[arch]) or (arch == "amx" and
                                                kernel.startswith("avx512_bf16")), kernel
    assert float(worst) <= 1.0, f"{kernel}: error {worst} x the bound"


# --- the layers -----------------------------------------------------------------------------
LAYERS = [("Conv2D", (9, 9, 6), dict(filters=5, kernel_size=3, padding="same")),
          ("Conv1D", (12, 4), dict(filters=3, kernel_size=3, strides=2)),
          ("DepthwiseConv2D", (7, 7, 3), dict(kernel_size=2, depth_multiplier=2)),
          ("SeparableConv2D", (8, 8, 4), dict(filters=6, kernel_size=3)),
          ("DepthwiseConv1D", (10, 3), dict(kernel_size=3))]


@pytest.mark.parametrize("name,shape,kwargs", LAYERS, ids=[c[0] for c in LAYERS])
def test_layers_pass_the_policy_to_their_conv_ops(name, shape, kwargs):
    cls = getattr(pynn.layers, name)
    mp.set_global_policy("mixed_bfloat16")
    model = pynn.Sequential([pynn.Input(shape), cls(**kwargs)])
    mp.set_global_policy("float32")
    spec = model._build_spec()
    convs = [n for n in spec.nodes if n.op == "conv"]
    assert convs and all(n.attrs.get("compute_dtype") == "bfloat16" for n in convs)
    per_layer = pynn.Sequential([pynn.Input(shape), cls(dtype="mixed_bfloat16", **kwargs)])
    f32 = pynn.Sequential([pynn.Input(shape), cls(**kwargs)])
    assert all("compute_dtype" not in n.attrs for n in f32._build_spec().nodes)
    per_layer.set_weights(model.get_weights())
    f32.set_weights(model.get_weights())
    x = np.random.default_rng(1).standard_normal((4,) + shape).astype(np.float32)
    got = model.predict(x, verbose=0)
    assert np.array_equal(per_layer.predict(x, verbose=0), got)
    twin = ref_graph.predict(spec, [x])[0]
    exact = f32.predict(x, verbose=0)
    assert np.mean(np.abs(got - twin)) * 20 < np.mean(np.abs(got - exact))
    again = type(model.layers[0]).from_config(model.layers[0].get_config())
    assert again.dtype_policy.name == "mixed_bfloat16"
    # a non-contiguous batch (every other sample of a larger one, channels read backwards)
    big = np.random.default_rng(2).standard_normal((8,) + shape).astype(np.float32)
    view = big[::2, ..., ::-1]
    assert not view.flags.c_contiguous
    assert np.array_equal(model.predict(view, verbose=0),
                          model.predict(np.ascontiguousarray(view), verbose=0))


def convnet(dtype=None):
    L = pynn.layers
    return pynn.Sequential([pynn.Input((28, 28, 1)),
                            L.Conv2D(8, 3, activation="relu", dtype=dtype), L.MaxPooling2D(2),
                            L.Conv2D(16, 3, activation="relu", dtype=dtype), L.MaxPooling2D(2),
                            L.Flatten(), L.Dense(10, activation="softmax", dtype=dtype)])


def test_convnet_training_is_bitwise_the_same_on_1_and_2_threads():
    rng = np.random.default_rng(2)
    x = rng.random((300, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    before = pynn.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            pynn.utils.set_random_seed(0)
            model = convnet("mixed_bfloat16")
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            model.fit(x, y, epochs=2, batch_size=64, verbose=0)
            weights.append(model.get_weights())
    finally:
        pynn.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    # and it did not train the float32 way
    pynn.utils.set_random_seed(0)
    f32 = convnet()
    f32.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    f32.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert not np.array_equal(f32.get_weights()[0], weights[0][0])


@pytest.mark.parametrize("name,shape,kwargs", LAYERS[:2], ids=[c[0] for c in LAYERS[:2]])
def test_keras_mixed_bfloat16_agrees_up_to_its_output_rounding(keras, name, shape, kwargs):
    # Keras's mixed_bfloat16 layer rounds x and the kernel to bf16 as pynn does, but also
    # computes in bf16 after the products: its convolution's sum is rounded to bf16, the bias
    # too, and so is the biased sum it returns (pynn keeps them float32, see
    # pynn/mixed_precision.py). So |keras - pynn| <= 2^-8 (|s| + |b|) + 2^-8 |y_keras| plus
    # pynn's summation bound (s the sum of products, each rounding at most 2^-9 relative,
    # doubled for torch's own order of float32 sums). And Keras's numbers are closer to
    # pynn's bf16 layer than to pynn's float32 one.
    from keras_helpers import to_numpy

    kw = dict(kwargs, dtype="mixed_bfloat16")
    k = keras.Sequential([keras.Input(shape), getattr(keras.layers, name)(**kw)])
    p = pynn.Sequential([pynn.Input(shape), getattr(pynn.layers, name)(**kw)])
    rng = np.random.default_rng(5)
    W, b = [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in p.get_weights()]
    k.set_weights([W, b])
    p.set_weights([W, b])
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    want = to_numpy(k(x).float()).astype(np.float64)  # Keras returns bf16 values
    got = p.predict(x, verbose=0).astype(np.float64)
    geo = {"strides": p.layers[0].strides, "padding": p.layers[0].padding}
    s = ref_conv.conv_forward(rnd(x), rnd(W), None, **geo)
    mag = ref_conv.conv_forward(np.abs(rnd(x)), np.abs(rnd(W)), None, **geo)
    kk = int(np.prod(W.shape[:-1]))
    tol = 2.0 ** -8 * (np.abs(s) + np.abs(b) + np.abs(want)) + 2 * (kk + 4) * U32 * mag
    assert np.all(np.abs(got - want) <= tol)
    f32 = getattr(pynn.layers, name)(**kwargs)
    m32 = pynn.Sequential([pynn.Input(shape), f32])
    m32.set_weights([W, b])
    exact = m32.predict(x, verbose=0)
    assert np.mean(np.abs(want - got)) < np.mean(np.abs(want - exact))
