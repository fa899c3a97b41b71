"""The C++ regularisation kernels against the float64 NumPy twin and their definitions."""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import _core
from pynn.reference import regularization as ref

U = 2.0 ** -24


def f32(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


@pytest.fixture
def restore_threads():
    before = pynn.get_num_threads()
    yield
    pynn.set_num_threads(before)


# --- dropout -------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_rate_scale_and_twin(rate):
    rng = np.random.default_rng(1)
    x = f32(rng, 300, 257)
    y, mask = _core.dropout_forward(x, rate, 1234)
    scale = np.float32(1) / (np.float32(1) - np.float32(rate))
    assert set(np.unique(mask)) <= {0.0, scale}
    kept = (mask != 0).mean()
    # 77100 Bernoulli(1-rate) draws: sd of the mean <= 0.0018; 5 sigma is < 0.01.
    assert abs(kept - (1 - rate)) < 0.01
    np.testing.assert_array_equal(y, ref.dropout_forward(x, mask))  # one float32 product
    dy = f32(rng, 300, 257)
    np.testing.assert_array_equal(_core.dropout_backward(dy, mask), ref.dropout_backward(dy, mask))


def test_dropout_deterministic_for_a_seed_and_thread_count(restore_threads):
    x = np.ones((512, 300), np.float32)  # big enough for the parallel loop
    runs = []
    for nt in (1, 2, 1):
        pynn.set_num_threads(nt)
        runs.append(_core.dropout_forward(x, 0.3, 42, 7)[1])
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    other_seed = _core.dropout_forward(x, 0.3, 43, 7)[1]
    other_stream = _core.dropout_forward(x, 0.3, 42, 8)[1]
    assert (other_seed != runs[0]).mean() > 0.3  # independent masks differ on ~42% of elements
    assert (other_stream != runs[0]).mean() > 0.3


def test_dropout_mask_is_a_function_of_the_index():
    # Element i of the mask does not depend on the array's shape or length.
    small = _core.dropout_forward(np.ones(100, np.float32), 0.5, 9)[1]
    big = _core.dropout_forward(np.ones((20, 50), np.float32), 0.5, 9)[1]
    np.testing.assert_array_equal(small, big.ravel()[:100])


def test_dropout_bad_input():
    x = np.ones((2, 2), np.float32)
    for rate in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            _core.dropout_forward(x, rate, 0)
    with pytest.raises(ValueError, match="mask"):
        _core.dropout_backward(x, np.ones((2, 3), np.float32))
    y, mask = _core.dropout_forward(np.ones(0, np.float32), 0.5, 0)
    assert y.shape == mask.shape == (0,)


# --- batch normalisation -------------------------------------------------------------------
BN_SHAPES = [(1, 1), (2, 3), (7, 16), (13, 17), (128, 33), (300, 5)]


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_train_and_backward_against_twin(shape):
    n, c = shape
    rng = np.random.default_rng(n * 100 + c)
    x = f32(rng, n, c, scale=3.0, shift=5.0)  # an offset mean tests the two-pass variance
    gamma, beta = f32(rng, c), f32(rng, c)
    mm, mv = f32(rng, c), np.abs(f32(rng, c)) + 0.5
    mm0, mv0 = mm.copy(), mv.copy()
    y, xhat, inv_std = _core.batchnorm_forward_train(x, gamma, beta, mm, mv)
    y_r, xhat_r, inv_r, mm_r, mv_r = ref.batchnorm_forward_train(x, gamma, beta, mm0, mv0)
    # Statistics are summed in double, so each output is within a few float32 roundings of
    # the float64 truth, relative to the magnitudes involved (|x - mean| * inv_std ~ 1).
    tol = 32 * U
    np.testing.assert_allclose(inv_std, inv_r, rtol=tol)
    np.testing.assert_allclose(xhat, xhat_r, rtol=0, atol=tol * (np.abs(x) * inv_r + 1).max())
    np.testing.assert_allclose(y, y_r, rtol=0,
                               atol=tol * (np.abs(gamma) * (np.abs(x) * inv_r + 1) + np.abs(beta)).max())
    np.testing.assert_allclose(mm, mm_r, rtol=tol, atol=tol * np.abs(x).max())
    np.testing.assert_allclose(mv, mv_r, rtol=tol)
    # The Keras defaults: momentum 0.99 moves the statistics by 1% of the way.
    np.testing.assert_allclose(mm, 0.99 * mm0 + 0.01 * x.astype(np.float64).mean(0),
                               rtol=tol, atol=tol * np.abs(x).max())

    dy = f32(rng, n, c)
    dx, dgamma, dbeta = _core.batchnorm_backward(dy, xhat, inv_std, gamma)
    # The twin gets the kernel's float32 xhat and inv_std: this checks the backward alone.
    dx_r, dg_r, db_r = ref.batchnorm_backward(dy, xhat, inv_std, gamma)
    ady = np.abs(dy.astype(np.float64))
    np.testing.assert_array_less(np.abs(dbeta - db_r), tol * ady.sum(0) + 1e-30)
    np.testing.assert_array_less(np.abs(dgamma - dg_r), tol * (ady * np.abs(xhat)).sum(0) + 1e-30)
    scale = np.abs(gamma * inv_std) * (ady + ady.mean(0) + np.abs(xhat) * (ady * np.abs(xhat)).mean(0))
    np.testing.assert_array_less(np.abs(dx - dx_r), tol * scale + 1e-30)


def test_batchnorm_moving_stats_converge_to_the_data_stats():
    rng = np.random.default_rng(2)
    c = 4
    mm, mv = np.zeros(c, np.float32), np.ones(c, np.float32)
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    x = f32(rng, 64, c, scale=2.0, shift=3.0)
    for _ in range(1000):  # the same batch: moving = batch + 0.99**t (start - batch)
        _core.batchnorm_forward_train(x, gamma, beta, mm, mv)
    x64 = x.astype(np.float64)
    left = 0.99 ** 1000  # 4.3e-5 of the start remains
    np.testing.assert_allclose(mm, x64.mean(0) * (1 - left), rtol=1e-4)
    np.testing.assert_allclose(mv, x64.var(0) * (1 - left) + left, rtol=1e-4)
    # Inference with the converged statistics nearly reproduces training-mode output.
    y_inf = _core.batchnorm_forward_infer(x, gamma, beta, mm, mv)
    y_tr, _, _ = _core.batchnorm_forward_train(x, gamma, beta, mm.copy(), mv.copy())
    np.testing.assert_allclose(y_inf, y_tr, atol=1e-3)


@pytest.mark.parametrize("shape", BN_SHAPES + [(0, 3)])
def test_batchnorm_infer_against_twin(shape):
    n, c = shape
    rng = np.random.default_rng(c)
    x, gamma, beta = f32(rng, n, c, scale=2.0), f32(rng, c), f32(rng, c)
    mm, mv = f32(rng, c), np.abs(f32(rng, c)) + 0.1
    y = _core.batchnorm_forward_infer(x, gamma, beta, mm, mv, epsilon=1e-3)
    y_r = ref.batchnorm_forward_infer(x, gamma, beta, mm, mv, 1e-3)
    s = np.abs(gamma) / np.sqrt(mv + 1e-3)
    # Folded into y = x*s' + t' with s', t' rounded once from double: a few roundings of the
    # magnitudes |x|*s + |mean|*s + |beta|.
    mag = (np.abs(x) + np.abs(mm)) * s + np.abs(beta)
    assert y.shape == (n, c)
    assert np.all(np.abs(y - y_r) <= 16 * U * mag + 1e-30)


def test_batchnorm_bad_input():
    x = np.ones((4, 3), np.float32)
    v = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="gamma"):
        _core.batchnorm_forward_train(x, np.ones(2, np.float32), v, v.copy(), v.copy())
    with pytest.raises(ValueError, match="moving_var"):
        _core.batchnorm_forward_train(x, v, v, v.copy(), np.ones(4, np.float32))
    ro = v.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="moving_mean"):
        _core.batchnorm_forward_train(x, v, v, ro, v.copy())
    with pytest.raises(ValueError, match="x"):
        _core.batchnorm_forward_train(np.ones((0, 3), np.float32), v, v, v.copy(), v.copy())
    with pytest.raises(ValueError, match="xhat"):
        _core.batchnorm_backward(x, np.ones((4, 2), np.float32), v, v)


