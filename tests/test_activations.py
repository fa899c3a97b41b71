"""The compiled activation kernels against the NumPy twin (itself checked against finite
differences in test_ref_activations.py), in float32 on random shapes, edge sizes and extreme
inputs, on every instruction-set path the CPU supports."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from activation_cases import OTHER_PARAMS

from pynn import _core
from pynn.reference import activations as ref

NAMES = list(_core.activation_names())
SIZES = [0, 1, 15, 16, 17, 33, 1000]
CASES = [(n, {}) for n in NAMES] + sorted(OTHER_PARAMS.items())
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p in CASES]
EXTREME = np.array([-1e4, -1e3, -100, -88, -20, -1e-30, -1e-40, -0.0, 0.0, 1e-40, 1e-30, 20, 88,
                    100, 1e3, 1e4], np.float32)


def daz(z):
    """z as the core reads it: subnormal inputs are 0 to it (denormals-are-zero,
    csrc/common/fpenv.h), so relu'(1e-40) is 0 there, not 1; the twins get the same input."""
    return np.where(np.abs(z) < np.finfo(np.float32).tiny, np.float32(0), z)

# Tolerances: each kernel is a handful of float32 operations (exp/erfc/tanh from libm or
# our vector polynomials, accurate to a few ulps of 6e-8), so results agree with the float64
# twin to a few 1e-7 relative; the absolute floor covers values near 0 produced by
# cancellation (tanh_shrink, 1 - y^2 from a rounded y) whose error is an ulp of the
# operands, not of the result. Measured worst cases on a fine grid stay below 1/3 of these.
RTOL, ATOL = 5e-6, 5e-7


def core_params(name, params):
    """The twin's parameters in the core's order (checks the defaults agree)."""
    return ref.get(name, **params).defaults()


def forward(name, z, params=()):
    return _core.activation_forward(z.copy(), name, list(params))


def backward(name, z, dy, params=()):
    y = forward(name, z, params)
    return _core.activation_backward(z, y, dy, np.empty_like(dy), name, list(params))


def test_core_names_match_the_twin():
    expected = {"linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "softplus",
                "softsign", "gelu", "silu", "swish", "mish", "hard_sigmoid", "hard_silu",
                "hard_swish", "hard_tanh", "tanh_shrink", "soft_shrink", "hard_shrink",
                "exponential", "binary_step", "arctan", "rrelu"}
    assert set(NAMES) == expected
    # softmax and prelu are not element-wise with fixed parameters: they have own kernels
    assert set(ref.names()) == expected | {"softmax", "prelu"}


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_keras_and_the_twin(name):
    np.testing.assert_allclose(_core.activation_defaults(name), ref.get(name).defaults(),
                               rtol=1e-7)


