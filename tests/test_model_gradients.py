"""Gradients of whole networks built through the API, against the NumPy twin.

The twin (pynn.reference) recomputes the forward pass, the loss and the chain rule in float64
from the same weights; the engine's gradients (read after one step of plain SGD, which does not
touch them) must agree. Tolerance: the engine runs in float32 through at most four layers with
reductions of length <= 64 (batch and width), so each gradient carries a relative rounding
error of order layers * length * 2**-24 ~ 2e-5 of the magnitude of its tensor; we allow 2e-4
of the tensor's largest entry, ten times that, which a wrong term (a missing 1/n, a transposed
product, a dropped bias) exceeds by orders of magnitude.
"""
from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import reference as ref
from pynn.layers import Activation, BatchNormalization, Dense, PReLU
from pynn.reference import activations as ref_act
from pynn.reference import losses as ref_losses
from pynn.reference import regularization as ref_reg


def twin_forward_backward(model, x, target, loss_name, from_logits=False, sample_weight=None):
    """float64 loss and gradients for every weight, in get_weights order."""
    weights = [w.astype(np.float64) for w in model.get_weights()]
    h = x.astype(np.float64)
    tape = []
    k = 0
    for layer in model.layers:
        n_w = len(layer.get_weights())
        ws = weights[k:k + n_w]
        k += n_w
        if isinstance(layer, Dense):
            act = layer.activation
            W, b = ws[0], (ws[1] if layer.use_bias else None)
            z = h @ W + (0 if b is None else b)
            y = softmax(z) if act == "softmax" else ref_act.get(act).fn(z)
            tape.append(("dense", layer, h, z, y, W))
        elif isinstance(layer, Activation):
            act = layer.activation
            y = softmax(h) if act == "softmax" else ref_act.get(act).fn(h)
            tape.append(("act", layer, h, h, y, None))
        elif isinstance(layer, BatchNormalization):
            gamma, beta, mm, mv = ws
            y, xhat, inv_std, _, _ = ref_reg.batchnorm_forward_train(h, gamma, beta, mm, mv,
                                                                     layer.momentum, layer.epsilon)
            tape.append(("bn", layer, h, (xhat, inv_std), y, gamma))
        elif isinstance(layer, PReLU):
            (alpha,) = ws
            y = np.where(h > 0, h, alpha * h)
            tape.append(("prelu", layer, h, None, y, alpha))
        else:
            raise AssertionError(layer)
        h = y
    loss, dy = ref_losses.value_and_grad(loss_name, h, target, sample_weight, from_logits)
    grads = []
    for kind, layer, inp, z, y, w in reversed(tape):
        if kind == "dense":
            if layer.activation == "softmax":
                dz = y * (dy - (dy * y).sum(axis=1, keepdims=True))
                dx, dW, db = ref.dense.dense_backward(inp, w, z, dz, "linear")
            else:
                dx, dW, db = ref.dense.dense_backward(inp, w, z, dy, layer.activation)
            grads = ([dW, db] if layer.use_bias else [dW]) + grads
        elif kind == "act":
            if layer.activation == "softmax":
                dx = y * (dy - (dy * y).sum(axis=1, keepdims=True))
            else:
                dx = dy * ref_act.get(layer.activation).grad(inp)
        elif kind == "bn":
            xhat, inv_std = z
            dx, dgamma, dbeta = ref_reg.batchnorm_backward(dy, xhat, inv_std, w)
            grads = [dgamma, dbeta, None, None] + grads
        elif kind == "prelu":
            dx = np.where(inp > 0, dy, w * dy)
            grads = [(dy * np.minimum(inp, 0)).sum(axis=0)] + grads
        dy = dx
    return loss, grads


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def engine_grads(model):
    """The engine's gradient of every trainable weight (None for moving statistics), in
    get_weights order, which is the order the compiled graph holds its parameters in."""
    net = model._net
    weights = model.weights
    assert net.num_params() == len(weights)
    return [net.get_grad(pid) if w.trainable else None for pid, w in enumerate(weights)]