# --- L1 / L2 penalties ---------------------------------------------------------------------
@pytest.mark.parametrize("l1,l2", [(0.0, 0.0), (0.01, 0.0), (0.0, 0.01), (0.003, 0.2)])
def test_l1_l2_penalty_against_twin(l1, l2):
    rng = np.random.default_rng(3)
    w = f32(rng, 37, 19)
    w[0, :5] = 0.0  # sign(0) = 0
    g0 = f32(rng, 37, 19)
    g = g0.copy()
    value = _core.l1_l2_penalty(w, g, l1, l2)
    v_r, g_r = ref.l1_l2_penalty(w, l1, l2)
    # The value is summed in double; the gradient is two float32 roundings per element.
    assert value == pytest.approx(v_r, rel=1e-6, abs=1e-12)
    np.testing.assert_allclose(g, g0 + g_r, rtol=0,
                               atol=4 * U * (np.abs(g0) + l1 + 2 * l2 * np.abs(w)).max())
    assert np.all(g[0, :5] == g0[0, :5])
    assert _core.l1_l2_penalty(w, None, l1, l2) == value


def test_l1_l2_penalty_bad_input():
    w = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="g"):
        _core.l1_l2_penalty(w, np.ones(3, np.float32), 0.1, 0.1)
    with pytest.raises(ValueError, match="l1"):
        _core.l1_l2_penalty(w, None, -0.1, 0.0)


