"""Loss functions, value and gradient, in NumPy (Keras 3 names and semantics).

Every loss takes `pred` (n, c): probabilities, or raw scores with ``from_logits=True`` for the
cross-entropies; and `target` (n, c), or integer labels (n,) for
sparse_categorical_crossentropy. The per-sample loss l_i is a mean over the c outputs for
mean_squared_error, mean_absolute_error, huber and binary_crossentropy, and a sum over the
classes for the categorical ones. Reduction is Keras's "sum_over_batch_size":

    loss = sum_i w_i l_i / n        (w_i = sample_weight[i], 1 when None; 0 when n = 0)

`value_and_grad` returns that loss and d loss / d pred (d loss / d logits with from_logits).

mean_of_output (graph only, not a `compile` name) reads no target: `pred` is already a
per-sample loss, the end of a custom loss written with pynn.ops; l_i = mean_j p_ij.

Stability: probabilities are clipped to [eps, 1 - eps] with eps = 1e-7 as Keras does (the
gradient of the clipped expression is 0 where the clip is active); categorical probabilities
are first renormalised to sum to 1 per row, as Keras does. From logits nothing is
exponentiated unguarded: sigmoid via e^-|x|, log-softmax after subtracting the row max, and
the gradients take the fused forms sigmoid(x) - t and softmax(x) sum(t) - t.
"""
from __future__ import annotations

from typing import Any

import numpy as np

EPSILON = 1e-7

NAMES = ("mean_squared_error", "mean_absolute_error", "huber", "binary_crossentropy",
         "categorical_crossentropy", "sparse_categorical_crossentropy")
CROSS_ENTROPIES = ("binary_crossentropy", "categorical_crossentropy",
                   "sparse_categorical_crossentropy")
# Kinds the graph engine knows but `compile` does not take by name: mean_of_output ends a loss
# written with pynn.ops and traced into the graph (the output already is the loss).
GRAPH_NAMES = ("mean_of_output",)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _clip(p):
    inside = (p >= EPSILON) & (p <= 1 - EPSILON)
    return np.clip(p, EPSILON, 1 - EPSILON), inside


def mean_squared_error(pred: np.ndarray, target: np.ndarray):
    """l_i = mean_j (p - t)^2; dl_i/dp = 2 (p - t) / c."""
    e = pred - target
    return (e * e).mean(axis=1), 2 * e / pred.shape[1]


def mean_absolute_error(pred: np.ndarray, target: np.ndarray):
    """l_i = mean_j |p - t|; dl_i/dp = sign(p - t) / c (0 where p = t)."""
    e = pred - target
    return np.abs(e).mean(axis=1), np.sign(e) / pred.shape[1]


def huber(pred: np.ndarray, target: np.ndarray, delta: float = 1.0):
    """l_i = mean_j h(p - t), h(e) = e^2/2 for |e| <= delta, else delta (|e| - delta/2)."""
    e = pred - target
    a = np.abs(e)
    quad = a <= delta
    h = np.where(quad, 0.5 * e * e, delta * (a - 0.5 * delta))
    g = np.where(quad, e, delta * np.sign(e))
    return h.mean(axis=1), g / pred.shape[1]


def binary_crossentropy(pred: np.ndarray, target: np.ndarray, from_logits: bool = False):
    """l_i = -mean_j [t log p + (1 - t) log(1 - p)]; from logits x:
    mean_j [max(x, 0) - x t + log(1 + e^-|x|)] with gradient (sigmoid(x) - t) / c."""
    c = pred.shape[1]
    if from_logits:
        x = pred
        li = np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))
        return li.mean(axis=1), (_sigmoid(x) - target) / c
    q, inside = _clip(pred)
    li = -(target * np.log(q) + (1 - target) * np.log(1 - q))
    g = np.where(inside, (q - target) / (q * (1 - q)), 0.0)
    return li.mean(axis=1), g / c


def categorical_crossentropy(pred: np.ndarray, target: np.ndarray, from_logits: bool = False):
    """l_i = -sum_j t_j log q_j with q = softmax(x) from logits, else q = clip(p / sum p).
    From logits the gradient is softmax(x) sum_j t_j - t (p - t for one-hot rows)."""
    if pred.shape[1] == 0:
        return np.zeros(pred.shape[0], pred.dtype), np.zeros_like(pred)
    if from_logits:
        m = pred.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(pred - m).sum(axis=1, keepdims=True))
        logq = pred - lse
        tsum = target.sum(axis=1, keepdims=True)
        li = -(np.where(target != 0, target * logq, 0.0)).sum(axis=1)
        return li, np.exp(logq) * tsum - target
    s = pred.sum(axis=1, keepdims=True)
    s = np.where(s > 0, s, 1e-300)
    q = pred / s
    qc, inside = _clip(q)
    li = -(np.where(target != 0, target * np.log(qc), 0.0)).sum(axis=1)
    # d/dp_k of -sum_j t_j log clip(p_j / S): the normalisation couples every class.
    tu = (target * inside).sum(axis=1, keepdims=True)
    own = np.where(inside & (target != 0), target / np.where(q > 0, q, 1.0), 0.0)
    return li, (tu - own) / s


def mean_of_output(pred: np.ndarray, target: np.ndarray | None = None):
    """l_i = mean_j p_ij: `pred` already is a per-sample loss (a traced custom loss);
    dl_i/dp = 1 / c. `target` is not read."""
    c = pred.shape[1]
    return pred.mean(axis=1), np.full_like(pred, 1.0 / c)


def one_hot(labels: np.ndarray, c: int, dtype: Any = np.float64):
    """(n, c) one-hot rows of integer labels in [0, c)."""
    labels = check_labels(labels, c)
    out = np.zeros((labels.shape[0], c), dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def check_labels(labels: np.ndarray, c: int):
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels: expected an integer array, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array, got shape {labels.shape}")
    bad = (labels < 0) | (labels >= c)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"labels: expected integers in [0, {c}), got {labels[i]} at index {i}")
    return labels


def sparse_categorical_crossentropy(pred: np.ndarray, labels: np.ndarray,
                                    from_logits: bool = False):
    """categorical_crossentropy with the one-hot rows of integer `labels`."""
    return categorical_crossentropy(pred, one_hot(labels, pred.shape[1], pred.dtype), from_logits)


def value_and_grad(name: str, pred: np.ndarray, target: np.ndarray,
                   sample_weight: np.ndarray | None = None, from_logits: bool = False,
                   delta: float = 1.0):
    """(loss, d loss / d pred) with the "sum_over_batch_size" reduction (see module doc)."""
    if name not in NAMES + GRAPH_NAMES:
        raise ValueError(f"unknown loss {name!r}; expected one of {list(NAMES + GRAPH_NAMES)}")
    if from_logits and name not in CROSS_ENTROPIES:
        raise ValueError(f"from_logits: only the cross-entropy losses take logits; {name} got "
                         "from_logits=True")
    pred = np.asarray(pred)
    n = pred.shape[0]
    if name == "huber":
        per, g = huber(pred, target, delta)
    elif name == "mean_of_output":
        per, g = mean_of_output(pred)
    elif name in CROSS_ENTROPIES:
        per, g = globals()[name](pred, target, from_logits)
    else:
        per, g = globals()[name](pred, target)
    if n == 0:
        return 0.0, np.zeros_like(pred)
    w = np.ones(n, pred.dtype) if sample_weight is None else np.asarray(sample_weight, pred.dtype)
    return float((w * per).sum() / n), g * (w / n)[:, None]