CASES = {
    "softmax+sparse_ce (fused)": (
        lambda: [Dense(7, activation="tanh"), Dense(4, activation="softmax")],
        "sparse_categorical_crossentropy", False),
    "sigmoid+bce (fused)": (
        lambda: [Dense(6, activation="relu"), Dense(3, activation="sigmoid")],
        "binary_crossentropy", False),
    "softmax layer+cce": (
        lambda: [Dense(5, activation="elu"), Dense(4), Activation("softmax")],
        "categorical_crossentropy", False),
    "softmax+mse (unfused softmax backward)": (
        lambda: [Dense(6, activation="sigmoid"), Dense(4, activation="softmax")],
        "mean_squared_error", False),
    "logits cce": (
        lambda: [Dense(8, activation="gelu"), Dense(4)],
        "categorical_crossentropy", True),
    "regression huber": (
        lambda: [Dense(9, activation="silu"), Dense(2, activation="linear")],
        "huber", False),
    "batchnorm + prelu + mae": (
        lambda: [Dense(6), BatchNormalization(), PReLU(alpha_initializer="random_normal"),
                 Dense(3, activation="tanh")],
        "mean_absolute_error", False),
    "no bias, activation layers": (
        lambda: [Dense(6, use_bias=False), Activation("softplus"), Dense(3, use_bias=False),
                 Activation("sigmoid")],
        "binary_crossentropy", False),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_network_gradients_match_the_twin(case, weighted):
    make_layers, loss_name, from_logits = CASES[case]
    pynn.utils.set_random_seed(1)
    rng = np.random.default_rng(2)
    n, d = 37, 5
    model = pynn.Sequential([pynn.Input((d,))] + make_layers())
    loss = pynn.losses.get(loss_name)
    if from_logits:
        loss = type(loss)(from_logits=True)
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=1e-3), loss=loss)
    x = rng.standard_normal((n, d)).astype(np.float32)
    width = model.output_shape[-1]
    if loss_name == "sparse_categorical_crossentropy":
        y = rng.integers(0, width, n)
        target = y
    elif loss_name in ("categorical_crossentropy",):
        y = pynn.utils.to_categorical(rng.integers(0, width, n), width)
        target = y
    elif loss_name == "binary_crossentropy":
        y = (rng.random((n, width)) > 0.5).astype(np.float32)
        target = y
    else:
        y = rng.standard_normal((n, width)).astype(np.float32)
        target = y
    sw = rng.random(n).astype(np.float32) + 0.5 if weighted else None
    expected_loss, expected = twin_forward_backward(
        model, x, target.astype(np.int64) if loss_name.startswith("sparse") else target,
        loss_name, from_logits, sw)
    got_loss = model.train_on_batch(x, y, sample_weight=sw)
    assert abs(got_loss - expected_loss) <= 1e-4 * max(1.0, abs(expected_loss))
    got = engine_grads(model)
    assert len(got) == len(expected)
    # A gradient that is exactly zero in exact arithmetic (a bias feeding batch norm) is a sum
    # of cancelling terms; its rounding error scales with the network's gradients, not with 0.
    scale = max(np.abs(e).max() for e in expected if e is not None)
    for i, (g, e) in enumerate(zip(got, expected)):
        if e is None:
            assert g is None
            continue
        tol = 2e-4 * max(np.abs(e).max(), 1e-3 * scale)
        err = np.abs(g - e).max()
        assert err <= tol, f"{case}: weight {i} gradient off by {err:.3g} (tolerance {tol:.3g})"


def test_gradients_include_l1_l2_penalties():
    pynn.utils.set_random_seed(3)
    rng = np.random.default_rng(4)
    model = pynn.Sequential([pynn.Input((4,)),
                             Dense(3, kernel_regularizer=pynn.regularizers.L1L2(0.01, 0.02),
                                   bias_regularizer="l2")])
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=1e-3), loss="mse")
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = rng.standard_normal((10, 3)).astype(np.float32)
    W, b = [w.astype(np.float64) for w in model.get_weights()]
    base, (gW, gb) = twin_forward_backward(model, x, y, "mean_squared_error")
    pW, dW = ref_reg.l1_l2_penalty(W, 0.01, 0.02)
    pb, db = ref_reg.l1_l2_penalty(b, 0.0, 0.01)
    loss = model.train_on_batch(x, y)
    assert abs(loss - (base + pW + pb)) <= 1e-5 * max(1, abs(loss))
    got = engine_grads(model)
    np.testing.assert_allclose(got[0], gW + dW, rtol=0, atol=2e-4 * np.abs(gW + dW).max())
    np.testing.assert_allclose(got[1], gb + db, rtol=0, atol=2e-4 * np.abs(gb + db).max() + 1e-7)


def test_saliency_matches_finite_differences():
    pynn.utils.set_random_seed(5)
    rng = np.random.default_rng(6)
    model = pynn.Sequential([pynn.Input((6,)), Dense(8, activation="tanh"),
                             Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((4, 6)).astype(np.float32)
    grad = model.input_gradient(x, class_index=1)
    W1, b1, W2, b2 = [w.astype(np.float64) for w in model.get_weights()]

    def prob(v):
        return softmax(np.tanh(v @ W1 + b1) @ W2 + b2)[:, 1]

    eps = 1e-6
    xd = x.astype(np.float64)
    fd = np.zeros_like(xd)
    for j in range(6):
        e = np.zeros(6)
        e[j] = eps
        fd[:, j] = (prob(xd + e) - prob(xd - e)) / (2 * eps)
    # central differences are exact to O(eps^2); float32 forward adds ~1e-6 relative
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-4 * np.abs(fd).max())