# --- L1/L2 penalties count trainable weights only, in training and in evaluation ----------
def _frozen_l2_model():
    pynn.utils.set_random_seed(3)
    frozen = pynn.layers.Dense(4, kernel_regularizer=pynn.regularizers.L2(1.0), trainable=False)
    model = pynn.Sequential([pynn.layers.Input((3,)), frozen, pynn.layers.Dense(2)])
    # A learning rate far too small to move anything the float32 loss could see; each
    # comparison below evaluates before it trains, on the same weights.
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=1e-30), loss="mse")
    return model, frozen


def _numpy_loss(model, x, y, penalty):
    w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    pred = (x @ w1 + b1) @ w2 + b2
    return float(np.mean((pred - y) ** 2)) + (float(np.sum(w1 ** 2)) if penalty else 0.0)


def test_frozen_weights_add_no_penalty_to_train_or_test_loss():
    # Keras counts the regularisers of trainable weights only: a frozen Dense with L2(1.0)
    # adds nothing to the loss, in train_on_batch and in test_on_batch alike.
    model, frozen = _frozen_l2_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    want = _numpy_loss(model, x, y, penalty=False)
    test = model.test_on_batch(x, y)
    train = model.train_on_batch(x, y)
    assert test == pytest.approx(train, rel=1e-6)
    assert test == pytest.approx(want, rel=1e-5)
    assert np.sum(model.get_weights()[0].astype(np.float64) ** 2) > 1.0  # the penalty is not small
    # unfrozen, the same layer's penalty counts in both
    frozen.trainable = True
    want = _numpy_loss(model, x, y, penalty=True)
    test = model.test_on_batch(x, y)
    train = model.train_on_batch(x, y)
    assert test == pytest.approx(train, rel=1e-6)
    assert test == pytest.approx(want, rel=1e-5)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-5)


def test_network_test_step_counts_trainable_penalties_only():
    # The same rule in the Sequential engine (_core.Network).
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((3, 4)).astype(np.float32)
    w2 = rng.standard_normal((4, 2)).astype(np.float32)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    data = float(np.mean(((x.astype(np.float64) @ w1) @ w2 - y) ** 2))
    for frozen in (True, False):
        net = _core.Network(3)
        net.add_dense(4, "linear", [], False)
        net.add_dense(2, "linear", [], False)
        net.set_param(0, w1)
        net.set_param(1, w2)
        net.set_regularization(0, 0.0, 1.0)
        net.set_frozen(0, frozen)
        net.set_loss("mean_squared_error", False, 1.0)
        net.set_optimizer("sgd", {"learning_rate": 0.0})
        want = data + (0.0 if frozen else float(np.sum(w1.astype(np.float64) ** 2)))
        test = net.test_step(x, y, None, None, None)[0]
        train = net.train_step(x, y, None, None, None)[0]
        assert test == train, frozen  # same weights, same sums in the same order
        assert test == pytest.approx(want, rel=1e-5), frozen
