"""The NumPy dense twin against float64 central finite differences (before it judges C++)."""
import numpy as np
import pytest

from pynn.reference import dense

ACTS = ["linear", "relu", "sigmoid", "tanh"]


def numeric_grad(f, a, h=1e-6):
    """Central differences of the scalar f() with respect to every element of a (in place)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        fp = f()
        a[idx] = old - h
        fm = f()
        a[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 3, 5), (7, 6, 2)])
def test_dense_backward_matches_finite_differences(act, shape):
    n, k, m = shape
    rng = np.random.default_rng([ACTS.index(act), n, k, m])
    x = rng.standard_normal((n, k))
    W = rng.standard_normal((k, m))
    b = rng.standard_normal(m)
    if act == "relu":
        # Keep every z away from the kink at 0, where the difference quotient is meaningless.
        z = x @ W + b
        b = b + np.where(np.abs(z).min(axis=0) < 1e-3, 0.1, 0.0)
    R = rng.standard_normal((n, m))  # the loss sum(R * y) has dL/dy = R

    def loss():
        return float((R * dense.dense_forward(x, W, b, act)[0]).sum())

    y, z = dense.dense_forward(x, W, b, act)
    dx, dW, db = dense.dense_backward(x, W, z, R, act)
    # Central differences with h=1e-6 in float64 err by ~h^2*f''' + eps/h ~ 1e-10 relative.
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dW, numeric_grad(loss, W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-8)


def test_dense_forward_is_act_of_affine():
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    y, z = dense.dense_forward(x, W, b, "tanh")
    for i in range(3):
        for j in range(2):
            zij = sum(x[i, p] * W[p, j] for p in range(4)) + b[j]
            assert z[i, j] == pytest.approx(zij, rel=1e-12)
            assert y[i, j] == pytest.approx(np.tanh(zij), rel=1e-12)


def test_backward_skips_dx_on_request():
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    _, z = dense.dense_forward(x, W, None, "relu")
    dx, dW, db = dense.dense_backward(x, W, z, np.ones((3, 2)), "relu", compute_dx=False)
    assert dx is None and dW.shape == (4, 2) and db.shape == (2,)
