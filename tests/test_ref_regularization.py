"""The NumPy regularisation twin against float64 finite differences and its definitions."""
import numpy as np
import pytest
from test_ref_dense import numeric_grad

from pynn.reference import regularization as reg


@pytest.mark.parametrize("shape", [(2, 1), (5, 3), (16, 4)])
def test_batchnorm_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    x = rng.standard_normal(shape) * 2 + 0.5
    gamma = rng.standard_normal(shape[1])
    beta = rng.standard_normal(shape[1])
    mm, mv = np.zeros(shape[1]), np.ones(shape[1])
    R = rng.standard_normal(shape)

    def loss():
        return float((R * reg.batchnorm_forward_train(x, gamma, beta, mm, mv)[0]).sum())

    _, xhat, inv_std, _, _ = reg.batchnorm_forward_train(x, gamma, beta, mm, mv)
    dx, dgamma, dbeta = reg.batchnorm_backward(R, xhat, inv_std, gamma)
    # float64 central differences, h=1e-6: truncation + rounding error ~1e-9 relative.
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dgamma, numeric_grad(loss, gamma), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dbeta, numeric_grad(loss, beta), rtol=1e-6, atol=1e-8)


def test_batchnorm_train_normalises_and_updates_moving_stats():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 3)) * [1.0, 5.0, 0.1] + [2.0, -1.0, 0.0]
    gamma, beta = np.ones(3), np.zeros(3)
    mm, mv = np.array([0.5, 0.5, 0.5]), np.array([2.0, 2.0, 2.0])
    y, xhat, inv_std, nm, nv = reg.batchnorm_forward_train(x, gamma, beta, mm, mv, 0.9, 1e-3)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    # Biased variance of y is var/(var+eps), just under 1.
    var = x.var(axis=0)
    np.testing.assert_allclose(y.var(axis=0), var / (var + 1e-3), rtol=1e-12)
    np.testing.assert_allclose(nm, 0.9 * mm + 0.1 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(nv, 0.9 * mv + 0.1 * var, rtol=1e-12)


def test_batchnorm_infer_uses_moving_stats():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = reg.batchnorm_forward_infer(x, [2.0, 1.0], [0.5, 0.0], [1.0, 0.0], [4.0, 1.0], 0.0)
    # column 0: 2*(x-1)/2 + 0.5; column 1: x
    np.testing.assert_allclose(y, [[0.5, 2.0], [2.5, 4.0]])


def test_l1_l2_penalty_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3))
    w[np.abs(w) < 1e-3] = 0.5  # |w| has a kink at 0
    value, grad = reg.l1_l2_penalty(w, l1=0.01, l2=0.3)
    assert value == pytest.approx(0.01 * np.abs(w).sum() + 0.3 * (w ** 2).sum(), rel=1e-12)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda: reg.l1_l2_penalty(w, 0.01, 0.3)[0], w), rtol=1e-6, atol=1e-9)


def test_dropout_mask_rate_and_scale():
    mask = reg.dropout_mask((200, 100), 0.25, 7)
    assert set(np.unique(mask)) <= {0.0, 1 / 0.75}
    kept = (mask > 0).mean()
    # 20000 Bernoulli(0.75) draws: standard deviation of the mean is 0.003; allow 5 sigma.
    assert abs(kept - 0.75) < 0.015
    np.testing.assert_array_equal(mask, reg.dropout_mask((200, 100), 0.25, 7))
    x = np.arange(6.0).reshape(2, 3)
    m = reg.dropout_mask((2, 3), 0.5, 1)
    np.testing.assert_array_equal(reg.dropout_forward(x, m), x * m)
    np.testing.assert_array_equal(reg.dropout_backward(x, m), x * m)
    with pytest.raises(ValueError, match="rate"):
        reg.dropout_mask((2,), 1.0, 0)
