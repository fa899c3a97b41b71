"""Initializers, in the core (`_core.initializer_fill`) and in the NumPy twin.

Both are checked against the distributions Keras specifies, not against each other's values
(their generators differ). Bounds, for N independent draws of standard deviation σ:
  - sample mean: its stddev is σ/√N; we allow 5 of those (a false alarm has probability 6e-7);
  - sample stddev: the relative error of a variance estimate has stddev √((κ − 1)/N), κ the
    kurtosis (1.8 uniform, 2.4 normal cut at ±2, 3 normal); we allow 5·√(2/N) on the variance;
  - the Kolmogorov-Smirnov distance to the exact CDF: P(D > √(ln(2/α)/(2N))) ≤ α; α = 1e-6;
  - support: uniform draws stay in [−l, l]; cut normals in [−2σ', 2σ'] (σ' the pre-cut
    stddev), and come within 1% of the edge (P(a draw lands there) ≥ 1e-3 per draw, so missing
    it in 60000 draws has probability < e^-60).
Every seed here is fixed, so the tests are deterministic; the bounds say why they are not
tuned to the seed.
"""
import math

import numpy as np
import pytest

from pynn import _core
from pynn.reference import initializers as ri

TN = ri.TRUNCATED_NORMAL_STD
SHAPE = (300, 200)  # N = 60000, fan_in 300, fan_out 200, fan_avg 250
N = 60000


def fill(name, shape=SHAPE, seed=7, **params):
    return _core.initializer_fill(name, shape, seed, params or None)


def twin(name, shape=SHAPE, seed=7, **params):
    return ri.get(name)(shape, seed, **params)


_erf = np.frompyfunc(math.erf, 1, 1)


def normal_cdf(x):
    return 0.5 * (1 + np.asarray(_erf(np.asarray(x, np.float64) / math.sqrt(2)), np.float64))


