"""What the commands print about a model's predictions, and the plots `train` saves."""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from pynn.cli.common import say
from pynn.cli.model import task_of
from pynn.cli.preprocess import Preprocessor, RegressionTarget, TabularPreprocessor

if TYPE_CHECKING:
    from pynn.models import Model


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    """MSE, RMSE, MAE and R^2 on one line."""
    err = y_pred - y_true
    mse = float(np.mean(err ** 2))
    var = float(np.var(y_true))
    r2 = 1.0 - mse / var if var > 0 else float("nan")
    mae = float(np.mean(np.abs(err)))
    return f"test MSE {mse:.6g}   RMSE {math.sqrt(mse):.6g}   MAE {mae:.6g}   R^2 {r2:.4f}"


def class_names(pre: Preprocessor | None, width: int) -> list[str]:
    """The recorded class names when they fit the model's `width` outputs, else '0', '1', ..."""
    names = pre.class_names if pre is not None else ()
    if names and len(names) == width:
        return list(names)
    return [str(i) for i in range(width)]


def target_values(pre: Preprocessor | None, y: np.ndarray) -> np.ndarray:
    """Regression outputs or targets back on the target's own scale (float64)."""
    if isinstance(pre, TabularPreprocessor) and isinstance(pre.target_encoding,
                                                           RegressionTarget):
        return pre.inverse_transform_target(y)
    return np.asarray(y).astype(np.float64)


def report(model: Model, pre: Preprocessor | None, x: np.ndarray, y: np.ndarray,
           batch_size: int) -> tuple[np.ndarray, float | None]:
    """Prints the test metrics; returns the predictions (class indices or target values) and
    the accuracy (None for regression)."""
    from pynn import metrics

    out = model.predict(x, batch_size=batch_size, verbose=0)
    if task_of(model, pre) == "classification":
        y_pred = np.argmax(out, axis=1)
        names = class_names(pre, out.shape[1])
        acc = float(np.mean(y_pred == y))
        say(f"\ntest accuracy: {acc:.4f}  ({int(np.sum(y_pred == y))} of {len(y)} correct)\n")
        say(metrics.classification_report(y, y_pred, class_names=names))
        return y_pred, acc
    y_true = target_values(pre, y)
    y_hat = target_values(pre, out[:, 0])
    say("\n" + regression_report(y_true, y_hat) + "\n")
    return y_hat, None


def save_plots(out_dir: str, history: Any, y_true: np.ndarray | None,
               y_pred: np.ndarray | None, names: list[str] | None) -> list[str]:
    """Training curves and, for classification, the confusion matrix as PNGs; returns the
    paths written (none without matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        say("plots need matplotlib: pip install pynn[plot]")
        return []
    from pynn import plot

    written = []
    path = os.path.join(out_dir, "training_curves.png")
    fig = plot.history(history)
    fig.savefig(path, dpi=100)
    written.append(path)
    if names is not None and y_true is not None:   # (classification: both are given)
        path = os.path.join(out_dir, "confusion_matrix.png")
        fig = plot.confusion_matrix(y_true, y_pred, class_names=names)
        fig.savefig(path, dpi=100)
        written.append(path)
    return written


def duration(seconds: float) -> str:
    """'1.23 s' or '45.6 ms'."""
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def file_size(nbytes: float) -> str:
    """'512 B', '3.4 KiB', '1.2 MiB', ..."""
    for unit in ("B", "KiB", "MiB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"
