"""The NumPy twin of the activations, checked before it is trusted to judge the C++ core:
derivatives against central finite differences in float64, values against textbook formulas
written independently here, and stability at extreme inputs."""
import math

import numpy as np
import pytest
from activation_cases import OTHER_PARAMS

from pynn.reference import activations as ref

ELEMENTWISE = [n for n in ref.names() if n not in ("softmax", "prelu")]

# Every kink of every function above (default and OTHER_PARAMS): finite differences are not
# taken across these.
KINKS = np.array([0.0, -3, 3, -0.5, 0.5, -1, 1, -0.4, 2.0, -1.2, 1.2])

CASES = [(n, {}) for n in ELEMENTWISE] + sorted(OTHER_PARAMS.items())


def _smooth_points(rng, size=400, lo=-6.0, hi=6.0):
    z = rng.uniform(lo, hi, size)
    return z[np.min(np.abs(z[:, None] - KINKS[None, :]), axis=1) > 1e-3]


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_grad_matches_finite_differences(name, params):
    act = ref.get(name, **params)
    z = _smooth_points(np.random.default_rng(1))
    h = 1e-6
    fd = (act.fn(z + h) - act.fn(z - h)) / (2 * h)
    # central differences in float64: truncation ~h^2 |f'''|, rounding ~1e-16 |f| / h
    np.testing.assert_allclose(act.grad(z), fd, rtol=1e-6, atol=1e-7)


def _erf(x):
    return np.vectorize(math.erf)(x)


# Textbook definitions (naive forms, valid for the moderate inputs used here).
NAIVE = {
    "linear": lambda z: z,
    "relu": lambda z: np.where(z > 0, z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": lambda z: (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z)),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1),
    "selu": lambda z: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * (np.exp(z) - 1)),
    "softplus": lambda z: np.log(1 + np.exp(z)),
    "softsign": lambda z: z / (1 + np.abs(z)),
    "gelu": lambda z: 0.5 * z * (1 + _erf(z / np.sqrt(2))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "swish": lambda z: z / (1 + np.exp(-z)),
    "mish": lambda z: z * np.tanh(np.log(1 + np.exp(z))),
    "hard_sigmoid": lambda z: np.minimum(np.maximum(z + 3, 0), 6) / 6,
    "hard_silu": lambda z: z * np.minimum(np.maximum(z + 3, 0), 6) / 6,
    "hard_swish": lambda z: z * np.minimum(np.maximum(z + 3, 0), 6) / 6,
    "hard_tanh": lambda z: np.minimum(np.maximum(z, -1), 1),
    "tanh_shrink": lambda z: z - np.tanh(z),
    "soft_shrink": lambda z: np.sign(z) * np.maximum(np.abs(z) - 0.5, 0),
    "hard_shrink": lambda z: z * (np.abs(z) > 0.5),
    "exponential": np.exp,
    "binary_step": lambda z: (z >= 0) * 1.0,
    "arctan": np.arctan,
    "rrelu": lambda z: np.where(z > 0, z, (1 / 8 + 1 / 3) / 2 * z),
}


def test_every_elementwise_name_has_a_textbook_check():
    assert sorted(NAIVE) == sorted(ELEMENTWISE)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_values_match_textbook_definitions(name):
    z = np.concatenate([np.linspace(-8, 8, 161), [-3.0, 3.0, 0.5, -0.5, 0.0]])
    np.testing.assert_allclose(ref.get(name).fn(z), NAIVE[name](z), rtol=1e-12, atol=1e-14)


def test_gelu_tanh_form_and_softplus_beta_form():
    z = np.linspace(-6, 6, 121)
    u = np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)
    np.testing.assert_allclose(ref.get("gelu", approximate=True).fn(z), 0.5 * z * (1 + np.tanh(u)),
                               rtol=1e-12, atol=1e-14)
    b = 2.5
    np.testing.assert_allclose(ref.get("softplus", beta=b).fn(z), np.log1p(np.exp(b * z)) / b,
                               rtol=1e-12)
    # the two gelu forms are close but not equal
    d = np.abs(ref.get("gelu").fn(z) - ref.get("gelu", approximate=True).fn(z))
    assert 1e-5 < d.max() < 1e-2