def ks_distance(sample, cdf):
    x = np.sort(np.asarray(sample, np.float64).ravel())
    n = x.size
    f = cdf(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def ks_bound(n, alpha=1e-6):
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def check_moments(x, mean, std):
    x = np.asarray(x, np.float64).ravel()
    n = x.size
    assert abs(x.mean() - mean) <= 5 * std / math.sqrt(n), (x.mean(), mean)
    assert abs(x.var() / std**2 - 1) <= 5 * math.sqrt(2 / n), (x.std(), std)


def check_uniform(x, lo, hi):
    x = np.asarray(x, np.float64).ravel()
    assert x.min() >= lo and x.max() <= hi
    check_moments(x, (lo + hi) / 2, (hi - lo) / math.sqrt(12))
    assert ks_distance(x, lambda v: (v - lo) / (hi - lo)) <= ks_bound(x.size)


def check_cut_normal(x, std_before_cut, mean=0.0):
    """Normal(mean, std_before_cut) cut to ±2 std_before_cut."""
    x = np.asarray(x, np.float64).ravel()
    s = std_before_cut
    assert np.all(np.abs(x - mean) <= 2 * s * (1 + 1e-6))
    assert np.max(np.abs(x - mean)) >= 1.98 * s
    check_moments(x, mean, s * TN)
    mass = normal_cdf(2.0) - normal_cdf(-2.0)
    assert ks_distance(x, lambda v: (normal_cdf((v - mean) / s) - normal_cdf(-2.0)) / mass) \
        <= ks_bound(x.size)


VARIANCE_SCALING = {
    # name: (uniform?, target variance for SHAPE)
    "glorot_uniform": (True, 1 / 250),
    "glorot_normal": (False, 1 / 250),
    "he_uniform": (True, 2 / 300),
    "he_normal": (False, 2 / 300),
    "lecun_uniform": (True, 1 / 300),
    "lecun_normal": (False, 1 / 300),
}


@pytest.mark.parametrize("source", ["core", "twin"])
@pytest.mark.parametrize("name", sorted(VARIANCE_SCALING))
def test_variance_scaling_distributions(name, source):
    uniform, var = VARIANCE_SCALING[name]
    x = fill(name) if source == "core" else twin(name)
    assert x.shape == SHAPE
    if source == "core":
        assert x.dtype == np.float32
    if uniform:
        limit = math.sqrt(3 * var)
        check_uniform(x, -limit, limit)
    else:
        # Keras's correction: the values' stddev is √var, i.e. √var / 0.8796 before the cut.
        check_cut_normal(x, math.sqrt(var) / TN)


@pytest.mark.parametrize("source", ["core", "twin"])
def test_random_normal_uniform_truncated(source):
    get = fill if source == "core" else twin
    x = get("random_normal")
    check_moments(x, 0.0, 0.05)
    assert ks_distance(x, lambda v: normal_cdf(v / 0.05)) <= ks_bound(N)
    x = get("random_normal", mean=1.5, stddev=2.0)
    check_moments(x, 1.5, 2.0)
    check_uniform(get("random_uniform"), -0.05, 0.05)
    check_uniform(get("random_uniform", minval=2.0, maxval=5.0), 2.0, 5.0)
    check_cut_normal(get("truncated_normal"), 0.05)  # Keras: no correction for this one
    check_cut_normal(get("truncated_normal", mean=-1.0, stddev=0.5), 0.5, mean=-1.0)


def test_fans_match_keras_rule():
    for shape, fans in [((), (1, 1)), ((7,), (7, 7)), ((784, 256), (784, 256)),
                        ((3, 3, 16, 32), (144, 288)), ((5, 4, 6), (20, 30))]:
        assert _core.compute_fans(shape) == fans
        assert ri.compute_fans(shape) == fans


def test_conv_kernel_uses_receptive_field():
    # (3, 3, 64, 64): fan_in = 576, glorot limit √(6 / 1152); 36864 draws.
    x = fill("glorot_uniform", (3, 3, 64, 64))
    check_uniform(x, -math.sqrt(6 / 1152), math.sqrt(6 / 1152))


@pytest.mark.parametrize("name", sorted(_core.initializer_names()))
def test_determinism_and_seed_sensitivity(name):
    shape = (40, 30)
    a = _core.initializer_fill(name, shape, 11)
    b = _core.initializer_fill(name, shape, 11)
    np.testing.assert_array_equal(a, b)
    c = _core.initializer_fill(name, shape, 12)
    if name in ("zeros", "ones", "constant", "identity"):
        np.testing.assert_array_equal(a, c)  # no randomness to vary
    else:
        assert np.mean(a != c) > 0.99
    # The twin is seeded too.
    np.testing.assert_array_equal(ri.get(name)(shape, 11), ri.get(name)(shape, 11))


def test_thread_count_does_not_change_fill():
    before = _core.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            _core.set_num_threads(threads)
            out.append(_core.initializer_fill("he_normal", (513, 257), 5))  # > 65536 values
    finally:
        _core.set_num_threads(before)
    np.testing.assert_array_equal(out[0], out[1])


def test_constants_and_identity():
    np.testing.assert_array_equal(fill("zeros", (3, 4)), np.zeros((3, 4)))
    np.testing.assert_array_equal(fill("ones", (5,)), np.ones(5))
    np.testing.assert_array_equal(fill("constant", (2, 2), value=0.5), np.full((2, 2), 0.5))
    np.testing.assert_array_equal(fill("identity", (3, 5)), np.eye(3, 5))
    np.testing.assert_array_equal(fill("identity", (4, 2), gain=2.0), 2 * np.eye(4, 2))
    np.testing.assert_array_equal(ri.identity((4, 2), gain=2.0), 2 * np.eye(4, 2))
    assert fill("glorot_uniform", (0, 5)).shape == (0, 5)
    assert fill("orthogonal", (0, 5)).shape == (0, 5)


@pytest.mark.parametrize("source", ["core", "twin"])
@pytest.mark.parametrize("shape", [(64, 64), (200, 30), (30, 200), (4, 5, 6), (1, 1), (17, 1)])
def test_orthogonal(shape, source):
    q = fill("orthogonal", shape, gain=1.0) if source == "core" else twin("orthogonal", shape)
    assert q.shape == shape
    m = np.asarray(q, np.float64).reshape(-1, shape[-1])
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T
    # float32 entries (rel 6e-8) summed over up to 200 terms: 1e-5 is ~√200·6e-8·100 margin.
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-5)
    q2 = fill("orthogonal", shape, gain=3.0) if source == "core" else \
        twin("orthogonal", shape, gain=3.0)
    np.testing.assert_allclose(q2, 3 * np.asarray(q), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("source", ["core", "twin"])
def test_orthogonal_sign_correction(source):
    # Without the sign correction a Householder QR gives Q[0, 0] a fixed sign; with it, Q is
    # Haar-distributed and Q[0, 0] is positive or negative with probability 1/2 each. Out of
    # 40 seeds, fewer than 8 of either sign has probability 2·P(Bin(40, ½) < 8) ≈ 2e-5.
    get = fill if source == "core" else twin
    signs = [np.sign(get("orthogonal", (6, 4), seed=s)[0, 0]) for s in range(40)]
    positives = sum(1 for v in signs if v > 0)
    assert 8 <= positives <= 32, positives
    # And the entries of a Haar matrix are spread as N(0, 1/rows) for a tall matrix.
    q = get("orthogonal", (400, 100), seed=3)
    check_moments(q, 0.0, 1 / math.sqrt(400))


def test_bad_input():
    with pytest.raises(ValueError, match="name: expected one of"):
        _core.initializer_fill("glorot", (2, 2), 0)
    with pytest.raises(ValueError, match="shape: identity needs a 2-D shape"):
        _core.initializer_fill("identity", (2, 2, 2), 0)
    with pytest.raises(ValueError, match="shape: orthogonal needs"):
        _core.initializer_fill("orthogonal", (4,), 0)
    with pytest.raises(ValueError, match="non-negative"):
        _core.initializer_fill("zeros", (2, -1), 0)
    with pytest.raises(ValueError, match="'stddev' is not an argument of random_uniform"):
        _core.initializer_fill("random_uniform", (2,), 0, {"stddev": 1.0})
    with pytest.raises(ValueError, match="finite"):
        _core.initializer_fill("random_normal", (2,), 0, {"mean": float("nan")})
    with pytest.raises(ValueError, match="unknown initializer"):
        ri.get("glorot")
    with pytest.raises(ValueError, match="identity needs"):
        ri.identity((2, 2, 2))
