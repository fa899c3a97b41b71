"""Metrics that are the mean of a loss function: cross-entropies, KL divergence, Poisson,
hinge losses."""
from __future__ import annotations

from pynn import _loss_functions as F
from pynn._keras_metrics.reduction import wrapper_class

BinaryCrossentropy = wrapper_class(
    "BinaryCrossentropy", F.binary_crossentropy, "binary_crossentropy",
    "Mean binary cross-entropy of the predictions.",
    {"from_logits": False, "label_smoothing": 0})
CategoricalCrossentropy = wrapper_class(
    "CategoricalCrossentropy", F.categorical_crossentropy, "categorical_crossentropy",
    "Mean categorical cross-entropy of the predictions against one-hot labels.",
    {"from_logits": False, "label_smoothing": 0, "axis": -1})
SparseCategoricalCrossentropy = wrapper_class(
    "SparseCategoricalCrossentropy", F.sparse_categorical_crossentropy,
    "sparse_categorical_crossentropy",
    "Mean categorical cross-entropy of the predictions against integer labels.",
    {"from_logits": False, "ignore_class": None, "axis": -1})
KLDivergence = wrapper_class("KLDivergence", F.kl_divergence, "kl_divergence",
                             "Mean Kullback-Leibler divergence of y_pred from y_true.")
Poisson = wrapper_class("Poisson", F.poisson, "poisson", "Mean Poisson loss.")
Hinge = wrapper_class("Hinge", F.hinge, "hinge", "Mean hinge loss.")
SquaredHinge = wrapper_class("SquaredHinge", F.squared_hinge, "squared_hinge",
                             "Mean squared hinge loss.")
CategoricalHinge = wrapper_class("CategoricalHinge", F.categorical_hinge, "categorical_hinge",
                                 "Mean categorical hinge loss.")
