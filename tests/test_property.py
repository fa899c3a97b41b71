"""Property-based tests (hypothesis): the compiled kernels against the NumPy twin on generated
shapes and values, and save -> load round trips of generated models.

The twin itself is checked against finite differences in the test_ref_* modules; here it is
the oracle, evaluated in float64 on the same float32 inputs.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pynn
from pynn import _core
from pynn import layers as L
from pynn.models import load_model
from pynn.reference import activations as ref_act
from pynn.reference.dense import dense_backward as ref_dense_backward
from pynn.reference.dense import dense_forward as ref_dense_forward
from pynn.reference.gemm import gemm as ref_gemm

SETTINGS = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
EPS32 = 2.0 ** -24
# Edge sizes: 0, 1, small primes, around the SIMD width 16 and the 12x32 / 6x16 register
# blocks, and a few larger ones.
DIMS = st.sampled_from([0, 1, 2, 3, 5, 7, 11, 13, 15, 16, 17, 31, 32, 33, 47, 64, 97])
VALUES = st.floats(-4, 4, width=32, allow_subnormal=False)
GEMM_ACTS = [a for a in ("linear", "relu", "sigmoid", "tanh", "softsign", "silu")
             if a in _core.activation_names()]


def _matrix(shape):
    return hnp.arrays(np.float32, shape, elements=VALUES)


def _dot_bound(a, b, k):
    """Worst-case float32 rounding error of each element of a @ b summed in any order:
    gamma_k * (|a| @ |b|) with gamma_k ~ k * 2**-24 (Higham, Accuracy and Stability, 3.1),
    doubled for the FMA/partial-sum reassociation of the blocked kernel."""
    return 2 * (k + 2) * EPS32 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))


@st.composite
def gemm_case(draw):
    m, n, k = draw(DIMS), draw(DIMS), draw(DIMS)
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    a = draw(_matrix((k, m) if trans_a else (m, k)))
    b = draw(_matrix((n, k) if trans_b else (k, n)))
    strided = draw(st.booleans())
    if strided:  # a non-contiguous view of the same values
        big = np.zeros((a.shape[0], a.shape[1] * 2), np.float32)
        big[:, ::2] = a
        a = big[:, ::2]
    alpha = draw(st.sampled_from([1.0, -0.5, 2.0]))
    beta = draw(st.sampled_from([0.0, 0.0, 1.0, -0.25]))
    out = draw(_matrix((m, n))) if beta else None
    bias = draw(_matrix((n,))) if draw(st.booleans()) else None
    act = draw(st.sampled_from(GEMM_ACTS))
    return a, b, trans_a, trans_b, alpha, beta, out, bias, act


@SETTINGS
@given(gemm_case())
def test_gemm_matches_the_twin(case):
    a, b, trans_a, trans_b, alpha, beta, out, bias, act = case
    kwargs = dict(trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, bias=bias,
                  activation=None if act == "linear" else act)
    expected = ref_gemm(a, b, out=out, **kwargs)
    got = pynn.ops.gemm(a, b, out=None if out is None else out.copy(), **kwargs)
    assert got.dtype == np.float32 and got.shape == expected.shape
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    bound = abs(alpha) * _dot_bound(opa, opb, opa.shape[1])
    if out is not None:
        bound = bound + 2 * EPS32 * np.abs(beta * out)
    # The activations used here are 1-Lipschitz (silu: 1.1); a few ulps of their own error.
    tol = 1.1 * bound + 4 * EPS32 * np.abs(expected) + 1e-7
    assert np.all(np.abs(got - expected) <= tol), np.max(np.abs(got - expected) - tol)


@st.composite
def dense_case(draw):
    n, i, o = draw(DIMS), draw(DIMS.filter(bool)), draw(DIMS.filter(bool))
    x = draw(_matrix((n, i)))
    w = draw(_matrix((i, o))) * np.float32(0.5)
    b = draw(_matrix((o,))) if draw(st.booleans()) else None
    dy = draw(_matrix((n, o)))
    act = draw(st.sampled_from(["linear", "relu", "sigmoid", "tanh", "softsign"]))
    return x, w, b, dy, act


@SETTINGS
@given(dense_case())
def test_dense_forward_and_backward_match_the_twin(case):
    x, w, b, dy, act = case
    y, z = _core.dense_forward(x, w, b, act)
    y_ref, z_ref = ref_dense_forward(x, w, b, act)
    k = x.shape[1]
    zb = _dot_bound(x, w, k) + 2 * EPS32 * np.abs(z_ref) + 1e-7  # + rounding of the bias add
    assert np.all(np.abs(z - z_ref) <= zb)
    # the activation's own error: the tolerance test_activations.py establishes per element
    assert np.all(np.abs(y - y_ref) <= 1.1 * zb + 5e-6 * np.abs(y_ref) + 5e-7)

    dx, dw, db = _core.dense_backward(x, w, z, y, dy, act)
    # The twin's backward at the kernel's own z: the comparison then measures the backward
    # kernel alone (dz = dy * act'(z) to a few ulps, then two GEMMs and a column sum).
    dx_ref, dw_ref, db_ref = ref_dense_backward(x, w, z, dy, act)
    g = ref_act.get(act).grad(z.astype(np.float64))
    dz = np.abs(dy.astype(np.float64) * g)
    n = x.shape[0]
    # act'(z) to the per-element tolerance of test_activations.py (derivatives computed from a
    # rounded y, such as 1 - y**2 for tanh, lose relative accuracy by cancellation)
    dz_err = np.abs(dy) * (5e-6 * np.abs(g) + 5e-7)
    assert np.all(np.abs(db - db_ref) <= 2 * (n + 2) * EPS32 * dz.sum(0) + dz_err.sum(0) + 1e-7)
    assert np.all(np.abs(dw - dw_ref) <= _dot_bound(x.T, dz, n) + np.abs(x.T) @ dz_err + 1e-7)
    assert np.all(np.abs(dx - dx_ref) <= _dot_bound(dz, w.T, w.shape[1])
                  + dz_err @ np.abs(w.T) + 1e-7)


ELEMENTWISE = [a for a in _core.activation_names() if a != "rrelu"]


@SETTINGS
@given(st.sampled_from(ELEMENTWISE),
       hnp.arrays(np.float32, st.integers(0, 70), elements=st.floats(-30, 30, width=32)),
       st.integers(0, 2**32 - 1))
def test_activations_match_the_twin(name, z, seed):
    act = ref_act.get(name)
    params = act.defaults()
    y = _core.activation_forward(z.copy(), name, params)
    dy = np.random.default_rng(seed).standard_normal(z.shape).astype(np.float32)
    dz = _core.activation_backward(z, y, dy, np.empty_like(dy), name, params)
    # The core reads subnormal inputs as 0 (denormals-are-zero, csrc/common/fpenv.h): so does
    # the twin here (binary_step(-4.5e-39) is 1 in the core, as binary_step(0)).
    z64 = np.where(np.abs(z) < np.finfo(np.float32).tiny, 0.0, z.astype(np.float64))
    # As test_activations.py: a handful of float32 operations, a few 1e-7 relative, with an
    # absolute floor for values produced by cancellation near 0.
    np.testing.assert_allclose(y, act.fn(z64), rtol=5e-6, atol=5e-7)
    np.testing.assert_allclose(dz, dy * act.grad(z64), rtol=5e-6, atol=5e-7)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activations_propagate_nan_like_the_twin(name):
    z = np.array([np.nan, 1.0, -1.0] + [0.5] * 16, np.float32)
    y = _core.activation_forward(z.copy(), name, [])
    assert np.isnan(ref_act.get(name).fn(z.astype(np.float64))[0])
    assert np.isnan(y[0])


# --- save -> load of generated models ---------------------------------------------------------

LAYER = st.one_of(
    st.builds(lambda u, a, bias: L.Dense(u, activation=a, use_bias=bias),
              st.integers(1, 9), st.sampled_from([None, "relu", "tanh", "sigmoid", "gelu", "elu"]),
              st.booleans()),
    st.builds(lambda m, c, s: L.BatchNormalization(momentum=m, center=c, scale=s),
              st.sampled_from([0.0, 0.5, 0.99]), st.booleans(), st.booleans()),
    st.builds(L.Dropout, st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2**31)),
    st.builds(L.LeakyReLU, st.sampled_from([0.0, 0.1, 0.3])),
    st.builds(L.ELU, st.sampled_from([0.5, 1.0])),
    st.builds(L.PReLU),
    st.builds(L.ReLU),
    st.builds(L.Activation, st.sampled_from(["tanh", "softplus", "selu", "linear"])),
)


@st.composite
def model_case(draw):
    shape = draw(st.sampled_from([(3,), (5,), (2, 3), (1, 4)]))
    stack = [pynn.Input(shape)]
    if len(shape) > 1:
        stack.append(L.Flatten())
    stack += draw(st.lists(LAYER, max_size=4))
    head = draw(st.sampled_from(["softmax", "sigmoid", "linear"]))
    units = 1 if head == "sigmoid" else draw(st.integers(2, 4))
    stack.append(L.Dense(units, activation=None if head == "linear" else head))
    loss = {"softmax": "sparse_categorical_crossentropy", "sigmoid": "binary_crossentropy",
            "linear": "mse"}[head]
    optimizer = draw(st.sampled_from(["adam", "sgd", "rmsprop", "nadam", "adamax"]))
    train = draw(st.booleans())
    return shape, stack, units, loss, optimizer, train


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(model_case())
def test_generated_models_round_trip(tmp_path_factory, case):
    shape, stack, units, loss, optimizer, train = case
    model = pynn.Sequential(stack)
    model.compile(optimizer=optimizer, loss=loss)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10,) + shape).astype(np.float32)
    if loss == "sparse_categorical_crossentropy":
        y = np.arange(10) % units
    elif loss == "binary_crossentropy":
        y = (np.arange(10) % 2).astype(np.float32)
    else:
        y = rng.normal(size=(10, units)).astype(np.float32)
    if train:
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    else:
        model.build()
    assume(all(np.isfinite(w).all() for w in model.get_weights()))
    path = tmp_path_factory.mktemp("gen") / "m.safetensors"
    model.save(path)
    back = load_model(path)
    assert back.get_config() == model.get_config()
    assert len(back.get_weights()) == len(model.get_weights())
    for p, q in zip(model.get_weights(), back.get_weights()):
        assert p.tobytes() == q.tobytes()
    assert back.optimizer.iterations == model.optimizer.iterations
    assert np.array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0),
                          equal_nan=True)
    # one more step on each gives the same weights: the optimizer state came back too
    model.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    back.fit(x, y, epochs=1, batch_size=10, shuffle=False, verbose=0)
    for p, q in zip(model.get_weights(), back.get_weights()):
        assert np.array_equal(p, q, equal_nan=True)
