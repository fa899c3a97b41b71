"""Keras 3's loss functions, one value per sample, written with `pynn.ops`.

Each function works on arrays (computed at once, float32, as ``keras.losses.<name>`` returns)
and on symbolic tensors, where it becomes part of the training graph: that is how the losses
without a C++ kernel of their own (KL divergence, Poisson, hinge, ...) train.

Shapes follow Keras: the last axis is reduced (cross-entropies over the class axis), so
(batch, d) inputs give (batch,) values. Where Keras decides something from the values of the
whole batch (hinge: are the labels 0/1?), the graph decides per sample; for labels that are
all 0/1 or all -1/+1 the two agree.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pynn import ops
from pynn.layers.layer import KerasTensor

EPSILON = 1e-7   # Keras's backend.epsilon()
Tensor = Any


def _symbolic(*xs) -> bool:
    return any(isinstance(x, KerasTensor) for x in xs)


def _array(x, dtype=np.float32):
    return x if isinstance(x, KerasTensor) else np.asarray(x, dtype=dtype)


def same_rank(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Keras's squeeze_or_expand_to_same_rank: when the ranks differ by one and the longer
    has a last axis of 1, drop it (or, against a rank-1 tensor, add one to the shorter)."""
    ra, rb = len(a.shape), len(b.shape)
    if ra == rb + 1 and a.shape[-1] == 1:
        if rb == 1:
            b = ops.expand_dims(b, -1)
        else:
            a = ops.squeeze(a, -1)
    elif rb == ra + 1 and b.shape[-1] == 1:
        if ra == 1:
            a = ops.expand_dims(a, -1)
        else:
            b = ops.squeeze(b, -1)
    return a, b


def _pair(y_true, y_pred):
    return same_rank(_array(y_true), _array(y_pred))


def mean_squared_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """mean((y_true - y_pred)**2) over the last axis."""
    t, p = _pair(y_true, y_pred)
    return ops.mean(ops.square(t - p), axis=-1)


def mean_absolute_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """mean(|y_true - y_pred|) over the last axis."""
    t, p = _pair(y_true, y_pred)
    return ops.mean(ops.abs(t - p), axis=-1)