def test_spec_identities():
    z = np.linspace(-5, 5, 101)
    sig = ref.get("sigmoid")
    np.testing.assert_allclose(ref.get("softplus").grad(z), sig.fn(z), rtol=1e-14)
    neg = z[z < 0]
    elu = ref.get("elu", alpha=0.7)
    np.testing.assert_allclose(elu.grad(neg), elu.fn(neg) + 0.7, rtol=1e-12)  # f + alpha
    np.testing.assert_allclose(ref.get("arctan").grad(z), 1 / (1 + z * z), rtol=1e-14)
    np.testing.assert_array_equal(ref.get("binary_step").grad(z), 0)
    hs = ref.get("hard_sigmoid").fn(np.array([-10, -3.01, 0, 3.01, 10]))
    np.testing.assert_allclose(hs, [0, 0, 0.5, 1, 1])
    # the course's worked example (SPEC section 1)
    W = np.array([[.1, .2, .3], [.4, .5, .6], [.7, .8, .9]])
    np.testing.assert_allclose(sig.fn(W @ np.array([1, 2, 3])),
                               [0.80218389, 0.96083428, 0.99330715], rtol=1e-8)
    # selu's constants make a standard normal input keep mean 0 and variance 1
    x = np.random.default_rng(0).standard_normal(400_000)
    y = ref.get("selu").fn(x)
    assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.01


EXTREME = np.array([-1e4, -1e3, -100.0, -1e-30, -1e-40, -0.0, 0.0, 1e-40, 1e-30, 100.0, 1e3, 1e4])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_extreme_inputs_are_finite(name, params, dtype):
    act = ref.get(name, **params)
    z = EXTREME.astype(dtype)
    f, g = act.fn(z), act.grad(z)  # filterwarnings=error: an overflow warning fails too
    if name == "exponential":
        finite = z < 80  # e^z itself overflows beyond
        assert np.isfinite(f[finite]).all() and np.isfinite(g[finite]).all()
        assert not np.isnan(f).any() and not np.isnan(g).any()
    else:
        assert np.isfinite(f).all(), f
        assert np.isfinite(g).all(), g


def test_softmax_vjp_matches_finite_differences():
    rng = np.random.default_rng(2)
    sm = ref.get("softmax")
    z, dy = rng.normal(size=(5, 7)) * 3, rng.normal(size=(5, 7))
    h, fd = 1e-6, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = h
        fd[idx] = ((dy * sm.fn(z + e)).sum() - (dy * sm.fn(z - e)).sum()) / (2 * h)
    np.testing.assert_allclose(sm.vjp(z, dy), fd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sm.fn(z).sum(axis=1), 1, rtol=1e-14)
    big = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    np.testing.assert_allclose(sm.fn(big), [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])


def test_prelu_grads_match_finite_differences():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(6, 4))
    z[np.abs(z) < 1e-3] = 0.1
    alpha = rng.uniform(0, 0.5, 4)
    dy = rng.normal(size=z.shape)
    h = 1e-6
    loss = lambda zz, a: (dy * ref.get("prelu", alpha=a).fn(zz)).sum()  # noqa: E731
    act = ref.get("prelu", alpha=alpha)
    fd_a = np.array([(loss(z, alpha + h * e) - loss(z, alpha - h * e)) / (2 * h)
                     for e in np.eye(4)])
    np.testing.assert_allclose(act.grad_alpha(z, dy), fd_a, rtol=1e-6, atol=1e-9)
    fd_z = (ref.get("prelu", alpha=alpha).fn(z + h) - act.fn(z - h)) / (2 * h)
    np.testing.assert_allclose(act.grad(z), fd_z, rtol=1e-6)


def test_rrelu_training_and_inference():
    rng = np.random.default_rng(4)
    act = ref.get("rrelu")
    z = rng.normal(size=100)
    slopes = rng.uniform(act.lower, act.upper, 100)
    y = act.fn_train(z, slopes)
    np.testing.assert_array_equal(y[z >= 0], z[z >= 0])
    np.testing.assert_allclose(y[z < 0], slopes[z < 0] * z[z < 0])
    np.testing.assert_allclose(act.grad_train(z, slopes), np.where(z >= 0, 1, slopes))
    leaky = ref.get("leaky_relu", negative_slope=(1 / 8 + 1 / 3) / 2)
    np.testing.assert_allclose(act.fn(z), leaky.fn(z))


@pytest.mark.parametrize("name,params", [("softplus", dict(beta=0)),
                                         ("hard_tanh", dict(min_val=1, max_val=0)),
                                         ("rrelu", dict(lower=0.5, upper=0.1))])
def test_bad_parameters_raise(name, params):
    with pytest.raises(ValueError, match=name):
        ref.get(name, **params)


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        ref.get("nope")
