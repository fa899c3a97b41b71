"""The streaming metrics a compiled model reports during fit and evaluate.

Accuracy for the classification losses comes straight from the compiled step (a count of
correct rows); the others accumulate what they need over the epoch from the step's output
probabilities, so an epoch's value is that of the whole epoch, not a mean of batch values:
precision/recall/F1 from a confusion matrix. AUC is exact (rank
statistic over every score of the pass) in the final value of a pass; the running value shown
after each batch comes from score histograms at 200 thresholds, so that reporting stays O(1)
per batch.

Every other name Keras accepts ("mse", "mape", "Precision", "AUC", "top_k_categorical_accuracy",
...) is one of `pynn.metrics`' Metric classes, updated with each batch's targets and outputs
like the user's own Metric objects, so its value is Keras's.

Which accuracy: as Keras picks it. Sparse labels compare with the argmax; one-hot targets
argmax with argmax; binary cross-entropy (and any one-output model) thresholds at 0.5.
With several sigmoid outputs (multi-label), every output counts as one binary decision for
accuracy, precision, recall, F1 and AUC.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pynn._keras_metrics.reduction import MeanMetricWrapper
from pynn.losses import CLASSIFICATION_KINDS

# the name a user writes -> what is computed; the log key stays the user's spelling
_CANONICAL = {
    "acc": "accuracy",
    "accuracy": "accuracy",
    "binary_accuracy": "accuracy",
    "categorical_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1_score": "f1_score",
    "f1": "f1_score",
    "auc": "auc",
}
# the losses whose accuracy the compiled step counts (the loss table's classification kinds)
CLASSIFICATION_LOSSES = CLASSIFICATION_KINDS
_THRESHOLDS = 200


def _custom_name(m):
    """The log key of a user's metric: a Metric's name, a function's __name__."""
    name = getattr(m, "name", None) if not callable(m) or hasattr(m, "update_state") else None
    return name or getattr(m, "__name__", None) or type(m).__name__


def _weighted_metric(m, loss_kind, width):
    """A Metric object for an entry of weighted_metrics (they all take sample weights)."""
    from pynn import metrics as metrics_mod

    if isinstance(m, type) and hasattr(m, "update_state"):
        return m()
    if isinstance(m, str) and m in ("accuracy", "acc"):
        # the accuracy Keras would pick for these targets
        if loss_kind == "sparse_categorical_crossentropy":
            obj = metrics_mod.SparseCategoricalAccuracy(name=m)
        elif loss_kind == "binary_crossentropy" or width == 1:
            obj = metrics_mod.BinaryAccuracy(name=m)
        else:
            obj = metrics_mod.CategoricalAccuracy(name=m)
        return obj
    if isinstance(m, str):
        try:
            return metrics_mod.get(m)
        except ValueError:
            raise ValueError(f"weighted_metrics: unknown metric {m!r}; expected a Keras metric "
                             f"name (see pynn.metrics), a function or a Metric") from None
    if hasattr(m, "update_state") and hasattr(m, "result"):
        return m
    if callable(m) and not isinstance(m, type):
        return metrics_mod.MeanMetricWrapper(m, name=_custom_name(m))
    raise TypeError(f"weighted_metrics: expected metric names (str), functions (y_true, "
                    f"y_pred) or pynn.metrics.Metric objects, got {m!r}")


def _masked_weights(mask, sample_weight, rows):
    """Keras's apply_mask with reduction "sum": the mask (0/1) as weights, times the sample
    weights when there are some (per sample, repeated over the steps, or per step)."""
    m = (np.asarray(mask).reshape(rows, -1) != 0).astype(np.float32)
    if sample_weight is None:
        return m
    sw = np.asarray(sample_weight, dtype=np.float32).reshape(rows, -1)
    return m * sw