def mean_absolute_percentage_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7)) over the last axis."""
    t, p = _pair(y_true, y_pred)
    return 100.0 * ops.mean(ops.abs((t - p) / ops.maximum(ops.abs(t), EPSILON)), axis=-1)


def mean_squared_logarithmic_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """mean((log(1 + max(y_pred, eps)) - log(1 + max(y_true, eps)))**2) over the last axis."""
    t, p = _pair(y_true, y_pred)
    first = ops.log(ops.maximum(p, EPSILON) + 1.0)
    second = ops.log(ops.maximum(t, EPSILON) + 1.0)
    return ops.mean(ops.square(first - second), axis=-1)


def _l2_normalize(x, axis):
    # x / sqrt(max(sum(x**2), eps**2)), Keras's ops.normalize for order 2
    square_sum = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x / ops.sqrt(ops.maximum(square_sum, EPSILON * EPSILON))


def cosine_similarity(y_true: Tensor, y_pred: Tensor, axis: int = -1) -> Tensor:
    """Minus the cosine of the angle between y_true and y_pred along `axis` (the loss: -1 is
    best)."""
    t, p = _pair(y_true, y_pred)
    return -ops.sum(_l2_normalize(t, axis) * _l2_normalize(p, axis), axis=axis)


def huber(y_true: Tensor, y_pred: Tensor, delta: float = 1.0) -> Tensor:
    """mean over the last axis of 0.5 e**2 where |e| <= delta, else delta |e| - 0.5 delta**2."""
    t, p = _pair(y_true, y_pred)
    err = p - t
    a = ops.abs(err)
    quad = ops.minimum(a, float(delta))
    # 0.5 q**2 + delta (|e| - q) is both branches in one expression (q = min(|e|, delta))
    return ops.mean(0.5 * ops.square(quad) + float(delta) * (a - quad), axis=-1)


def log_cosh(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """mean(log(cosh(y_pred - y_true))) over the last axis, as x + softplus(-2x) - log 2."""
    t, p = _pair(y_true, y_pred)
    x = p - t
    return ops.mean(x + ops.softplus(x * -2.0) - float(np.log(2.0)), axis=-1)


def _hinge_labels(y_true):
    """Labels in {0, 1} become {-1, +1}; others are kept (Keras: decided over the batch)."""
    if not _symbolic(y_true):
        y = np.asarray(y_true, dtype=np.float32)
        return 2.0 * y - 1.0 if np.all((y == 0) | (y == 1)) else y
    binary = ops.min(ops.logical_or(ops.equal(y_true, 0.0), ops.equal(y_true, 1.0)),
                     axis=-1, keepdims=True)
    return ops.where(binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """mean(max(1 - y_true * y_pred, 0)) over the last axis; 0/1 labels count as -1/+1."""
    p = _array(y_pred)
    t = _hinge_labels(_array(y_true))
    return ops.mean(ops.maximum(1.0 - t * p, 0.0), axis=-1)


def squared_hinge(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """mean(max(1 - y_true * y_pred, 0)**2) over the last axis; 0/1 labels count as -1/+1."""
    p = _array(y_pred)
    t = _hinge_labels(_array(y_true))
    return ops.mean(ops.square(ops.maximum(1.0 - t * p, 0.0)), axis=-1)


def categorical_hinge(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """max(0, 1 + max((1 - y_true) * y_pred) - sum(y_true * y_pred)) for one-hot y_true."""
    t, p = _array(y_true), _array(y_pred)
    pos = ops.sum(t * p, axis=-1)
    neg = ops.max((1.0 - t) * p, axis=-1)
    return ops.maximum(neg - pos + 1.0, 0.0)


def kl_divergence(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """sum(y_true * log(y_true / y_pred)) over the last axis, both clipped to [1e-7, 1]."""
    t = ops.clip(_array(y_true), EPSILON, 1.0)
    p = ops.clip(_array(y_pred), EPSILON, 1.0)
    return ops.sum(t * ops.log(t / p), axis=-1)


def poisson(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """mean(y_pred - y_true * log(y_pred + 1e-7)) over the last axis."""
    t, p = _array(y_true), _array(y_pred)
    return ops.mean(p - t * ops.log(p + EPSILON), axis=-1)


def _log_softmax(x, axis):
    shifted = x - ops.max(x, axis=axis, keepdims=True)
    return shifted - ops.log(ops.sum(ops.exp(shifted), axis=axis, keepdims=True))


def _check_smoothing(label_smoothing):
    value = float(label_smoothing)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing: expected a number in [0, 1], got {label_smoothing!r}")
    return value


def binary_crossentropy(y_true: Tensor, y_pred: Tensor, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1) -> Tensor:
    """Mean over `axis` of -(t log p + (1 - t) log(1 - p)), p clipped to [eps, 1 - eps]
    (from_logits: the stable form on logits); label_smoothing pulls t towards 0.5."""
    t, p = _array(y_true), _array(y_pred)
    ls = _check_smoothing(label_smoothing)
    if ls:
        t = t * (1.0 - ls) + 0.5 * ls
    if from_logits:
        # max(x, 0) - x t + log(1 + exp(-|x|))
        values = ops.relu(p) - p * t + ops.softplus(-ops.abs(p))
    else:
        q = ops.clip(p, EPSILON, 1.0 - EPSILON)
        values = -(t * ops.log(q) + (1.0 - t) * ops.log(1.0 - q))
    return ops.mean(values, axis=axis)


def categorical_crossentropy(y_true: Tensor, y_pred: Tensor, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> Tensor:
    """-sum(t log p) over `axis`, p normalised to sum 1 and clipped to [eps, 1 - eps]
    (from_logits: log-softmax); label_smoothing mixes t with the uniform distribution."""
    t, p = _array(y_true), _array(y_pred)
    ls = _check_smoothing(label_smoothing)
    if ls:
        t = t * (1.0 - ls) + ls / float(p.shape[axis])
    if from_logits:
        log_p = _log_softmax(p, axis)
    else:
        q = p / ops.sum(p, axis=axis, keepdims=True)
        log_p = ops.log(ops.clip(q, EPSILON, 1.0 - EPSILON))
    return -ops.sum(t * log_p, axis=axis)


def sparse_categorical_crossentropy(y_true: Tensor, y_pred: Tensor, from_logits: bool = False,
                                    ignore_class: int | None = None,
                                    axis: int = -1) -> Tensor:
    """categorical_crossentropy against the one-hot of integer labels; labels equal to
    `ignore_class` give 0."""
    p = _array(y_pred)
    t = y_true if _symbolic(y_true) else np.asarray(y_true)
    if len(t.shape) == len(p.shape) and t.shape[-1] == 1:
        t = ops.squeeze(t, -1)
    keep = None
    if ignore_class is not None:
        keep = ops.not_equal(t, float(ignore_class))
        t = ops.where(keep, t, 0.0)
    if not _symbolic(t):
        t = np.asarray(t)
        if t.dtype.kind == "f" and np.any(t != np.round(t)):
            raise ValueError("y_true: expected integer class labels, got fractional values")
        t = t.astype(np.int64)
        k = p.shape[axis]
        if t.size and (t.min() < 0 or t.max() >= k):
            raise ValueError(f"y_true: labels must be in [0, {k}), got values in "
                             f"[{t.min()}, {t.max()}]")
    onehot = ops.one_hot(t, int(p.shape[axis]))
    values = categorical_crossentropy(onehot, p, from_logits=from_logits, axis=axis)
    if keep is not None:
        values = ops.where(keep, values, 0.0)
    return values
