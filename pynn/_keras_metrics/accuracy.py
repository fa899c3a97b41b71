"""Accuracy metrics: the share of predictions that match, in Keras's five flavours."""
from __future__ import annotations

from typing import Any

import numpy as np

from pynn._keras_metrics.reduction import as_float32, wrapper_class
from pynn._loss_functions import same_rank


def accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1.0 where y_pred equals y_true exactly, else 0.0."""
    p = as_float32(y_pred, "y_pred")
    t, p = same_rank(as_float32(y_true, "y_true"), p)
    return np.equal(t, p).astype(np.float32)


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> np.ndarray:
    """1.0 where (y_pred > threshold) equals y_true, else 0.0, per element."""
    t, p = same_rank(as_float32(y_true, "y_true"), as_float32(y_pred, "y_pred"))
    return np.equal(t, (p > threshold).astype(np.float32)).astype(np.float32)


def _class_matches(labels, y_pred):
    """1.0 where the label equals y_pred's argmax over the last axis; a trailing axis of 1
    on the labels (rank of y_pred) is dropped."""
    p = as_float32(y_pred, "y_pred")
    labels = np.asarray(labels)
    keep_shape = None
    if labels.ndim == p.ndim and labels.shape[-1] == 1:
        keep_shape = labels.shape
        labels = labels[..., 0]
    matches = np.equal(labels.astype(np.float32), np.argmax(p, axis=-1).astype(np.float32))
    matches = matches.astype(np.float32)
    if keep_shape is not None:
        matches = matches.reshape(keep_shape)
    return matches


def categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1.0 where the argmax of y_pred is the argmax of the one-hot y_true."""
    t = np.argmax(as_float32(y_true, "y_true"), axis=-1)
    p = as_float32(y_pred, "y_pred")
    return np.equal(t, np.argmax(p, axis=-1)).astype(np.float32)


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """1.0 where the argmax of y_pred is the integer label y_true."""
    matches = _class_matches(y_true, y_pred)
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = matches[..., 0]
    return matches


def _in_top_k(labels, scores, k):
    """Whether each row's label is among its k largest scores (ties broken as Keras's
    in_top_k on torch: by topk order)."""
    labels = labels.astype(np.int64).reshape(-1)
    scores = scores.reshape(-1, scores.shape[-1])
    if labels.size != scores.shape[0]:
        raise ValueError(f"y_true: expected one label per row of y_pred ({scores.shape[0]}), "
                         f"got {labels.size}")
    k = min(int(k), scores.shape[-1])
    target = scores[np.arange(scores.shape[0]), labels]
    # a label is in the top k when fewer than k scores are strictly larger than its own
    return (scores > target[:, None]).sum(axis=1) < k


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    return int(k)


def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> np.ndarray:
    """1.0 where the one-hot y_true's class is among the k highest scores of y_pred."""
    t = np.argmax(as_float32(y_true, "y_true"), axis=-1)
    p = as_float32(y_pred, "y_pred")
    return _in_top_k(t, p, _check_k(k)).astype(np.float32).reshape(t.shape)


def sparse_top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5,
                                      from_sorted_ids: bool = False) -> np.ndarray:
    """1.0 where the integer label is among the k highest scores of y_pred (or, with
    `from_sorted_ids`, among the first k class ids of each row of y_pred)."""
    t = np.asarray(y_true)
    p = as_float32(y_pred, "y_pred")
    k = _check_k(k)
    shape = t.shape
    if from_sorted_ids:
        rows = p.reshape(-1, p.shape[-1])[:, :k]
        hit = np.any(rows == t.reshape(-1, 1).astype(np.float32), axis=1)
    else:
        hit = _in_top_k(t, p, k)
    out = hit.astype(np.float32)
    return out.reshape(shape) if t.ndim > 1 else out


Accuracy = wrapper_class("Accuracy", accuracy, "accuracy",
                         "How often predictions equal labels exactly.")
BinaryAccuracy = wrapper_class("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                               "How often (y_pred > threshold) equals the binary label.",
                               {"threshold": 0.5})
CategoricalAccuracy = wrapper_class("CategoricalAccuracy", categorical_accuracy,
                                    "categorical_accuracy",
                                    "How often the predicted class is the one-hot label's.")
SparseCategoricalAccuracy = wrapper_class(
    "SparseCategoricalAccuracy", sparse_categorical_accuracy, "sparse_categorical_accuracy",
    "How often the predicted class equals the integer label.")
TopKCategoricalAccuracy = wrapper_class(
    "TopKCategoricalAccuracy", top_k_categorical_accuracy, "top_k_categorical_accuracy",
    "How often the one-hot label's class is among the k highest scores.", {"k": 5})
SparseTopKCategoricalAccuracy = wrapper_class(
    "SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy",
    "How often the integer label is among the k highest scores.",
    {"k": 5, "from_sorted_ids": False})
