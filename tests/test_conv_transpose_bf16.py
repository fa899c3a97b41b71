"""The transposed convolution under mixed precision (compute_dtype "bfloat16", the
mixed_bfloat16 policy) against its NumPy twin (pynn.reference.conv_transpose with the
operands of pynn.reference.bf16), and Conv1DTranspose / Conv2DTranspose under the policy.

Every product sees x, the kernel and dz rounded to bf16 (round to nearest even, exactly
gemm::bf16_round_bits); the bias, the activation and db stay float32. The twin sums the same
rounded operands in float64.

Tolerances: a product of two bf16 values (8 significant bits each) is exact in float32, so
the engine differs from the twin only by float32 summation error, in whatever order its path
adds (the bf16 GEMM's K pairs or the emulated kernel's one by one, then col2im adding the taps
onto the bias; dW's chunks of positions added in turn). For a sum of k terms that is at most
(k + 4) u * sum |terms|, u = 2**-24, whatever the order (Higham ch. 3; + 4 covers the bias and
slack), where sum |terms| is the same transposed convolution of |x'|, |kernel'| (|dz'|)
computed by the twin. k per element: forward taps * C (+ the bias), dx taps * F, dW the
batch's input positions. The VDPBF16PS and AMX paths flush subnormal partial sums, moving each
of the k partial sums by < 2**-126: + (k + 1) 2**-126. relu is 1-Lipschitz and exact; tanh
and sigmoid are 1-Lipschitz too, plus their own float32 evaluation error, the tolerance of
test_activations (5e-6 relative + 5e-7, a few ulps measured at a third of it). A missing
rounding of any operand (2**-9 relative) or an indexing mistake breaks these bounds by orders
of magnitude, which the tests also check against the float32 results.
"""
from __future__ import annotations

import copy
import zlib

import numpy as np
import pytest
import test_conv_bf16
import test_conv_transpose
from test_conv import _param_grads, check_threads_and_batch
from test_conv_transpose import Case

import pynn
from pynn import _core
from pynn import layers as L
from pynn import mixed_precision as mp
from pynn.models.graph_spec import GraphSpec, ParamRef
from pynn.reference import bf16 as ref_bf16
from pynn.reference import conv_transpose as ref_ct
from pynn.reference import graph as ref_graph

U32 = 2.0 ** -24
TINY = 2.0 ** -126
MAE = ("mean_absolute_error", False, 1.0, 1.0)
SB = _core.sbgemm_info()
NR, MR = SB["NR"], SB["MR"]


@pytest.fixture(autouse=True)
def _restore_global_policy():
    saved = mp.global_policy()
    yield
    mp.set_global_policy(saved)


def bf16_case(name, shape, kernel, act="linear", **attrs):
    return Case(name, shape, kernel, act, compute_dtype="bfloat16", **attrs)


def rnd(x):
    return ref_bf16.round_bf16(x).astype(np.float64)


def _geometry(attrs):
    return {"strides": attrs["strides"], "padding": attrs["padding"],
            "output_padding": attrs["output_padding"] or None,
            "dilation_rate": attrs["dilation_rate"]}


