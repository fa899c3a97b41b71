"""Keras 3's metric classes (`keras.metrics.*`), in NumPy: state in float32 variables,
``update_state(y_true, y_pred, sample_weight=None)``, ``result()``, ``reset_state()``.

They are re-exported by `pynn.metrics`, which also resolves the names compile accepts.
"""
from __future__ import annotations

from typing import Any

from pynn import _loss_functions as F
from pynn._keras_metrics.accuracy import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from pynn._keras_metrics.confusion import (
    AUC,
    FalseNegatives,
    FalsePositives,
    Precision,
    PrecisionAtRecall,
    Recall,
    RecallAtPrecision,
    SensitivityAtSpecificity,
    SpecificityAtSensitivity,
    TrueNegatives,
    TruePositives,
)
from pynn._keras_metrics.fscore import F1Score, FBetaScore
from pynn._keras_metrics.probabilistic import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    Hinge,
    KLDivergence,
    Poisson,
    SparseCategoricalCrossentropy,
    SquaredHinge,
)
from pynn._keras_metrics.reduction import Mean, MeanMetricWrapper, Sum
from pynn._keras_metrics.regression import (
    CosineSimilarity,
    LogCoshError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    R2Score,
    RootMeanSquaredError,
)
from pynn.losses import _snake

CLASSES = [
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, AUC, FalseNegatives, FalsePositives,
    TrueNegatives, TruePositives, Precision, Recall, PrecisionAtRecall, RecallAtPrecision,
    SensitivityAtSpecificity, SpecificityAtSensitivity, F1Score, FBetaScore, BinaryCrossentropy,
    CategoricalCrossentropy, SparseCategoricalCrossentropy, KLDivergence, Poisson, Hinge,
    SquaredHinge, CategoricalHinge, Mean, Sum, MeanMetricWrapper, CosineSimilarity,
    LogCoshError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredError,
    MeanSquaredLogarithmicError, R2Score, RootMeanSquaredError,
]
FUNCTIONS = {fn.__name__: fn for fn in (
    accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
    top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, F.mean_squared_error,
    F.mean_absolute_error, F.mean_absolute_percentage_error, F.mean_squared_logarithmic_error,
    F.huber, F.log_cosh, F.hinge, F.squared_hinge, F.categorical_hinge, F.kl_divergence,
    F.poisson, F.binary_crossentropy, F.categorical_crossentropy,
    F.sparse_categorical_crossentropy)}

# Keras's names: class names, their snake_case, and the short aliases
BY_NAME: dict[str, type] = {cls.__name__: cls for cls in CLASSES}
BY_NAME.update({_snake(cls.__name__): cls for cls in CLASSES})
BY_NAME.update({"bce": BinaryCrossentropy, "BCE": BinaryCrossentropy, "mse": MeanSquaredError,
                "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
                "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
                "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
                "auc": AUC, "f1_score": F1Score, "fbeta_score": FBetaScore, "logcosh": LogCoshError,
                "log_cosh": LogCoshError, "kld": KLDivergence,
                "kullback_leibler_divergence": KLDivergence})


def function_by_name(name: Any) -> Any:
    """A metric function of this module, or a registered one, from its name."""
    from pynn.saving import lookup

    fn = FUNCTIONS.get(name) if isinstance(name, str) else None
    fn = fn or lookup(name, None)
    if fn is None or not callable(fn):
        raise ValueError(f"fn: unknown metric function {name!r}; register it with "
                         f"@pynn.saving.register_serializable()")
    return fn