def _twin(name, params, z32):
    # the core sees float32 parameters: compare with the twin at those same values (this
    # matters exactly at kinks such as |z| == threshold)
    act = ref.get(name, **{k: type(v)(np.float32(v)) for k, v in params.items()})
    z64 = z32.astype(np.float64)
    return act.fn(z64), act.grad(z64)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_forward_backward_match_twin(name, params):
    rng = np.random.default_rng(7)
    p = core_params(name, params)
    shapes = [(s,) for s in SIZES] + [tuple(rng.integers(1, 9, rng.integers(2, 4)))]
    for shape in shapes:
        z = (rng.standard_normal(shape) * 4).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        f64, g64 = _twin(name, params, z)
        y = forward(name, z, p)
        assert y.shape == z.shape and y.dtype == np.float32
        np.testing.assert_allclose(y, f64, rtol=RTOL, atol=ATOL, err_msg=f"{name} fwd {shape}")
        dz = backward(name, z, dy, p)
        np.testing.assert_allclose(dz, dy * g64, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{name} bwd {shape}")


@pytest.mark.parametrize("name", NAMES)
def test_backward_in_place(name):
    rng = np.random.default_rng(5)
    p = core_params(name, {})
    z = (rng.standard_normal(37) * 3).astype(np.float32)
    dy = rng.standard_normal(37).astype(np.float32)
    expected = backward(name, z, dy.copy(), p)
    y = forward(name, z, p)
    out = _core.activation_backward(z, y, dy, dy, name, p)  # dz aliases dy
    assert out is dy
    np.testing.assert_array_equal(dy, expected)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_extreme_inputs(name, params):
    p = core_params(name, params)
    z = EXTREME.copy()
    y = forward(name, z, p)
    dz = backward(name, z, np.ones_like(z), p)
    f64, g64 = _twin(name, params, daz(z))
    if name == "exponential":
        finite = z <= 88  # e^z overflows float32 beyond ~88.72: inf there, never NaN
        assert np.isposinf(y[~finite]).all()
    else:
        finite = np.ones(z.shape, bool)
    assert not np.isnan(y).any() and not np.isnan(dz).any()
    assert np.isfinite(y[finite]).all() and np.isfinite(dz[finite]).all()
    np.testing.assert_allclose(y[finite], f64[finite].astype(np.float32), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dz[finite], g64[finite].astype(np.float32), rtol=RTOL, atol=ATOL)


def test_exponential_zero_gradient_stays_zero_where_output_is_inf():
    z = np.array([1e4, 0.0], np.float32)
    dz = backward("exponential", z, np.zeros(2, np.float32))
    np.testing.assert_array_equal(dz, [0, 0])


def test_bad_arguments_raise_clear_errors():
    z = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        forward("nope", z)
    with pytest.raises(ValueError, match="takes 1 parameters, got 0"):
        forward("elu", z)
    with pytest.raises(ValueError, match="beta > 0"):
        forward("softplus", z, [0.0])
    with pytest.raises(ValueError, match="min_val <= max_val"):
        forward("hard_tanh", z, [1.0, -1.0])
    with pytest.raises(ValueError, match="lower <= upper"):
        forward("rrelu", z, [0.5, 0.1])
    with pytest.raises(TypeError, match="x: expected a float32 array"):
        _core.activation_forward(np.zeros(4), "relu", [])
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        _core.activation_forward(np.zeros((4, 4), np.float32).T, "relu", [])
    with pytest.raises(ValueError, match="same size"):
        _core.activation_backward(z, z, z, np.zeros(3, np.float32), "relu", [])
    with pytest.raises(ValueError, match="unknown activation"):
        _core.activation_defaults("nope")


# ---- softmax -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (1, 1), (4, 15), (5, 16), (2, 17), (7, 33),
                                   (300, 200)])
def test_softmax_matches_twin(shape):
    rng = np.random.default_rng(11)
    z = (rng.standard_normal(shape) * 5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    sm = ref.get("softmax")
    y = _core.softmax_forward(z.copy())
    # a row sum of c terms: rtol ~1e-6 * sqrt(c) on top of exp's few ulps
    np.testing.assert_allclose(y, sm.fn(z.astype(np.float64)), rtol=1e-5, atol=1e-7)
    dz = _core.softmax_backward(y, dy, np.empty_like(dy))
    np.testing.assert_allclose(dz, sm.vjp(z.astype(np.float64), dy), rtol=1e-4, atol=1e-6)
    dz2 = dy.copy()
    _core.softmax_backward(y, dz2, dz2)  # in place
    np.testing.assert_array_equal(dz2, dz)


def test_softmax_extreme_rows():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e-40, 0.0, -1e-40]], np.float32)
    y = _core.softmax_forward(z.copy())
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref.get("softmax").fn(z.astype(np.float64)), rtol=1e-6,
                               atol=1e-30)


# ---- PReLU and RReLU ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (5, 15), (3, 16), (9, 17), (40, 33)])
def test_prelu_matches_twin(shape):
    rng = np.random.default_rng(12)
    z = rng.standard_normal(shape).astype(np.float32)
    alpha = rng.uniform(0, 0.5, shape[1]).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    act = ref.get("prelu", alpha=alpha.astype(np.float64))
    z64 = z.astype(np.float64)
    np.testing.assert_allclose(_core.prelu_forward(z, alpha), act.fn(z64), rtol=1e-6, atol=1e-7)
    dx, dalpha = _core.prelu_backward(z, alpha, dy)
    np.testing.assert_allclose(dx, dy * act.grad(z64), rtol=1e-6, atol=1e-7)
    # dalpha is a column sum of n rows, accumulated in double
    np.testing.assert_allclose(dalpha, act.grad_alpha(z64, dy), rtol=1e-5, atol=1e-6)


