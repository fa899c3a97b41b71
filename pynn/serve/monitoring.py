"""What `pynn serve` exports at /metrics, in the Prometheus text format.

Counters and histograms are updated as requests are served. The windowed quality scores
(from :feedback requests) and the input drift (against the training statistics) are gauges
recomputed from their windows when /metrics is read, so a scrape always sees the current
window. Each app has its own `CollectorRegistry`, so several servers can live in one process.

With several worker processes (`--workers N`), prometheus_client's multiprocess mode sums the
counters, histograms and in-flight gauges of all workers; the windowed gauges are per worker
(a `pid` label), each worker refreshing its own values about once a second.

Metric names (labels in braces):

    pynn_requests_total{model,endpoint,status}       requests answered
    pynn_request_duration_seconds{model,endpoint}    latency histogram, receipt to answer
    pynn_inflight_requests{model}                    requests being handled now
    pynn_batch_rows{model}                           samples per predict call (histogram)
    pynn_batch_requests{model}                       requests per predict call (histogram)
    pynn_predict_duration_seconds{model}             time in the model per call (histogram)
    pynn_model_ready{model}                          1 once the model is loaded
    pynn_feedback_samples{model}                     labelled samples in the window
    pynn_feedback_accuracy / _precision / _recall / _f1{model}   classification (macro
                                                     averages over the classes in the window;
                                                     binary models: the positive class)
    pynn_feedback_mae / _mse{model}                  regression
    pynn_drift_rows{model}                           served samples in the drift window
    pynn_drift_mean_shift{model,input,feature}       (window mean - training mean) / training std
    pynn_drift_psi{model,input,feature}              population-stability index
    pynn_drift_max_abs_mean_shift{model}, pynn_drift_max_psi{model}   the worst feature
"""
from __future__ import annotations

import itertools
import os
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from pynn.serve.stats import FeatureStats

