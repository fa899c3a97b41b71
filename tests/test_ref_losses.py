"""The NumPy twin of the losses, checked before it is trusted: gradients against central
finite differences in float64 (with and without sample weights, from probabilities and from
logits), values against naive textbook formulas, and stability at extreme logits."""
import zlib

import numpy as np
import pytest

from pynn.reference import losses as ref

CASES = [(name, fl) for name in ref.NAMES for fl in (False, True)
         if fl is False or name in ref.CROSS_ENTROPIES]


def _data(name, from_logits, rng, n=6, c=5):
    if from_logits:
        pred = rng.normal(size=(n, c)) * 3
    else:
        # probabilities well inside [eps, 1 - eps] so the clip is inactive (smooth region)
        pred = rng.uniform(0.05, 0.95, (n, c))
        if name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            pred /= pred.sum(axis=1, keepdims=True) * 1.3  # not normalised: Keras renormalises
    if name == "sparse_categorical_crossentropy":
        target = rng.integers(0, c, n).astype(np.int32)
    elif name == "categorical_crossentropy":
        target = rng.dirichlet(np.ones(c), n)  # soft labels exercise sum(t) terms
    elif name == "binary_crossentropy":
        target = rng.uniform(0, 1, (n, c))
    else:
        target = rng.normal(size=(n, c))
        pred = rng.normal(size=(n, c)) * 2  # regression: any real prediction
    return pred, target


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name,from_logits", CASES)
def test_grad_matches_finite_differences(name, from_logits, weighted):
    rng = np.random.default_rng(zlib.crc32(f"{name}{from_logits}{weighted}".encode()))
    pred, target = _data(name, from_logits, rng)
    if name in ("mean_absolute_error", "huber"):
        # keep |p - t| away from the kinks at 0 and delta
        e = pred - target
        pred = np.where(np.abs(e) < 0.05, pred + 0.1, pred)
        pred = np.where(np.abs(np.abs(pred - target) - 1.0) < 0.05, pred + 0.2, pred)
    w = rng.uniform(0, 2, pred.shape[0]) if weighted else None
    loss, grad = ref.value_and_grad(name, pred, target, w, from_logits)
    h, fd = 1e-6, np.zeros_like(pred)
    for idx in np.ndindex(pred.shape):
        e = np.zeros_like(pred)
        e[idx] = h
        fd[idx] = (ref.value_and_grad(name, pred + e, target, w, from_logits)[0]
                   - ref.value_and_grad(name, pred - e, target, w, from_logits)[0]) / (2 * h)
    # float64 central differences: truncation ~h^2, rounding ~1e-16 * loss / h
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    assert np.isfinite(loss)


def test_values_match_textbook_formulas():
    rng = np.random.default_rng(0)
    n, c = 8, 4
    y, yh = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    assert np.isclose(ref.value_and_grad("mean_squared_error", yh, y)[0], np.mean((y - yh) ** 2))
    assert np.isclose(ref.value_and_grad("mean_absolute_error", yh, y)[0], np.mean(np.abs(y - yh)))
    e = np.abs(y - yh)
    hub = np.where(e <= 0.7, 0.5 * e ** 2, 0.7 * e - 0.5 * 0.7 ** 2)
    assert np.isclose(ref.value_and_grad("huber", yh, y, delta=0.7)[0], hub.mean())
    p, t = rng.uniform(0.01, 0.99, (n, c)), rng.integers(0, 2, (n, c)).astype(float)
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert np.isclose(ref.value_and_grad("binary_crossentropy", p, t)[0], bce)
    logits = rng.normal(size=(n, c))
    sig = 1 / (1 + np.exp(-logits))
    assert np.isclose(ref.value_and_grad("binary_crossentropy", logits, t, from_logits=True)[0],
                      -np.mean(t * np.log(sig) + (1 - t) * np.log(1 - sig)))
    labels = rng.integers(0, c, n).astype(np.int32)
    onehot = np.eye(c)[labels]
    soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cce = -np.mean(np.sum(onehot * np.log(soft), axis=1))
    for name, tgt in (("categorical_crossentropy", onehot),
                      ("sparse_categorical_crossentropy", labels)):
        assert np.isclose(ref.value_and_grad(name, logits, tgt, from_logits=True)[0], cce)
        assert np.isclose(ref.value_and_grad(name, soft, tgt)[0], cce)
        # the fused gradient from logits is (p - y) / N
        np.testing.assert_allclose(ref.value_and_grad(name, logits, tgt, from_logits=True)[1],
                                   (soft - onehot) / n, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        ref.value_and_grad("binary_crossentropy", logits, t, from_logits=True)[1],
        (sig - t) / (n * c), rtol=1e-12, atol=1e-15)
    # sample weights: sum_i w_i l_i / n
    w = rng.uniform(0, 3, n)
    per = np.mean((y - yh) ** 2, axis=1)
    assert np.isclose(ref.value_and_grad("mean_squared_error", yh, y, w)[0], np.sum(w * per) / n)


def test_clipped_probabilities_have_finite_loss_and_zero_gradient():
    p = np.array([[0.0, 1.0, 0.5]])
    t = np.array([[1.0, 0.0, 1.0]])
    loss, g = ref.value_and_grad("binary_crossentropy", p, t)
    assert np.isfinite(loss) and loss > 10  # -log(1e-7) terms
    np.testing.assert_array_equal(g[0, :2], 0)
    assert g[0, 2] != 0
    loss, g = ref.value_and_grad("categorical_crossentropy", np.array([[0.0, 0.0, 1.0]]),
                                 np.array([[1.0, 0.0, 0.0]]))
    assert np.isclose(loss, -np.log(1e-7))


@pytest.mark.parametrize("name", ref.CROSS_ENTROPIES)
def test_extreme_logits_are_stable(name):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e30, -1e30, 3.0]])
    t = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    tgt = t.argmax(axis=1).astype(np.int32) if name.startswith("sparse") else t
    loss, g = ref.value_and_grad(name, x, tgt, from_logits=True)
    assert np.isfinite(loss) and np.isfinite(g).all()
    assert loss > 1e3  # confidently wrong rows cost about their logit gap


def test_empty_batch_and_errors():
    loss, g = ref.value_and_grad("mean_squared_error", np.zeros((0, 3)), np.zeros((0, 3)))
    assert loss == 0.0 and g.shape == (0, 3)
    with pytest.raises(ValueError, match=r"labels: expected integers in \[0, 3\), got 3"):
        ref.value_and_grad("sparse_categorical_crossentropy", np.ones((2, 3)) / 3, np.array([0, 3]))
    with pytest.raises(ValueError, match="from_logits"):
        ref.value_and_grad("mean_squared_error", np.ones((2, 3)), np.ones((2, 3)), from_logits=True)
    with pytest.raises(ValueError, match="unknown loss"):
        ref.value_and_grad("mse2", np.ones((2, 3)), np.ones((2, 3)))
