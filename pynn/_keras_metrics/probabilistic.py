"""Metrics that are the mean of a loss function: cross-entropies, KL divergence, Poisson,
hinge losses."""
from __future__ import annotations

from typing import Any

import numpy as np

from pynn import _loss_functions as F
from pynn._keras_metrics.reduction import wrapper_class
from pynn._loss_functions import same_rank

BinaryCrossentropy = wrapper_class(
    "BinaryCrossentropy", F.binary_crossentropy, "binary_crossentropy",
    "Mean binary cross-entropy of the predictions.",
    {"from_logits": False, "label_smoothing": 0})
CategoricalCrossentropy = wrapper_class(
    "CategoricalCrossentropy", F.categorical_crossentropy, "categorical_crossentropy",
    "Mean categorical cross-entropy of the predictions against one-hot labels.",
    {"from_logits": False, "label_smoothing": 0, "axis": -1})
_SparseCE = wrapper_class(
    "SparseCategoricalCrossentropy", F.sparse_categorical_crossentropy,
    "sparse_categorical_crossentropy",
    "Mean categorical cross-entropy of the predictions against integer labels.",
    {"from_logits": False, "ignore_class": None, "axis": -1})


class SparseCategoricalCrossentropy(_SparseCE):  # type: ignore[valid-type,misc]
    """Mean categorical cross-entropy of the predictions against integer labels. Labels equal
    to `ignore_class` add 0; with sample weights they also leave the count (Keras masks the
    weights, and only them)."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        if self.ignore_class is None or sample_weight is None:
            return super().update_state(y_true, y_pred, sample_weight)
        labels = np.asarray(y_true)
        if labels.ndim == np.ndim(y_pred) and labels.shape[-1] == 1:
            labels = labels[..., 0]
        keep = (labels != self.ignore_class).astype(np.float32)
        keep, sw = same_rank(keep, np.asarray(sample_weight, np.float32))
        return super().update_state(labels, y_pred, keep * sw)
KLDivergence = wrapper_class("KLDivergence", F.kl_divergence, "kl_divergence",
                             "Mean Kullback-Leibler divergence of y_pred from y_true.")
Poisson = wrapper_class("Poisson", F.poisson, "poisson", "Mean Poisson loss.")
Hinge = wrapper_class("Hinge", F.hinge, "hinge", "Mean hinge loss.")
SquaredHinge = wrapper_class("SquaredHinge", F.squared_hinge, "squared_hinge",
                             "Mean squared hinge loss.")
CategoricalHinge = wrapper_class("CategoricalHinge", F.categorical_hinge, "categorical_hinge",
                                 "Mean categorical hinge loss.")