class MetricSet:
    """All metrics of one compiled model for one pass (an epoch, or one evaluate)."""

    def __init__(self, names, loss_kind, width, sample_shape=None, custom=None, weighted=()):
        self.loss_kind = loss_kind
        self.width = width
        self.sample_shape = tuple(sample_shape) if sample_shape is not None else (width,)
        # classes per step (a sequence output (steps, classes) has width steps * classes)
        self.classes = self.sample_shape[-1] if self.sample_shape else width
        self.names = list(names)  # as the user wrote them: the log keys
        # user metrics (functions, Metric objects) by log key; reset for every pass
        self.custom = dict(custom or {})
        # the keys of compile(weighted_metrics=...): updated with the sample weights
        self.weighted = frozenset(weighted)
        for m in self.custom.values():
            m.reset_state()
        self.kinds = [_CANONICAL.get(n, "custom") if n not in self.custom else "custom"
                      for n in self.names]
        # binary decisions: binary cross-entropy, or one output under another loss
        self.binary = loss_kind == "binary_crossentropy" or (
            loss_kind not in CLASSIFICATION_LOSSES and width == 1)
        engine_counts = loss_kind in CLASSIFICATION_LOSSES
        self.needs_output = any(k != "accuracy" or not engine_counts for k in self.kinds)
        self.reset()

    def fresh(self) -> MetricSet:
        """An empty set with the same metrics, for a new pass."""
        return MetricSet(self.names, self.loss_kind, self.width, self.sample_shape, self.custom,
                         self.weighted)

    @classmethod
    def parse(cls, metrics: Any, loss_kind: str, width: int,
              sample_shape: tuple[int, ...] | None = None,
              weighted_metrics: Any = None) -> MetricSet:
        """The set for the `metrics` and `weighted_metrics` compile gave one output."""
        for arg, what in ((metrics, "metrics"), (weighted_metrics, "weighted_metrics")):
            if arg is not None and (isinstance(arg, str) or not isinstance(arg, (list, tuple))):
                raise TypeError(f"{what}: expected a list of metric names, got {arg!r}")
        names: list[str] = []
        custom: dict[str, Any] = {}
        for m in metrics or []:
            if isinstance(m, type) and hasattr(m, "update_state"):
                m = m()   # a Metric class: its default instance, as Keras
            if isinstance(m, str):
                key = m
                if m not in _CANONICAL:
                    # every other Keras name is one of pynn.metrics' classes
                    from pynn import metrics as metrics_mod

                    try:
                        custom[key] = metrics_mod.get(m)
                    except ValueError:
                        raise ValueError(f"metrics: unknown metric {m!r}; expected one of "
                                         f"{sorted(_CANONICAL)}, a Keras metric name (see "
                                         f"pynn.metrics), a function (y_true, y_pred) or a "
                                         f"pynn.metrics.Metric") from None
            elif hasattr(m, "update_state") and hasattr(m, "result"):
                key = _custom_name(m)
                custom[key] = m
            elif callable(m) and not isinstance(m, type):
                # a function (y_true, y_pred) -> values, averaged as Keras's MeanMetricWrapper
                from pynn.metrics import MeanMetricWrapper

                key = _custom_name(m)
                custom[key] = MeanMetricWrapper(m, name=key)
            else:
                raise TypeError(f"metrics: expected metric names (str), functions "
                                f"(y_true, y_pred) or pynn.metrics.Metric objects, got {m!r}")
            if key in names:
                raise ValueError(f"metrics: {key!r} is listed twice")
            names.append(key)
        weighted = []
        for m in weighted_metrics or []:
            obj = _weighted_metric(m, loss_kind, width)
            # Keras: a name already taken by an unweighted metric gets the prefix weighted_
            key = obj.name if obj.name not in names else f"weighted_{obj.name}"
            if key in names:
                raise ValueError(f"weighted_metrics: {key!r} is listed twice")
            custom[key] = obj
            names.append(key)
            weighted.append(key)
        return cls(names, loss_kind, width, sample_shape, custom, weighted)

    def reset(self) -> None:
        self.loss_sum = 0.0
        self.rows = 0
        self.correct = 0
        self.decisions = 0
        k = 2 if self.binary else max(2, self.classes)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        # AUC: per class (one for binary), counts of positives / negatives per score bucket
        classes = 1 if self.binary else self.classes
        self.pos_hist = np.zeros((classes, _THRESHOLDS), dtype=np.int64)
        self.neg_hist = np.zeros((classes, _THRESHOLDS), dtype=np.int64)
        self.scores: list[np.ndarray] = []
        self.truths: list[np.ndarray] = []

    def update(self, loss: float, correct: float, rows: int, output: np.ndarray | None = None,
               target: np.ndarray | None = None,
               sample_weight: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        """loss: batch mean; correct: the engine's count (classification losses); output:
        (rows, width) probabilities; target: dense (rows, width) or labels (rows,);
        sample_weight: (rows,) for the weighted metrics, or None; mask: the output's mask
        (rows, steps...) when it has one: the engine counted only the kept steps as correct,
        and metrics that average values (Keras's MeanMetricWrapper) weigh by it."""
        self.loss_sum += float(loss) * rows
        self.rows += rows
        classes = self.classes
        if self.loss_kind in CLASSIFICATION_LOSSES:
            self.correct += int(correct)
            per_step = classes if self.binary else 1   # decisions per kept step
            if mask is None:
                self.decisions += rows * (self.width // classes) * per_step
            else:
                self.decisions += int(np.count_nonzero(mask)) * per_step
        if not self.needs_output or output is None:
            return
        if self.custom:
            y_pred = np.asarray(output, dtype=np.float32).reshape((rows,) + self.sample_shape)
            y_true = np.asarray(target)
            if y_true.size == y_pred.size:
                y_true = y_true.reshape(y_pred.shape)
            y_true = y_true.astype(np.float32, copy=False)
            for key, m in self.custom.items():
                sw = sample_weight if key in self.weighted else None
                if mask is not None and isinstance(m, MeanMetricWrapper):
                    sw = _masked_weights(mask, sw, rows)
                if sw is None:
                    m.update_state(y_true, y_pred)
                else:
                    m.update_state(y_true, y_pred, sample_weight=sw)
            if all(k == "custom" for k in self.kinds):
                return
        # one row per decision of a step: (rows * steps, classes)
        out = np.asarray(output, dtype=np.float64).reshape(-1, self.classes)
        steps = out.shape[0]
        labels = (self.loss_kind not in CLASSIFICATION_LOSSES and not self.binary
                  and np.asarray(target).size == steps)   # integer labels for a custom loss
        if self.binary:
            true = (np.asarray(target, dtype=np.float64).reshape(rows, -1) > 0.5).ravel()
            true = true.astype(np.int64)
            pred = (out > 0.5).ravel().astype(np.int64)
            scores = out.ravel()[None, :]
            truth = true[None, :]
        else:
            pred = np.argmax(out, axis=1)
            if self.loss_kind == "sparse_categorical_crossentropy" or labels:
                true = np.asarray(target).reshape(-1).astype(np.int64)
            else:
                true = np.argmax(np.asarray(target).reshape(steps, -1), axis=1)
            scores = out.T
            truth = (true[None, :] == np.arange(self.classes)[:, None]).astype(np.int64)
        if self.loss_kind not in CLASSIFICATION_LOSSES:
            hit = pred == true
            if mask is not None:   # accuracy over the kept steps (Keras: the mask as weights)
                keep = np.repeat(np.asarray(mask).reshape(-1) != 0, hit.size // steps)
                hit = hit[keep] if keep.size == hit.size else hit
            self.correct += int(hit.sum())
            self.decisions += hit.size
        np.add.at(self.confusion, (np.clip(true, 0, self.confusion.shape[0] - 1),
                                   np.clip(pred, 0, self.confusion.shape[0] - 1)), 1)
        if "auc" in self.kinds:
            bucket = np.clip((scores * _THRESHOLDS).astype(np.int64), 0, _THRESHOLDS - 1)
            for c in range(scores.shape[0]):
                self.pos_hist[c] += np.bincount(bucket[c][truth[c] == 1], minlength=_THRESHOLDS)
                self.neg_hist[c] += np.bincount(bucket[c][truth[c] == 0], minlength=_THRESHOLDS)
            self.scores.append(scores.copy())
            self.truths.append(truth)

    def results(self, final=False) -> dict:
        """The metrics so far; `final` for the value of a finished pass (exact AUC)."""
        logs: dict[str, Any] = {"loss": self.loss_sum / self.rows if self.rows
                                else float("nan")}
        for name, kind in zip(self.names, self.kinds):
            if kind == "custom":
                value = np.asarray(self.custom[name].result())
                # a vector result (per threshold, per class) is logged as an array, as Keras
                logs[name] = (float(value.reshape(-1)[0]) if value.size == 1
                              else value.astype(np.float64))
            else:
                logs[name] = (self._exact_auc() if (kind == "auc" and final)
                              else self._result(kind))
        return logs

    def _exact_auc(self):
        if not self.scores:
            return 0.0
        from pynn.metrics import roc_auc_score

        scores = np.concatenate(self.scores, axis=1)
        truth = np.concatenate(self.truths, axis=1)
        aucs = [roc_auc_score(t, sc) for sc, t in zip(scores, truth) if 0 < t.sum() < t.size]
        return float(np.mean(aucs)) if aucs else 0.0

    def _result(self, kind):
        if kind == "accuracy":
            return self.correct / self.decisions if self.decisions else 0.0
        if kind == "auc":
            return self._auc()
        cm = self.confusion
        tp = np.diag(cm).astype(np.float64)
        fp = cm.sum(axis=0) - tp
        fn = cm.sum(axis=1) - tp
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
        recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                       where=precision + recall > 0)
        value = {"precision": precision, "recall": recall, "f1_score": f1}[kind]
        # binary: the positive class; multi-class: the macro average over classes
        return float(value[1]) if self.binary else float(value[: self.classes].mean())

    def _auc(self):
        """Running estimate of the area under the ROC curve from the bucketed scores
        (trapezoids between the 200 thresholds); macro average over classes with both
        positives and negatives."""
        aucs = []
        for pos, neg in zip(self.pos_hist, self.neg_hist):
            if pos.sum() == 0 or neg.sum() == 0:
                continue
            # sweep the threshold from high to low: cumulative true / false positive rates
            tpr = np.concatenate([[0.0], np.cumsum(pos[::-1]) / pos.sum()])
            fpr = np.concatenate([[0.0], np.cumsum(neg[::-1]) / neg.sum()])
            aucs.append(float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2)))
        return float(np.mean(aucs)) if aucs else 0.0
