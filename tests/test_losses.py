"""The compiled losses against the NumPy twin (itself checked against finite differences in
test_ref_losses.py): value and gradient of every loss, with and without sample weights, from
probabilities and from logits, in float32 on edge sizes and extreme inputs."""
import zlib

import numpy as np
import pytest

from pynn import _core
from pynn.reference import losses as ref

CASES = [(name, fl) for name in ref.NAMES for fl in (False, True)
         if fl is False or name in ref.CROSS_ENTROPIES]
SHAPES = [(0, 3), (1, 1), (1, 15), (15, 1), (16, 16), (17, 3), (33, 10), (128, 17)]


def test_core_names_match_the_twin():
    # the compile() names, then the engine's internal kinds (mean_of_output)
    assert list(_core.loss_names()) == list(ref.NAMES) + list(ref.GRAPH_NAMES)


def _data(name, from_logits, n, c, rng):
    if from_logits:
        pred = rng.normal(size=(n, c)) * 4
    elif name in ref.CROSS_ENTROPIES:
        # probabilities, some near and beyond the clip range [1e-7, 1 - 1e-7]
        pred = rng.uniform(0, 1, (n, c)) ** 3
        if name != "binary_crossentropy":
            pred /= pred.sum(axis=1, keepdims=True) + 1e-12
    else:
        pred = rng.normal(size=(n, c)) * 2
    if name == "sparse_categorical_crossentropy":
        target = rng.integers(0, max(c, 1), n).astype(np.int32)
    elif name == "categorical_crossentropy":
        target = np.eye(c)[rng.integers(0, c, n)] if c else np.zeros((n, 0))
    elif name == "binary_crossentropy":
        target = rng.integers(0, 2, (n, c)).astype(float)
    else:
        target = rng.normal(size=(n, c))
    if target.dtype != np.int32:
        target = target.astype(np.float32)
    return pred.astype(np.float32), target


def _compare(name, pred, target, w, from_logits, delta=1.0):
    loss, grad = _core.loss_value_grad(name, pred, target, w, from_logits, delta)
    # The core reads subnormal float32 inputs as 0 (denormals-are-zero, csrc/common/fpenv.h):
    # the twin gets them as 0 too (|1e-40 - 0| has no sign to it).
    def daz(a):
        return np.where(np.abs(a) < np.finfo(np.float32).tiny, 0, a).astype(np.float64)

    t64 = target if target.dtype == np.int32 else daz(target)
    w64 = None if w is None else w.astype(np.float64)
    rloss, rgrad = ref.value_and_grad(name, daz(pred), t64, w64, from_logits, delta)
    assert grad.shape == pred.shape and grad.dtype == np.float32
    assert np.isfinite(loss) and np.isfinite(grad).all()
    # The core reads float32 inputs and sums in double, so the value agrees with the float64
    # twin on the same inputs to ~1e-7 relative; the gradient is stored as float32 (one
    # rounding) after a double computation. The absolute floors cover results near zero.
    assert loss == pytest.approx(rloss, rel=1e-6, abs=1e-9)
    atol = 1e-9 * (1 + np.abs(rgrad).max(initial=0))
    np.testing.assert_allclose(grad, rgrad, rtol=1e-5, atol=atol)
    return loss, grad


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name,from_logits", CASES)
def test_value_and_grad_match_twin(name, from_logits, weighted):
    rng = np.random.default_rng(zlib.crc32(f"{name}{from_logits}{weighted}".encode()))
    for n, c in SHAPES + [tuple(rng.integers(1, 40, 2))]:
        if name == "sparse_categorical_crossentropy" and c == 0:
            continue
        pred, target = _data(name, from_logits, n, c, rng)
        w = rng.uniform(0, 2, n).astype(np.float32) if weighted else None
        _compare(name, pred, target, w, from_logits)


def test_huber_delta():
    rng = np.random.default_rng(3)
    pred, target = _data("huber", False, 20, 7, rng)
    a = _compare("huber", pred, target, None, False, 0.3)[0]
    b = _compare("huber", pred, target, None, False, 3.0)[0]
    assert a != b


