"""The course's worked examples (SPEC section 1) reproduced through the kernels."""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import _core

# The 3x3 example: weights applied to an input as W.x, then the logistic function.
W_COURSE = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], np.float32)
X_COURSE = np.array([1.0, 2.0, 3.0], np.float32)
EXPECTED = np.array([0.80218389, 0.96083428, 0.99330715])  # the course's printed result


def test_3x3_sigmoid_example_through_gemm():
    out = pynn.ops.gemm(W_COURSE, X_COURSE.reshape(3, 1), activation="sigmoid")
    # float32: the sums (1.4, 3.2, 5.0) carry ~1e-7 relative error, sigmoid adds a few ulps.
    np.testing.assert_allclose(out.ravel(), EXPECTED, rtol=1e-6)


def test_3x3_sigmoid_example_through_the_dense_kernel():
    # Keras's layout is y = x @ K, so the course's W.x is the dense layer with kernel K = W^T.
    y, z = _core.dense_forward(X_COURSE.reshape(1, 3), np.ascontiguousarray(W_COURSE.T), None,
                               "sigmoid")
    np.testing.assert_allclose(z.ravel(), [1.4, 3.2, 5.0], rtol=1e-6)
    np.testing.assert_allclose(y.ravel(), EXPECTED, rtol=1e-6)


# The two-layer sigmoid network of the course, on four points.
X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], np.float32)
Y = np.array([[0.0], [1.0], [1.0], [0.0]], np.float32)
W1 = np.array([[0.5, -0.3, 0.8], [0.2, 0.7, -0.6]], np.float32)
W2 = np.array([[0.4], [-0.9], [0.3]], np.float32)


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def course_cost(W1, W2):
    """J = 1/(2N) sum (O_out - Y)^2, in float64."""
    O_out = sig(sig(X.astype(np.float64) @ W1) @ W2)
    return ((O_out - Y) ** 2).sum() / (2 * len(X))


def course_gradients(W1, W2):
    """The chain rule of the course, written out term by term in float64:
        dJ/dO_out = (O_out - Y) / N
        dJ/dO_in  = dJ/dO_out * O_out (1 - O_out)          (sigmoid' = f(1 - f))
        dJ/dW2    = H_out^T dJ/dO_in
        dJ/dH_out = dJ/dO_in W2^T
        dJ/dH_in  = dJ/dH_out * H_out (1 - H_out)
        dJ/dW1    = X^T dJ/dH_in
    """
    X64 = X.astype(np.float64)
    H_out = sig(X64 @ W1)
    O_out = sig(H_out @ W2)
    d_Oin = (O_out - Y) / len(X) * O_out * (1 - O_out)
    dW2 = H_out.T @ d_Oin
    d_Hin = (d_Oin @ W2.T) * H_out * (1 - H_out)
    dW1 = X64.T @ d_Hin
    return dW1, dW2


def kernel_gradients(W1, W2):
    H_out, H_in = _core.dense_forward(X, W1, None, "sigmoid")
    O_out, O_in = _core.dense_forward(H_out, W2, None, "sigmoid")
    dO_out = ((O_out - Y) / np.float32(len(X))).astype(np.float32)
    dH_out, dW2, _ = _core.dense_backward(H_out, W2, O_in, O_out, dO_out, "sigmoid")
    dX, dW1, _ = _core.dense_backward(X, W1, H_in, H_out, dH_out, "sigmoid", compute_dx=False)
    assert dX is None  # the first layer needs no input gradient
    return dW1, dW2


def test_hand_derivation_matches_finite_differences():
    # The derivation itself is checked before it judges the kernels.
    W1d, W2d = W1.astype(np.float64), W2.astype(np.float64)
    g1, g2 = course_gradients(W1d, W2d)
    h = 1e-6
    for W, g in ((W1d, g1), (W2d, g2)):
        for idx in np.ndindex(W.shape):
            old = W[idx]
            W[idx] = old + h
            fp = course_cost(W1d, W2d)
            W[idx] = old - h
            fm = course_cost(W1d, W2d)
            W[idx] = old
            assert (fp - fm) / (2 * h) == pytest.approx(g[idx], rel=1e-6, abs=1e-10)


def test_two_layer_network_gradients_match_the_chain_rule():
    g1, g2 = course_gradients(W1.astype(np.float64), W2.astype(np.float64))
    k1, k2 = kernel_gradients(W1, W2)
    # float32 through two layers of length <= 4 reductions: a few hundred ulps at most,
    # relative to gradients of size ~1e-2.
    np.testing.assert_allclose(k1, g1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(k2, g2, rtol=1e-5, atol=1e-7)


def test_gradient_descent_on_the_course_cost_lowers_it():
    # W := W - alpha dJ/dW with the kernels' gradients.
    W1s, W2s = W1.copy(), W2.copy()
    costs = [course_cost(W1s, W2s)]
    for _ in range(50):
        g1, g2 = kernel_gradients(W1s, W2s)
        W1s -= np.float32(2.0) * g1
        W2s -= np.float32(2.0) * g2
        costs.append(course_cost(W1s, W2s))
    assert all(b < a for a, b in zip(costs, costs[1:]))


def test_course_cost_is_half_of_keras_mse_per_output():
    # Keras's mean_squared_error averages over samples and outputs with no factor 1/2:
    #   MSE = 1/(N*m) sum (O_out - Y)^2, so the course's J = m/2 * MSE and its gradients are
    # m/2 times Keras's. With one output (m = 1) the course's cost is half of Keras's.
    O_out = sig(sig(X.astype(np.float64) @ W1) @ W2)
    keras_mse = ((O_out - Y) ** 2).mean()
    assert course_cost(W1, W2) == pytest.approx(keras_mse * Y.shape[1] / 2, rel=1e-12)