# Edge sizes of the three products: forward (positions x C) x (C x taps*F), dx (positions x
# taps*F) x (taps*F x C), dW (taps*F x positions) x (positions x C). So: C past the emulated
# kernels' KC (512) for the forward's depth, taps*F past the bf16 kernel's KC (1024) for dx's,
# taps*F and C around NR and MR, positions past a chunk (2**18 / (taps*F) rows), and the
# geometry: strides larger than the kernel, output_padding, dilation, 'same' and 'valid',
# kernel 1, a 1x1 input, no bias, 1-D and 2-D.
CASES = [
    bf16_case("t2d_3x3_s2_same_relu", (5, 6, 3), (3, 3, 4, 3), "relu", strides=(2, 2),
              padding="same"),
    bf16_case("t2d_1x1", (4, 5, 6), (1, 1, 3, 6)),
    bf16_case("t2d_stride_gt_kernel_same", (4, 3, 5), (2, 2, 3, 5), strides=(3, 3),
              padding="same"),
    bf16_case("t2d_stride_gt_kernel_valid", (3, 4, 2), (1, 2, 3, 2), strides=(3, 4)),
    bf16_case("t2d_valid_output_padding", (4, 5, 3), (3, 3, 2, 3), strides=(3, 3),
              output_padding=(1, 2)),
    bf16_case("t2d_same_output_padding", (5, 4, 7), (4, 3, 3, 7), strides=(2, 2),
              padding="same", output_padding=(0, 1)),
    bf16_case("t2d_dilation_same", (5, 5, 4), (3, 3, 2, 4), padding="same",
              dilation_rate=(2, 2)),
    bf16_case("t2d_dilation21_valid_tanh", (4, 3, 2), (2, 3, 3, 2), "tanh",
              dilation_rate=(2, 1)),
    bf16_case("t2d_no_bias", (4, 4, 3), (2, 2, 3, 3), strides=(2, 2), use_bias=False),
    bf16_case("t2d_1x1_input", (1, 1, MR + 1), (3, 3, 2, MR + 1)),
    bf16_case("t2d_taps_f_nr", (3, 4, NR - 1), (1, 1, NR, NR - 1)),          # taps*F = NR
    bf16_case("t2d_taps_f_nr_plus_1", (4, 3, NR + 1), (1, 1, NR + 1, NR + 1)),
    bf16_case("t2d_c_past_kc", (2, 3, 520), (2, 2, 3, 520), strides=(2, 2)),  # forward K
    bf16_case("t2d_kg_past_kc", (3, 3, 5), (3, 3, 115, 5), padding="same"),   # dx K 1035
    bf16_case("t2d_chunks", (20, 20, 6), (3, 3, 30, 6), strides=(2, 2), padding="same"),
    bf16_case("t2d_wide_relu", (5, 5, 40), (3, 3, 20, 40), "relu", strides=(2, 2),
              padding="same"),
    bf16_case("t1d_s2_same", (7, 3), (3, 4, 3), strides=(2,), padding="same"),
    bf16_case("t1d_valid_output_padding", (5, 2), (4, 3, 2), strides=(3,),
              output_padding=(2,)),
    bf16_case("t1d_dilation3", (6, 5), (3, 2, 5), dilation_rate=(3,)),
    bf16_case("t1d_s4_k2_same_sigmoid", (3, 2), (2, 3, 2), "sigmoid", strides=(4,),
              padding="same"),
    bf16_case("t1d_kernel1", (5, 4), (1, 2, 4)),
]
LINEAR = [c for c in CASES if c.attrs["activation"] == "linear"]


def _setup(case, batch, seed):
    rng = np.random.default_rng(seed)
    ps = [p.astype(np.float32) for p in case.params(rng)]
    x = rng.standard_normal((batch,) + case.shape).astype(np.float32)
    return rng, ps, x, case.spec(ps)


def _seed(case, batch):
    return zlib.crc32(case.name.encode()) % 1000 + batch


def _mags(case, x, ps, dz):
    """The twin's transposed convolutions of absolute values: sum |terms| of every forward
    (bias included), dx and dW element (see the module docstring)."""
    geo = _geometry(case.attrs)
    ax, ak = np.abs(rnd(x)), np.abs(rnd(ps[0]))
    ab = np.abs(ps[1]).astype(np.float64) if len(ps) > 1 else None
    fwd = ref_ct.conv_transpose_forward(ax, ak, ab, **geo)
    dx, dk, _ = ref_ct.conv_transpose_backward(ax, ak, np.abs(rnd(dz)), **geo)
    return fwd, dx, dk


def _terms(case):
    """Products per element: forward taps*C, dx taps*F."""
    taps = int(np.prod(case.kernel[:-2]))
    return taps * case.kernel[-1], taps * case.kernel[-2]


def _bound(k, mag):
    return (k + 4) * U32 * mag + (k + 1) * TINY