def test_fused_gradients_are_p_minus_y_over_n():
    rng = np.random.default_rng(4)
    n, c = 33, 10
    x = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    labels = rng.integers(0, c, n).astype(np.int32)
    onehot = np.eye(c, dtype=np.float32)[labels]
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    for name, t in (("categorical_crossentropy", onehot),
                    ("sparse_categorical_crossentropy", labels)):
        _, g = _core.loss_value_grad(name, x, t, None, True)
        np.testing.assert_allclose(g, (p - onehot) / n, rtol=1e-5, atol=1e-9)
    t = rng.integers(0, 2, (n, c)).astype(np.float32)
    _, g = _core.loss_value_grad("binary_crossentropy", x, t, None, True)
    np.testing.assert_allclose(g, (1 / (1 + np.exp(-x.astype(np.float64))) - t) / (n * c),
                               rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("name", ref.CROSS_ENTROPIES)
@pytest.mark.parametrize("weighted", [False, True])
def test_extreme_logits(name, weighted):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e30, -1e30, 3.0], [1e-40, 0.0, -1e-40]],
                 np.float32)
    labels = np.array([1, 0, 1, 2], np.int32)
    t = labels if name.startswith("sparse") else np.eye(3, dtype=np.float32)[labels]
    w = np.array([1, 0.5, 2, 0], np.float32) if weighted else None
    loss, g = _compare(name, x, t, w, True)
    assert loss > 1e3


@pytest.mark.parametrize("name", ref.CROSS_ENTROPIES)
def test_extreme_probabilities(name):
    p = np.array([[0.0, 1.0, 0.0], [1e-40, 1.0, 1e-30], [0.5, 0.5, 0.0], [1.0, 1.0, 1.0]],
                 np.float32)
    labels = np.array([0, 1, 2, 0], np.int32)
    t = labels if name.startswith("sparse") else np.eye(3, dtype=np.float32)[labels]
    _compare(name, p, t, None, False)


def test_regression_losses_at_extremes():
    pred = np.array([[1e4, -1e4, 0.0, 1e-40]], np.float32)
    target = np.array([[-1e4, 1e4, 1e-40, 0.0]], np.float32)
    for name in ("mean_squared_error", "mean_absolute_error", "huber"):
        _compare(name, pred, target, None, False)


def test_empty_batch():
    loss, g = _core.loss_value_grad("categorical_crossentropy", np.zeros((0, 4), np.float32),
                                    np.zeros((0, 4), np.float32))
    assert loss == 0.0 and g.shape == (0, 4)
    loss, g = _core.loss_value_grad("sparse_categorical_crossentropy",
                                    np.zeros((0, 4), np.float32), np.zeros(0, np.int32), None, True)
    assert loss == 0.0 and g.shape == (0, 4)


@pytest.mark.parametrize("bad", [-1, 3, 2**31 - 1, -2**31])
def test_out_of_range_labels_raise_value_error(bad):
    pred = np.full((4, 3), 1 / 3, np.float32)
    labels = np.array([0, 1, bad, 2], np.int32)
    msg = rf"labels: expected integers in \[0, 3\), got {bad} at index 2"
    with pytest.raises(ValueError, match=msg):
        _core.loss_value_grad("sparse_categorical_crossentropy", pred, labels, None, False)
    with pytest.raises(ValueError, match=r"labels: expected integers in \[0, 3\)"):
        ref.value_and_grad("sparse_categorical_crossentropy", pred, labels)


def test_bad_arguments_raise_clear_errors():
    p = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="kind: unknown loss 'mse'"):
        _core.loss_value_grad("mse", p, p)
    with pytest.raises(TypeError, match="labels: expected an int32 array, got dtype int64"):
        _core.loss_value_grad("sparse_categorical_crossentropy", p, np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="labels: expected an int32 array"):
        _core.loss_value_grad("sparse_categorical_crossentropy", p, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"labels: expected shape \(4,\)"):
        _core.loss_value_grad("sparse_categorical_crossentropy", p, np.zeros(5, np.int32))
    with pytest.raises(ValueError,
                       match=r"target: expected the shape of pred \(4, 3\), got \(4, 2\)"):
        _core.loss_value_grad("mean_squared_error", p, np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="pred: expected a float32 array"):
        _core.loss_value_grad("mean_squared_error", p.astype(np.float64), p)
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(4,\)"):
        _core.loss_value_grad("mean_squared_error", p, p, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="from_logits: only the cross-entropy losses"):
        _core.loss_value_grad("huber", p, p, None, True)
    with pytest.raises(ValueError, match="huber: expected delta > 0, got delta=-1"):
        _core.loss_value_grad("huber", p, p, None, False, -1.0)
    with pytest.raises(ValueError, match="pred: expected at least one class"):
        _core.loss_value_grad("sparse_categorical_crossentropy", np.zeros((2, 0), np.float32),
                              np.zeros(2, np.int32))