def test_prelu_shape_errors():
    with pytest.raises(ValueError, match="alpha: expected 3 entries"):
        _core.prelu_forward(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="dy: expected the shape of x"):
        _core.prelu_backward(np.zeros((2, 3), np.float32), np.zeros(3, np.float32),
                             np.zeros((3, 3), np.float32))


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 33, 20000])
def test_rrelu_training_matches_twin_given_its_slopes(size):
    rng = np.random.default_rng(13)
    z = rng.standard_normal(size).astype(np.float32)
    dy = rng.standard_normal(size).astype(np.float32)
    lower, upper = 0.125, 1 / 3
    y, slope = _core.rrelu_forward(z, lower, upper, training=True, seed=42)
    neg = z < 0
    assert np.all(slope[~neg] == 1)
    assert np.all((slope[neg] >= np.float32(lower)) & (slope[neg] <= np.float32(upper)))
    act = ref.get("rrelu", lower=lower, upper=upper)
    np.testing.assert_allclose(y, act.fn_train(z.astype(np.float64), slope), rtol=1e-6)
    dx = _core.rrelu_backward(slope, dy)
    np.testing.assert_allclose(dx, dy * act.grad_train(z, slope), rtol=1e-6)
    if size == 20000:
        # uniform slopes: mean (l+u)/2, sd (u-l)/sqrt(12)/sqrt(~10000) ~ 6e-4; 6 sigma bound
        assert abs(slope[neg].mean() - (lower + upper) / 2) < 4e-3
        assert slope[neg].std() == pytest.approx((upper - lower) / np.sqrt(12), rel=0.05)


def test_rrelu_is_seeded_and_inference_is_leaky():
    z = -np.ones(64, np.float32)
    a = _core.rrelu_forward(z, seed=1)[1]
    np.testing.assert_array_equal(a, _core.rrelu_forward(z, seed=1)[1])
    assert not np.array_equal(a, _core.rrelu_forward(z, seed=2)[1])
    assert not np.array_equal(a, _core.rrelu_forward(z, seed=1, stream=1)[1])
    # an offset continues the same sequence: element i of offset 10 is element 10 + i
    np.testing.assert_array_equal(_core.rrelu_forward(z[:54], seed=1, offset=10)[1], a[10:])
    y, slope = _core.rrelu_forward(z, training=False)
    np.testing.assert_allclose(y, -(1 / 8 + 1 / 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(y, forward("rrelu", z, [1 / 8, 1 / 3]), rtol=1e-7)
    with pytest.raises(ValueError, match="lower <= upper"):
        _core.rrelu_forward(z, 0.5, 0.1)


# ---- every instruction-set path ----------------------------------------------------------

ARCHES = [a for a in ("avx512", "avx2", "generic") if _core.cpu_supports(a)]

_SCRIPT = """
import json, sys
import numpy as np
from pynn import _core
z = np.load(sys.argv[1])
out = {"arch": np.array(_core.arch())}
for i, (name, p) in enumerate(json.loads(sys.argv[2])):
    y = _core.activation_forward(z.copy(), name, p)
    out[f"y{i}"] = y
    out[f"dz{i}"] = _core.activation_backward(z, y, np.ones_like(z), np.empty_like(z), name, p)
np.savez(sys.argv[3], **out)
"""


@pytest.mark.parametrize("arch", ARCHES)
def test_every_isa_path_matches_twin(arch, tmp_path):
    # a fine grid over the whole interesting range (exp's reduction boundaries, the switch
    # points of the vector polynomials near 0, the overflow threshold near 88.7) + extremes
    z = np.concatenate([EXTREME, np.linspace(-95, 95, 7601, dtype=np.float32),
                        np.linspace(-1, 1, 801, dtype=np.float32)])
    np.save(tmp_path / "z.npy", z)
    cases = [[name, core_params(name, params)] for name, params in CASES]
    env = dict(os.environ, PYNN_ARCH=arch)
    res = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "z.npy"), json.dumps(cases),
                          str(tmp_path / "out.npz")],
                         capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert res.returncode == 0, res.stderr
    with np.load(tmp_path / "out.npz") as out:
        assert str(out["arch"]) == arch
        for i, (name, params) in enumerate(CASES):
            y, dz = out[f"y{i}"], out[f"dz{i}"]
            f64, g64 = _twin(name, params, daz(z))
            ok = (np.abs(f64) < 3e38) & (np.abs(g64) < 3e38)  # where float32 holds the result
            assert not np.isnan(y).any() and not np.isnan(dz).any(), name
            np.testing.assert_allclose(y[ok], f64[ok], rtol=RTOL, atol=ATOL, err_msg=name)
            np.testing.assert_allclose(dz[ok], g64[ok], rtol=RTOL, atol=ATOL, err_msg=name)


_RELU_SCRIPT = """
import sys
import numpy as np
from pynn import _core
z, dy = np.load(sys.argv[1]), np.load(sys.argv[2])
ys, dzs = [], []
for n in range(len(z) + 1):   # every tail length of the vector loops
    ys.append(_core.activation_forward(z[:n].copy(), "relu", []))
    dzs.append(_core.activation_backward(z[:n], ys[-1], dy[:n], np.empty(n, np.float32),
                                         "relu", []))
np.savez(sys.argv[3], arch=np.array(_core.arch()), y=np.concatenate(ys), dz=np.concatenate(dzs))
"""