Task = Literal["multiclass", "binary", "regression"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01,
                   0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
REQUEST_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class FeedbackWindow:
    """The last `size` labelled samples of a model and their quality scores.

    Classification keeps (true class, predicted class) pairs, regression (label, prediction)
    values. The scores are those of pynn.metrics on the pairs in the window.
    """

    def __init__(self, task: Task, size: int, classes: int = 2, threshold: float = 0.5):
        self.task = task
        self.size = int(size)
        self.classes = 2 if task == "binary" else int(classes)
        self.threshold = float(threshold)
        self._true: deque[Any] = deque(maxlen=self.size)
        self._pred: deque[Any] = deque(maxlen=self.size)
        self._lock = threading.Lock()

    def predicted(self, output: np.ndarray) -> np.ndarray:
        """The predicted classes (classification) or values (regression) of an output batch."""
        if self.task == "multiclass":
            return output.reshape(output.shape[0], -1).argmax(axis=1)
        if self.task == "binary":
            return (output.reshape(output.shape[0], -1)[:, 0] > self.threshold).astype(np.int64)
        return output.reshape(output.shape[0], -1).astype(np.float64)

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """The labels as classes (or values), ValueError when they cannot be."""
        if self.task == "regression":
            return labels.reshape(labels.shape[0], -1)
        if labels.ndim == 2 and labels.shape[1] == self.classes and self.classes > 1:
            return labels.argmax(axis=1)  # one-hot rows
        flat = labels.reshape(labels.shape[0], -1)
        if flat.shape[1] != 1:
            raise ValueError(f"labels: expected one class index per instance (or one-hot rows "
                             f"of {self.classes}), got rows of {flat.shape[1]} values")
        flat = flat[:, 0]
        top = self.classes - 1
        if np.any(flat != np.round(flat)) or np.any(flat < 0) or np.any(flat > top):
            raise ValueError(f"labels: expected class indices 0..{top}")
        return flat.astype(np.int64)

    def add(self, labels: np.ndarray, predicted: np.ndarray) -> None:
        """Appends a batch of (label, prediction) pairs, dropping the oldest beyond the window."""
        if self.task == "regression" and labels.shape[1] != predicted.shape[1]:
            raise ValueError(f"labels: expected {predicted.shape[1]} value(s) per instance, got "
                             f"{labels.shape[1]}")
        with self._lock:
            self._true.extend(labels)
            self._pred.extend(predicted)

    def scores(self) -> dict[str, float]:
        """The window's scores: samples plus accuracy/precision/recall/f1 or mae/mse."""
        from pynn import metrics

        with self._lock:
            true, pred = list(self._true), list(self._pred)
        out: dict[str, float] = {"samples": float(len(true))}
        if not true:
            return out
        if self.task == "regression":
            t, p = np.array(true), np.array(pred)
            out["mae"] = metrics.mean_absolute_error(t, p)
            out["mse"] = metrics.mean_squared_error(t, p)
            return out
        t, p = np.array(true, dtype=np.int64), np.array(pred, dtype=np.int64)
        k = self.classes
        # Accuracy is micro-averaged precision: every sample is one prediction.
        out["accuracy"] = metrics.precision_score(t, p, average="micro", num_classes=k)
        if self.task == "binary":
            out["precision"] = metrics.precision_score(t, p, num_classes=2)
            out["recall"] = metrics.recall_score(t, p, num_classes=2)
            out["f1"] = metrics.f1_score(t, p, num_classes=2)
            return out
        # The macro average over the classes seen in the window (as labels or predictions),
        # scikit-learn's default: a class absent from a small window does not count as 0.
        seen = np.zeros(k, dtype=bool)
        seen[t] = seen[p] = True
        for key, fn in (("precision", metrics.precision_score),
                        ("recall", metrics.recall_score), ("f1", metrics.f1_score)):
            out[key] = float(np.mean(fn(t, p, average=None, num_classes=k)[seen]))
        return out


class PredictionLog:
    """The predictions of the last `capacity` served samples by id, so that a label can come
    later as {"ids", "labels"} without the inputs. An id counts once: feedback removes it.

    Ids are "<random per process>-<counter>": ids of another worker process or of an earlier
    run are unknown here (and so refused, never mixed up)."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count()
        self._log: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, predicted: np.ndarray) -> list[str]:
        """Stores the predictions of a batch of samples; their new ids."""
        ids = [f"{self._prefix}-{next(self._counter)}" for _ in range(predicted.shape[0])]
        with self._lock:
            for key, value in zip(ids, predicted):
                self._log[key] = value
            while len(self._log) > self.capacity:
                self._log.popitem(last=False)
        return ids

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """The stored predictions of `ids`; ValueError for an unknown or repeated id."""
        if len(set(ids)) != len(ids):
            raise ValueError("ids: an id appears twice")
        with self._lock:
            missing = [i for i in ids if i not in self._log]
            if missing:
                raise ValueError(f"ids: unknown prediction id {missing[0]!r} (too old, already "
                                 f"used, or from another worker)")
            return np.array([self._log[i] for i in ids])

    def forget(self, ids: Sequence[str]) -> None:
        """Drops ids that have received their label."""
        with self._lock:
            for i in ids:
                self._log.pop(i, None)


class DriftWindow:
    """The last `size` served samples of each model input, against the training statistics."""

    def __init__(self, stats: Sequence[FeatureStats], names: Sequence[str], size: int):
        self.stats = list(stats)
        self.names = list(names)
        self.size = int(size)
        self._rows = [np.zeros((self.size, s.features), dtype=np.float32) for s in self.stats]
        self._next = 0
        self._count = 0
        self._version = 0
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """Grows with every `add`: tells whether the window changed since a refresh."""
        return self._version

    def add(self, inputs: Sequence[np.ndarray]) -> None:
        """Appends served samples ((n, F) per input), dropping the oldest beyond the window."""
        n = int(inputs[0].shape[0])
        with self._lock:
            for buf, x in zip(self._rows, inputs):
                take = x[-self.size:] if n > self.size else x
                k = take.shape[0]
                end = self._next + k
                if end <= self.size:
                    buf[self._next:end] = take
                else:
                    split = self.size - self._next
                    buf[self._next:] = take[:split]
                    buf[:end - self.size] = take[split:]
            k = min(n, self.size)
            self._next = (self._next + k) % self.size
            self._count = min(self.size, self._count + k)
            self._version += 1

    def compute(self) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
        """(samples in the window, [(mean shift, PSI) per input]); empty without samples."""
        with self._lock:
            count = self._count
            rows = [buf[:count].astype(np.float64) for buf in self._rows]
        if count == 0:
            return 0, []
        return count, [(s.mean_shift(r), s.psi(r)) for s, r in zip(self.stats, rows)]


class ServeMetrics:
    """The Prometheus metrics of one app (one registry; multiprocess-aware)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry()
        reg = None if self.multiprocess else self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)
        self.requests = Counter("pynn_requests", "Requests answered, by model, endpoint and "
                                "HTTP status.", ["model", "endpoint", "status"], registry=reg)
        self.latency = Histogram("pynn_request_duration_seconds", "Time from receiving a "
                                 "request to answering it.", ["model", "endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=reg)
        self.inflight = Gauge("pynn_inflight_requests", "Requests being handled.", ["model"],
                              registry=reg, multiprocess_mode="livesum")
        self.batch_rows = Histogram("pynn_batch_rows", "Samples per predict call.", ["model"],
                                    buckets=ROW_BUCKETS, registry=reg)
        self.batch_requests = Histogram("pynn_batch_requests", "Requests per predict call.",
                                        ["model"], buckets=REQUEST_BUCKETS, registry=reg)
        self.predict_seconds = Histogram("pynn_predict_duration_seconds", "Time in the model "
                                         "per predict call (in its thread).", ["model"],
                                         buckets=LATENCY_BUCKETS, registry=reg)
        self.ready = Gauge("pynn_model_ready", "1 when the model is loaded and serving.",
                           ["model"], registry=reg, multiprocess_mode="livemax")

        def window_gauge(name: str, doc: str, labels: Sequence[str] = ("model",)) -> Any:
            return Gauge(name, doc, list(labels), registry=reg, multiprocess_mode="liveall")

        self.feedback = {
            "samples": window_gauge("pynn_feedback_samples", "Labelled samples in the "
                                    "feedback window."),
            "accuracy": window_gauge("pynn_feedback_accuracy", "Accuracy over the feedback "
                                     "window."),
            "precision": window_gauge("pynn_feedback_precision", "Precision over the feedback "
                                      "window (macro average; binary: the positive class)."),
            "recall": window_gauge("pynn_feedback_recall", "Recall over the feedback window "
                                   "(macro average; binary: the positive class)."),
            "f1": window_gauge("pynn_feedback_f1", "F1 over the feedback window (macro "
                               "average; binary: the positive class)."),
            "mae": window_gauge("pynn_feedback_mae", "Mean absolute error over the feedback "
                                "window."),
            "mse": window_gauge("pynn_feedback_mse", "Mean squared error over the feedback "
                                "window."),
        }
        self.drift_rows = window_gauge("pynn_drift_rows", "Served samples in the drift window.")
        self.drift_shift = window_gauge("pynn_drift_mean_shift", "Mean of the drift window "
                                        "minus the training mean, in training standard "
                                        "deviations.", ("model", "input", "feature"))
        self.drift_psi = window_gauge("pynn_drift_psi", "Population-stability index of the "
                                      "drift window against the training deciles.",
                                      ("model", "input", "feature"))
        self.drift_max_shift = window_gauge("pynn_drift_max_abs_mean_shift", "The largest "
                                            "absolute mean shift over all features.")
        self.drift_max_psi = window_gauge("pynn_drift_max_psi", "The largest population-"
                                          "stability index over all features.")
        self._children: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
        self._seen_version: dict[str, int] = {}

    def exposition(self) -> tuple[bytes, str]:
        """The metrics text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        """Counts one answered request and its latency."""
        self.requests.labels(model, endpoint, str(status)).inc()
        self.latency.labels(model, endpoint).observe(seconds)

    def observe_batch(self, model: str, rows: int, requests: int, seconds: float) -> None:
        """Records one predict call."""
        self.batch_rows.labels(model).observe(rows)
        self.batch_requests.labels(model).observe(requests)
        self.predict_seconds.labels(model).observe(seconds)

    def set_feedback(self, model: str, scores: dict[str, float]) -> None:
        """Sets the feedback gauges from `FeedbackWindow.scores()`."""
        for key, value in scores.items():
            self.feedback[key].labels(model).set(value)

    def set_drift(self, model: str, window: DriftWindow, force: bool = False) -> None:
        """Recomputes the drift gauges of a model from its window (when it changed)."""
        if not force and self._seen_version.get(model) == window.version:
            return
        self._seen_version[model] = window.version
        count, per_input = window.compute()
        self.drift_rows.labels(model).set(count)
        if not per_input:
            return
        worst_shift, worst_psi = 0.0, 0.0
        for name, stats, (shift, psi) in zip(window.names, window.stats, per_input):
            children = self._children.get((model, name))
            if children is None:
                children = [(self.drift_shift.labels(model, name, str(f)),
                             self.drift_psi.labels(model, name, str(f)))
                            for f in range(stats.features)]
                self._children[(model, name)] = children
            for (g_shift, g_psi), s, p in zip(children, shift.tolist(), psi.tolist()):
                g_shift.set(s)
                g_psi.set(p)
            worst_shift = max(worst_shift, float(np.max(np.abs(shift))))
            worst_psi = max(worst_psi, float(np.max(psi)))
        self.drift_max_shift.labels(model).set(worst_shift)
        self.drift_max_psi.labels(model).set(worst_psi)

    def mark_dead(self) -> None:
        """Multiprocess mode: drops this process's live gauges (at worker shutdown)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