def _act_error(case, y):
    """The float32 activation's own error (see the module docstring)."""
    if case.attrs["activation"] in ("linear", "relu"):
        return 0.0
    return 5e-6 * np.abs(y) + 5e-7


def _float32_forward(case, x, ps):
    """The float32 layer's output (no rounding), from the twin in float64."""
    z = ref_ct.conv_transpose_forward(x.astype(np.float64), ps[0].astype(np.float64),
                                      ps[1] if len(ps) > 1 else None, **_geometry(case.attrs))
    act = case.attrs["activation"]
    return {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
            "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "linear": lambda v: v}[act](z)


@pytest.mark.parametrize("batch", [0, 1, 3])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_and_input_gradient_within_the_bound_of_the_twin(case, batch):
    rng, ps, x, spec = _setup(case, batch, _seed(case, batch))
    g = spec.to_core()
    want, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    want = want[0]
    got = np.full(want.shape, np.nan, np.float32)
    g.predict([x], [got])
    seed = rng.standard_normal(want.shape).astype(np.float32)
    if batch == 0:
        assert got.shape == want.shape
        assert g.input_gradient([x], [seed])[0].shape == x.shape
        return
    k_fwd, k_dx = _terms(case)
    fmag, dxmag, _ = _mags(case, x, ps, seed)
    err = np.abs(got - want)
    tol = _bound(k_fwd, fmag) + _act_error(case, want)
    assert np.all(err <= tol), f"forward: worst error / bound {np.max(err / tol):.3g}"
    # and far from the float32 result (which differs by the rounding of every operand): a
    # path that forgets to round is caught even where the worst-case bound is loose (large k)
    assert np.mean(err) * 20 < np.mean(np.abs(got - _float32_forward(case, x, ps)))
    # dx with a linear activation: dz is the seed itself on both sides (through a nonlinear
    # one the two sides' dz differ by float32 rounding, which bf16 rounding may magnify)
    if case.attrs["activation"] != "linear":
        return
    dx = g.input_gradient([x], [seed])[0]
    _, dx_want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
    err = np.abs(dx - dx_want[0])
    tol = _bound(k_dx, dxmag)
    assert np.all(err <= tol), f"dx: worst error / bound {np.max(err / tol):.3g}"
    dx32, _, _ = ref_ct.conv_transpose_backward(
        x.astype(np.float64), ps[0].astype(np.float64), seed.astype(np.float64),
        **_geometry(case.attrs))
    assert np.mean(err) * 20 < np.mean(np.abs(dx - dx32))


def _mae_gradients(case, batch, seed):
    """The engine's and the twin's parameter gradients of a mean absolute error against
    targets 1..2 away from the output: dz = sign / count on both sides (so both round the
    same dz), and that dz."""
    rng, ps, x, spec = _setup(case, batch, seed)
    want_y, _ = ref_graph.forward(spec, [x.astype(np.float64)])
    off = rng.uniform(1, 2, want_y[0].shape) * rng.choice([-1, 1], want_y[0].shape)
    target = (want_y[0] + off).astype(np.float32)
    got = _param_grads(spec.to_core([MAE]), len(ps), [x], [target])
    _, _, want, _ = ref_graph.gradients(spec, [x.astype(np.float64)], [target], [MAE])
    return x, ps, got, want, np.sign(-off) / off.size


@pytest.mark.parametrize("case", LINEAR, ids=repr)
def test_kernel_and_bias_gradients_within_the_bound_of_the_twin(case):
    x, ps, got, want, dz = _mae_gradients(case, 3, _seed(case, 7))
    _, _, dkmag = _mags(case, x, ps, dz)
    m = x.size // case.shape[-1]  # input positions summed into each dW element
    err = np.abs(got[0] - want[0])
    tol = _bound(m, dkmag)
    assert np.all(err <= tol), f"dW: worst error / bound {np.max(err / tol):.3g}"
    _, dk32, _ = ref_ct.conv_transpose_backward(x.astype(np.float64), ps[0].astype(np.float64),
                                               dz, **_geometry(case.attrs))
    assert np.mean(err) * 20 < np.mean(np.abs(got[0] - dk32))
    if len(ps) > 1:  # db: sums of the unrounded dz, count = output positions
        count = dz.size // case.kernel[-2]
        tol_b = (count + 4) * U32 * np.abs(dz).reshape(-1, case.kernel[-2]).sum(axis=0)
        assert np.all(np.abs(got[1] - want[1]) <= tol_b)


def test_twin_is_the_float32_twin_on_rounded_operands():
    # The bf16 twin's forward and backward are the float32 twin's on bf16(x), bf16(kernel) and
    # bf16(dz), with db from the unrounded dz, whatever the activation.
    case = CASES[0]
    rng, ps, x, spec = _setup(case, 2, 3)
    x = x + np.float32(2 ** -12)  # values that do round
    y, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    dy = rng.standard_normal(y[0].shape)
    _, dxs = ref_graph.backward(spec, cache, [dy])
    geo = _geometry(case.attrs)
    z = ref_ct.conv_transpose_forward(rnd(x), rnd(ps[0]), ps[1].astype(np.float64), **geo)
    np.testing.assert_array_equal(y[0], np.maximum(z, 0))
    dz = dy * (z > 0)
    dx, _, _ = ref_ct.conv_transpose_backward(rnd(x), rnd(ps[0]), rnd(dz), **geo)
    np.testing.assert_array_equal(dxs[0], dx)


def _rounding_inputs():
    """Random high halves with the low halves that decide a rounding (0, just under, at and
    just over the tie, all ones), on even and odd bf16 values alike, and the special values
    (infinities, NaN, the largest float, which rounds to inf, subnormals, which flush)."""
    rng = np.random.default_rng(0)
    high = rng.integers(0, 2 ** 16, 800, dtype=np.uint64).astype(np.uint32) << 16
    low = np.array([0, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    f = np.finfo(np.float32)
    special = np.array([np.inf, -np.inf, np.nan, f.max, -f.max, f.tiny, 1e-40, -1e-40, 0.5],
                       np.float32)
    return np.concatenate([(high[:, None] | low).ravel().view(np.float32), special])


def test_rounding_is_nearest_even_bit_for_bit():
    # A 1x1 transposed convolution by 1.0 with no bias: its output is bf16(x) and its input
    # gradient bf16(dz), bit for bit (zeros aside: the output starts at +0, so a -0 or a
    # flushed negative subnormal comes out +0).
    v = _rounding_inputs().reshape(1, -1, 1)
    spec = GraphSpec()
    t = spec.add_input(v.shape[1:])
    k = spec.add_param(ParamRef(np.ones((1, 1, 1), np.float32), "k"))
    spec.outputs = spec.add_node("conv_transpose", [t], [v.shape[1:]], [k],
                                 {"use_bias": False, "compute_dtype": "bfloat16"}, "ct")
    g = spec.to_core()
    y = np.empty_like(v)
    g.predict([v], [y])
    want = ref_bf16.round_bf16(v)
    for got in (y, g.input_gradient([np.ones_like(v)], [v])[0]):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        same = np.isnan(want) | (got.view(np.uint32) == want.view(np.uint32))
        assert np.all(same | ((want == 0) & (got == 0)))


def test_engine_rejects_an_unknown_compute_dtype():
    spec = GraphSpec()
    x = spec.add_input((3, 3, 2))
    k = spec.add_param(ParamRef(np.zeros((2, 2, 4, 2), np.float32), "k"))
    spec.outputs = spec.add_node("conv_transpose", [x], [(4, 4, 4)], [k],
                                 {"use_bias": False, "compute_dtype": "float16"}, "bad_ct")
    with pytest.raises(ValueError, match="compute_dtype.*float16") as info:
        spec.to_core()
    assert "bad_ct" in str(info.value)


def as_bf16(case):
    """A copy of a float32 case of test_conv_transpose under compute_dtype "bfloat16"."""
    out = copy.copy(case)
    out.attrs = dict(case.attrs, compute_dtype="bfloat16")
    return out


# test_conv_transpose's large cases (the last one's samples span several chunks)
THREAD_CASES = [as_bf16(c) for c in test_conv_transpose.BIG]


@pytest.mark.parametrize("case", THREAD_CASES, ids=repr)
def test_results_are_bitwise_the_same_on_1_and_2_threads_and_alone(case):
    check_threads_and_batch(*_setup(case, 20, 11))


def arch_report():
    """What the PYNN_ARCH subprocess prints: the bf16 kernel, the float32 kernel set, and the
    worst error / bound over every other case, the depths past KC, the chunks, a big case."""
    cases = CASES[::2] + [CASES[13], CASES[14], THREAD_CASES[2]]
    worst = max(worst_ratio(c) for c in cases)
    print(_core.sbgemm_info()["kernel"], pynn.kernel_info()["arch"], worst)


ARCH_CHECK = "import test_conv_transpose_bf16 as t; t.arch_report()"


def worst_ratio(case):
    """Largest error / bound over the forward pass, and dx and dW of a linear case."""
    rng, ps, x, spec = _setup(case, 3, 5)
    g = spec.to_core()
    want, cache = ref_graph.forward(spec, [x.astype(np.float64)])
    got = np.empty(want[0].shape, np.float32)
    g.predict([x], [got])
    k_fwd, k_dx = _terms(case)
    seed = rng.standard_normal(got.shape).astype(np.float32)
    fmag, dxmag, _ = _mags(case, x, ps, seed)
    worst = np.max(np.abs(got - want[0]) / (_bound(k_fwd, fmag) + _act_error(case, want[0])))
    if case.attrs["activation"] == "linear":
        dx = g.input_gradient([x], [seed])[0]
        _, dx_want = ref_graph.backward(spec, cache, [seed.astype(np.float64)])
        worst = max(worst, np.max(np.abs(dx - dx_want[0]) / _bound(k_dx, dxmag)))
        x, ps, grads, wgrads, dz = _mae_gradients(case, 3, 6)
        _, _, dkmag = _mags(case, x, ps, dz)
        tol = _bound(x.size // case.shape[-1], dkmag)
        worst = max(worst, np.max(np.abs(grads[0] - wgrads[0]) / tol))
    return float(worst)


@pytest.mark.parametrize("arch", list(test_conv_bf16.KERNELS))
def test_every_supported_path_within_the_bound(arch, monkeypatch):
    # test_conv_bf16's subprocess under PYNN_ARCH (the kernel it must pick, the worst error
    # / bound it must print), running the cases of this file
    monkeypatch.setattr(test_conv_bf16, "ARCH_CHECK", ARCH_CHECK)
    test_conv_bf16.test_every_supported_path_within_the_bound(arch)


# --- the layers -----------------------------------------------------------------------------
LAYERS = [("Conv2DTranspose", (5, 6, 4), dict(filters=3, kernel_size=3, strides=2,
                                              padding="same")),
          ("Conv2DTranspose", (4, 4, 3), dict(filters=5, kernel_size=(2, 3), strides=(3, 2),
                                              output_padding=(1, 0), activation="relu")),
          ("Conv1DTranspose", (7, 3), dict(filters=4, kernel_size=3, strides=2,
                                           dilation_rate=1)),
          ("Conv1DTranspose", (6, 2), dict(filters=3, kernel_size=2, dilation_rate=2,
                                           padding="same"))]
LAYER_IDS = [f"{name}_{i}" for i, (name, _, _) in enumerate(LAYERS)]


@pytest.mark.parametrize("name,shape,kwargs", LAYERS, ids=LAYER_IDS)
def test_layers_pass_the_policy_to_their_op(name, shape, kwargs):
    cls = getattr(L, name)
    models = {}
    for how in ("global policy", "dtype argument", "float32"):  # the policy is read at init
        mp.set_global_policy("mixed_bfloat16" if how == "global policy" else "float32")
        kw = dict(kwargs, dtype="mixed_bfloat16") if how == "dtype argument" else kwargs
        models[how] = pynn.Sequential([pynn.Input(shape), cls(**kw)])
    mp.set_global_policy("float32")
    for how, m in models.items():
        attrs = [n.attrs.get("compute_dtype") for n in m._build_spec().nodes
                 if n.op == "conv_transpose"]
        assert attrs == ([None] if how == "float32" else ["bfloat16"]), how
    model, f32 = models["global policy"], models["float32"]
    rng = np.random.default_rng(1)
    weights = [(0.5 * rng.standard_normal(w.shape)).astype(np.float32)
               for w in model.get_weights()]
    for m in models.values():
        m.set_weights(weights)
    x = rng.standard_normal((4,) + shape).astype(np.float32)
    got = model.predict(x, verbose=0)
    assert np.array_equal(models["dtype argument"].predict(x, verbose=0), got)
    # the twin's bf16 numbers, not the float32 ones
    twin = ref_graph.predict(model._build_spec(), [x])[0]
    assert np.mean(np.abs(got - twin)) * 20 < np.mean(np.abs(got - f32.predict(x, verbose=0)))
    layer = model.layers[0]
    assert type(layer).from_config(layer.get_config()).dtype_policy.name == "mixed_bfloat16"
    # non-contiguous batches (every other sample; the channels read backwards) give the bits
    # of their contiguous copies
    big = rng.standard_normal((8,) + shape).astype(np.float32)
    for view in (big[::2], big[..., ::-1]):
        assert not view.flags.c_contiguous
        assert np.array_equal(model.predict(view, verbose=0),
                              model.predict(np.ascontiguousarray(view), verbose=0))
    # a batch of 1: a row's bits alone (batch 0 is the op's, above: predict refuses it)
    assert np.array_equal(model.predict(x[2:3], verbose=0), got[2:3])
    # channels_first: the same op on transposed samples, so transposed bits
    cfg = dict(model.layers[0].get_config(), data_format="channels_first", name="cf")
    first = type(model.layers[0]).from_config(cfg)
    moved = (len(shape),) + tuple(range(1, len(shape)))
    m2 = pynn.Sequential([pynn.Input((shape[-1],) + shape[:-1]), first])
    first.set_weights(weights)
    assert m2.layers[0].dtype_policy.name == "mixed_bfloat16"
    got_cf = m2.predict(np.ascontiguousarray(np.transpose(x, (0,) + moved)), verbose=0)
    back = (0, got.ndim - 1) + tuple(range(1, got.ndim - 1))
    assert np.array_equal(got_cf, np.transpose(got, back))


def test_predict_on_several_threads_at_once_gives_the_sequential_bits():
    # (the op's forward writes only to its scratch: predict may run concurrently, graph.h)
    from concurrent.futures import ThreadPoolExecutor

    pynn.utils.set_random_seed(1)
    model = decoder("mixed_bfloat16")
    x = np.random.default_rng(3).standard_normal((64, 6, 6, 8)).astype(np.float32)
    chunks = [x[i::4] for i in range(4)]
    want = [model.predict(c, verbose=0) for c in chunks]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda c: model.predict(c, verbose=0), chunks))
            assert all(np.array_equal(a, b) for a, b in zip(got, want))


def decoder(dtype=None):
    return pynn.Sequential([
        pynn.Input((6, 6, 8)),
        L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu", dtype=dtype),
        L.Conv2DTranspose(2, 3, padding="same", activation="sigmoid", dtype=dtype),
        L.Reshape((12, 24)),
        L.Conv1DTranspose(2, 3, strides=1, padding="same", dtype=dtype)])


def _trained(dtype, x, t, threads):
    """A decoder fitted 2 epochs from seed 0 on `threads` threads."""
    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(threads)
        pynn.utils.set_random_seed(0)
        model = decoder(dtype)
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, t, epochs=2, batch_size=16, verbose=0)
        return model
    finally:
        pynn.set_num_threads(before)


def test_decoder_training_is_bitwise_the_same_on_1_and_2_threads_and_matches_the_twin():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((48, 6, 6, 8)).astype(np.float32)
    t = rng.random((48, 12, 2)).astype(np.float32)
    model = _trained("mixed_bfloat16", x, t, 1)
    weights = [model.get_weights(), _trained("mixed_bfloat16", x, t, 2).get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    # and it did not train the float32 way
    assert not np.array_equal(_trained(None, x, t, 1).get_weights()[0], weights[0][0])
    # one step's gradients against the twin's: float32 summation error, and dz rounded to
    # bf16 from a float32 z (the twin's is float64) now and then falling on the other side
    # of a rounding boundary; measured < 1e-6 of each gradient's largest entry, while the
    # float32 layers' gradients are 5e-3 to 6e-2 of it away from the twin's
    model.set_weights(weights[0])
    model.compile(optimizer=pynn.optimizers.SGD(0.01), loss="mse")
    model.train_on_batch(x[:16], t[:16])  # (the gradients of the weights before the step)
    spec, graph = model._spec, model._graph
    model.set_weights(weights[0])
    _, _, want, _ = ref_graph.gradients(spec, [x[:16].astype(np.float64)], [t[:16]],
                                        [("mean_squared_error", False, 1.0, 1.0)])
    for pid, w in enumerate(want):
        got = graph.get_grad(pid)
        assert np.abs(got - w).max() <= 2e-4 * np.abs(w).max(), spec.params[pid].name


@pytest.mark.parametrize("name,shape,kwargs", LAYERS, ids=LAYER_IDS)
def test_keras_mixed_bfloat16_agrees_up_to_its_output_rounding(keras, name, shape, kwargs):
    # Keras's mixed_bfloat16 layer rounds x and the kernel to bf16 as pynn does, but also
    # computes in bf16 after the products: its sum is rounded to bf16, the bias too, and so
    # is the biased sum it returns (pynn keeps them float32, see pynn/mixed_precision.py).
    # So |keras - pynn| <= 2^-8 (|s| + |b|) + 2^-8 |y_keras| plus pynn's summation bound (s
    # the sum of products, each rounding at most 2^-9 relative, doubled for torch's own
    # order of float32 sums; relu is 1-Lipschitz). And Keras's numbers are closer to pynn's
    # bf16 layer than to pynn's float32 one.
    from keras_helpers import case_rng, to_numpy

    kw = dict(kwargs, dtype="mixed_bfloat16")
    rng = case_rng("keras bf16", name, shape)
    p = pynn.Sequential([pynn.Input(shape), getattr(L, name)(**kw)])
    weights = [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in p.get_weights()]
    W, b = weights
    p.set_weights(weights)
    k = keras.Sequential([keras.Input(shape), getattr(keras.layers, name)(**kw)])
    k.set_weights(weights)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    want = to_numpy(k(x).float()).astype(np.float64)  # Keras returns bf16 values
    got = p.predict(x, verbose=0).astype(np.float64)
    layer = p.layers[0]
    geo = {"strides": layer.strides, "padding": layer.padding,
           "output_padding": layer.output_padding, "dilation_rate": layer.dilation_rate}
    s = ref_ct.conv_transpose_forward(rnd(x), rnd(W), None, **geo)
    mag = ref_ct.conv_transpose_forward(np.abs(rnd(x)), np.abs(rnd(W)), None, **geo)
    kk = int(np.prod(W.shape[:-2])) * W.shape[-1]
    tol = 2.0 ** -8 * (np.abs(s) + np.abs(b) + np.abs(want)) + 2 * (kk + 4) * U32 * mag
    assert want.shape == got.shape
    assert np.all(np.abs(got - want) <= tol), np.max(np.abs(got - want) / tol)
    m32 = pynn.Sequential([pynn.Input(shape), getattr(L, name)(**kwargs)])
    m32.set_weights([W, b])
    exact = m32.predict(x, verbose=0)
    assert np.mean(np.abs(want - got)) < np.mean(np.abs(want - exact))