@pytest.mark.parametrize("arch", ARCHES)
def test_relu_is_bitwise_the_scalar_rule_on_every_isa(arch, tmp_path):
    # relu is exact: y = z where z > 0, +0 elsewhere (-0 included), NaN passed through;
    # dz = dy where z > 0, an exact +0 elsewhere (an infinite or NaN dy included). Compared as
    # bit patterns, for every length up to 40 (the 16- and 8-wide loops and their tails).
    rng = np.random.default_rng(4)
    z = rng.standard_normal(40).astype(np.float32)
    z[[1, 5, 17, 33]] = [-0.0, 0.0, np.nan, np.inf]
    z[[8, 20]] = [-np.inf, 1.5e-38]   # (the smallest normals: the core reads subnormals as 0)
    dy = rng.standard_normal(40).astype(np.float32)
    dy[[2, 3, 9, 33]] = [np.inf, np.nan, -np.inf, -0.0]
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "dy.npy", dy)
    env = dict(os.environ, PYNN_ARCH=arch)
    res = subprocess.run([sys.executable, "-c", _RELU_SCRIPT, str(tmp_path / "z.npy"),
                          str(tmp_path / "dy.npy"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, env=env, cwd="/", timeout=120)
    assert res.returncode == 0, res.stderr
    want_y = [np.where(np.isnan(z[:n]) | (z[:n] > 0), z[:n], np.float32(0)) for n in range(41)]
    want_dz = [np.where(z[:n] > 0, dy[:n], np.float32(0)) for n in range(41)]
    with np.load(tmp_path / "out.npz") as out:
        assert str(out["arch"]) == arch
        np.testing.assert_array_equal(out["y"].view(np.uint32),
                                      np.concatenate(want_y).astype(np.float32).view(np.uint32))
        np.testing.assert_array_equal(out["dz"].view(np.uint32),
                                      np.concatenate(want_dz).astype(np.float32).view(np.uint32))


# ---- as a GEMM epilogue stage --------------------------------------------------------------

@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_gemm_epilogue_applies_each_activation(name, params):
    # the epilogue calls the same kernels on row segments of each finished tile: odd sizes
    # make tiles with ragged edges
    rng = np.random.default_rng(15)
    m, k, n = 37, 19, 45
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    c = np.empty((m, n), np.float32)
    z = np.empty((m, n), np.float32)
    _core.gemm(a, b, c, 1.0, 0.0, bias, name, core_params(name, params), preact=z)
    # z is a k-term float32 dot product plus bias: rel. error ~1e-6 sqrt(k) of the terms
    np.testing.assert_allclose(z, a.astype(np.float64) @ b + bias, rtol=1e-4, atol=1e-5)
    f64, _ = _twin(name, params, z)  # the activation of exactly what the epilogue saw
    np.testing.assert_allclose(c, f64, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["relu", "hard_tanh", "soft_shrink", "hard_shrink"])
def test_flat_regions_block_inf_gradients(name):
    # derivative exactly 0 on the flat part: an inf upstream gradient gives 0 there, not NaN
    z = np.array([-0.1, 0.0, 2.0, 0.3], np.float32)
    dz = backward(name, z, np.full(4, np.inf, np.float32), core_params(name, {}))
    g = ref.get(name).grad(z.astype(np.float64))
    np.testing.assert_array_equal(dz[g == 0], 0)
    assert np.isposinf(dz[g == 1]).all()


NAN_PROPAGATING = ["sigmoid", "tanh", "elu", "selu", "softplus", "softsign", "gelu", "silu",
                   "swish", "mish", "tanh_shrink", "exponential", "arctan"]


@pytest.mark.parametrize("approximate", [0.0, 1.0])
@pytest.mark.parametrize("name", NAN_PROPAGATING)
def test_nan_in_nan_out(name, approximate):
    # the smooth functions keep a NaN visible (in the vector kernels too, whose clamps must not
    # swallow it); positions 0..16 cover a full AVX-512 vector and a masked tail
    p = [approximate] if name == "gelu" else core_params(name, {})
    z = np.linspace(-3, 3, 35).astype(np.float32)
    z[[0, 7, 16, 34]] = np.nan
    y = forward(name, z, p)
    dz = _core.activation_backward(z, y, np.ones_like(z), np.empty_like(z), name, p)
    nan = np.isnan(z)
    assert np.isnan(y[nan]).all() and np.isnan(dz[nan]).all()
    assert not np.isnan(y[~nan]).any() and not np.isnan(dz[~nan]).any()
