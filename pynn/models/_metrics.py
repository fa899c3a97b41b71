"""The streaming metrics a compiled model reports during fit and evaluate.

Accuracy comes straight from the compiled step (a count of correct rows); the others
accumulate what they need over the epoch from the step's output probabilities and are
computed at each report, so epoch values are exact (not a mean of per-batch values).
"""
from __future__ import annotations

import numpy as np

_ALIASES = {
    "acc": "accuracy",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "f1": "f1_score",
}
KNOWN = ("accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
         "precision", "recall", "f1_score", "auc", "mse", "mae")
CLASSIFICATION_LOSSES = ("binary_crossentropy", "categorical_crossentropy",
                         "sparse_categorical_crossentropy")


class MetricSet:
    """All metrics of one compiled model for one pass (an epoch, or one evaluate)."""

    def __init__(self, names, loss_kind, width):
        self.loss_kind = loss_kind
        self.width = width
        self.names = list(names)
        self.needs_output = any(n not in ("accuracy", "binary_accuracy", "categorical_accuracy",
                                          "sparse_categorical_accuracy") for n in self.names)
        self.reset()

    @classmethod
    def parse(cls, metrics, loss_kind, width):
        if metrics is None:
            return cls([], loss_kind, width)
        if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics: expected a list of metric names, got {metrics!r}")
        names = []
        for m in metrics:
            if not isinstance(m, str):
                raise TypeError(f"metrics: expected metric names (str), got {m!r}")
            key = _ALIASES.get(m, m)
            if key not in KNOWN:
                raise ValueError(f"metrics: unknown metric {m!r}; expected one of "
                                 f"{sorted(KNOWN + tuple(_ALIASES))}")
            if key in ("accuracy", "binary_accuracy", "categorical_accuracy",
                       "sparse_categorical_accuracy", "precision", "recall", "f1_score",
                       "auc") and loss_kind not in CLASSIFICATION_LOSSES:
                raise ValueError(f"metrics: {m!r} needs a classification loss, but the loss "
                                 f"is {loss_kind!r}")
            names.append(key)
        return cls(names, loss_kind, width)

    def reset(self):
        self.loss_sum = 0.0
        self.rows = 0
        self.correct = 0
        self.sq_err = 0.0
        self.abs_err = 0.0
        k = max(2, self.width)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.scores: list[np.ndarray] = []
        self.truths: list[np.ndarray] = []

    def update(self, loss, correct, rows, output=None, target=None):
        """loss: batch mean; output: (rows, width) probabilities; target: dense (rows, width)
        or labels (rows,), for the metrics that need them."""
        self.loss_sum += float(loss) * rows
        self.rows += rows
        self.correct += int(correct)
        if not self.needs_output or output is None:
            return
        if self.loss_kind in CLASSIFICATION_LOSSES:
            if self.loss_kind == "binary_crossentropy":
                pred = (output[:, 0] > 0.5).astype(np.int64)
                true = (np.asarray(target).reshape(rows, -1)[:, 0] > 0.5).astype(np.int64)
                score = output[:, 0]
            else:
                pred = np.argmax(output, axis=1)
                true = (np.asarray(target, dtype=np.int64).reshape(-1)
                        if self.loss_kind == "sparse_categorical_crossentropy"
                        else np.argmax(target, axis=1))
                score = output
            np.add.at(self.confusion, (true, pred), 1)
            if "auc" in self.names:
                self.scores.append(np.array(score, dtype=np.float64))
                self.truths.append(true.copy())
        else:
            diff = output.astype(np.float64) - np.asarray(target, np.float64).reshape(output.shape)
            self.sq_err += float(np.square(diff).sum())
            self.abs_err += float(np.abs(diff).sum())

    def results(self) -> dict:
        logs = {"loss": self.loss_sum / self.rows if self.rows else float("nan")}
        for name in self.names:
            logs[name] = self._result(name)
        return logs

    def _result(self, name):
        if name.endswith("accuracy"):
            per_row = self.width if self.loss_kind == "binary_crossentropy" else 1
            return self.correct / (self.rows * per_row) if self.rows else 0.0
        if name == "mse":
            return self.sq_err / (self.rows * self.width) if self.rows else float("nan")
        if name == "mae":
            return self.abs_err / (self.rows * self.width) if self.rows else float("nan")
        cm = self.confusion
        binary = self.loss_kind == "binary_crossentropy"
        tp = np.diag(cm).astype(np.float64)
        fp = cm.sum(axis=0) - tp
        fn = cm.sum(axis=1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
            recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
            f1 = np.where(precision + recall > 0,
                          2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
        pick = {"precision": precision, "recall": recall, "f1_score": f1}
        if name in pick:
            # binary: the positive class; multi-class: the macro average over classes
            return float(pick[name][1]) if binary else float(pick[name][: self.width].mean())
        if name == "auc":
            return self._auc(binary)
        raise AssertionError(name)

    def _auc(self, binary):
        if not self.scores:
            return 0.0
        from pynn.metrics import roc_auc_score

        scores = np.concatenate(self.scores)
        truth = np.concatenate(self.truths)
        if binary:
            if truth.min() == truth.max():
                return 0.0
            return float(roc_auc_score(truth, scores))
        aucs = []
        for k in range(self.width):  # one-vs-rest, macro average over classes present
            pos = truth == k
            if pos.any() and (~pos).any():
                aucs.append(roc_auc_score(pos.astype(np.int64), scores[:, k]))
        return float(np.mean(aucs)) if aucs else 0.0
